"""Pictures a person looks at. Matplotlib is imported only where a figure is drawn;
the sample-image grid of every run is drawn with PIL, which costs no start-up time."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def labelled_image_grid(images: torch.Tensor, titles: Sequence[str], num_cols: int = 9, scale: int = 3) -> torch.Tensor:
    """The book's `show_images`: grayscale images in a grid, each under its title.

    `images` is [N, H, W] in [0, 1]; returns a uint8 RGB image [3, H', W'] for
    TensorBoard's `add_image`.
    """
    from PIL import Image, ImageDraw, ImageFont

    n, h, w = images.shape
    cell_w, cell_h, title_h = w * scale, h * scale, 14
    num_rows = -(-n // num_cols)
    canvas = Image.new("RGB", (num_cols * cell_w, num_rows * (cell_h + title_h)), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    pixels = (images.clamp(0, 1) * 255).to(torch.uint8).cpu().numpy()
    for i in range(n):
        row, col = divmod(i, num_cols)
        x, y = col * cell_w, row * (cell_h + title_h)
        tile = Image.fromarray(pixels[i], mode="L").resize((cell_w, cell_h), Image.NEAREST)
        canvas.paste(tile.convert("RGB"), (x, y + title_h))
        draw.text((x + 2, y + 1), titles[i], fill="black", font=font)
    return torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1)
