"""Pictures a person looks at. Matplotlib is imported only where a figure is drawn; the
image grids are drawn with PIL, which costs no start-up time."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from d2lexp import files

Box = tuple[float, float, float, float, str, str]  # x1, y1, x2, y2 (fractions of the image), its text, its colour


def labelled_image_grid(
    images: torch.Tensor,
    titles: Sequence[str],
    num_cols: int = 9,
    cell: int = 84,
    boxes: Sequence[Sequence[Box]] | None = None,
) -> torch.Tensor:
    """The book's `show_images`: images in a grid, each under its title (which may have several
    lines), each image scaled to `cell` pixels a side; with `boxes`, each image's boxes drawn on
    it with their text (the book's `show_bboxes`).

    `images` is [N, H, W] (grey) or [N, 3, H, W] (colour) in [0, 1]; returns a uint8 RGB image
    [3, H', W'] for TensorBoard's `add_image` (and `save_image`).
    """
    from PIL import Image, ImageDraw, ImageFont

    n = images.shape[0]
    lines = max((title.count("\n") + 1 for title in titles), default=1)
    cell_w = cell_h = cell
    title_h = 12 * lines + 2
    num_rows = -(-n // num_cols)
    canvas = Image.new("RGB", (num_cols * cell_w, num_rows * (cell_h + title_h)), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    pixels = (images.clamp(0, 1) * 255).to(torch.uint8).cpu()
    pixels = (pixels.permute(0, 2, 3, 1) if pixels.dim() == 4 else pixels).numpy()
    for i in range(n):
        row, col = divmod(i, num_cols)
        x, y = col * cell_w, row * (cell_h + title_h)
        resample = Image.NEAREST if pixels[i].shape[1] <= cell else Image.BILINEAR
        tile = Image.fromarray(pixels[i], mode="RGB" if pixels[i].ndim == 3 else "L").resize((cell_w, cell_h), resample)
        canvas.paste(tile.convert("RGB"), (x, y + title_h))
        draw.multiline_text((x + 2, y + 1), titles[i], fill="black", font=font, spacing=1)
        for x1, y1, x2, y2, text, colour in boxes[i] if boxes is not None else ():
            corners = (x + x1 * cell_w, y + title_h + y1 * cell_h, x + x2 * cell_w - 1, y + title_h + y2 * cell_h - 1)
            draw.rectangle(corners, outline=colour, width=1)
            if text:
                draw.text((corners[0] + 1, corners[1]), text, fill=colour, font=font)
    return torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1)


def colour_masks(masks: torch.Tensor, colormap: Sequence[Sequence[int]]) -> torch.Tensor:
    """Class masks [N, H, W] as colour images [N, 3, H, W] in [0, 1], class i in `colormap[i]`
    (the book's VOC colours); classes past the map's end are white."""
    palette = torch.tensor(
        [*colormap, *[[255, 255, 255]] * max(0, (int(masks.max()) if masks.numel() else 0) + 1 - len(colormap))]
    )
    return palette[masks.long().cpu()].permute(0, 3, 1, 2).float() / 255


def save_image(image: torch.Tensor, path: Path) -> Path:
    """A uint8 RGB image [3, H, W] as PNG, written atomically and never through a link (d2lexp.files)."""
    from PIL import Image

    picture = Image.fromarray(image.permute(1, 2, 0).cpu().numpy())
    return files.write_atomic(path, lambda file: picture.save(file, format="png"), durable=False)


def confusion_figure(matrix: torch.Tensor, class_names: Sequence[str]):  # -> matplotlib Figure
    """A confusion matrix: rows are the true classes, columns the predicted ones, each cell the
    share of its row (how a class's examples were classified), with the count written in."""
    from matplotlib.figure import Figure

    counts = matrix.cpu().long()
    shares = counts.float() / counts.sum(dim=1, keepdim=True).clamp(min=1)
    fig = Figure(figsize=(7, 6))
    ax = fig.subplots()
    shown = ax.imshow(shares.numpy(), cmap="Blues", vmin=0, vmax=1)
    ticks = range(len(class_names))
    ax.set_xticks(ticks, labels=class_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(ticks, labels=class_names, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix (test split)")
    for i in ticks:
        for j in ticks:
            ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=6,
                    color="white" if shares[i, j] > 0.5 else "black")  # fmt: skip
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    fig.tight_layout()
    return fig


# The book's learning curves: what each run's curves.png shows, where the run has it.
CURVES = (
    ("train/loss", "train loss", "C0", "-"), ("train/acc", "train acc", "C1", "--"),
    ("val/loss", "val loss", "C3", "-."), ("val/acc", "val acc", "C2", ":"),
    ("val/map_50", "val mAP@0.5", "C4", "-"),  # a detector's
    ("train/pixel_acc", "train pixel acc", "C1", "--"), ("val/pixel_acc", "val pixel acc", "C2", ":"),
    ("val/miou", "val mIoU", "C4", "-"),  # a segmenter's
)  # fmt: skip
PERPLEXITY = (("train/ppl", "train perplexity", "C0", "-"), ("val/ppl", "val perplexity", "C2", ":"))


def curves_figure(history: dict[str, list], title: str = ""):  # -> matplotlib Figure
    """The book's figure of a run (its `Animator`): per epoch, training loss and accuracy and
    validation loss and accuracy on one axis; perplexity instead for a language model."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(5.5, 3.8))
    ax = fig.subplots()
    epochs = [e + 1 for e in history.get("epoch", [])]
    for key, label, color, style in PERPLEXITY if "train/ppl" in history else CURVES:
        points = [(e, v) for e, v in zip(epochs, history.get(key) or []) if isinstance(v, (int, float))]
        if points:
            ax.plot(*zip(*points), style, color=color, marker="o", markersize=3, label=label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="epoch", title=title)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def png_image(path: Path) -> torch.Tensor:
    """A PNG as a uint8 RGB image [3, H, W] (TensorBoard's `add_image`): a figure drawn once, for
    the run folder, is not drawn a second time for TensorBoard."""
    from PIL import Image

    with Image.open(path) as image:
        return torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1)


def save_figure(fig, path: Path) -> Path:
    """Write a figure as PNG atomically and never through a link: a reader never sees half an image."""
    return files.write_atomic(path, lambda file: fig.savefig(file, format="png", dpi=100), durable=False)
