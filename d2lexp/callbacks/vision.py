"""Detection and segmentation in pictures, as the book draws them: images with their boxes and
labels (d2l 14.6's bananas, 14.7's detections), images beside their colour-mapped masks (14.9's
VOC figure, 14.11's predictions). Into the run folder and TensorBoard; drawn once, never in the
training loop. Data whose targets are class labels is left to ClassifierPictures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from d2lexp import files
from d2lexp.callbacks.base import RecordingCallback, tensorboard_writer
from d2lexp.data.base import DataModule
from d2lexp.data.voc import VOC_COLORMAP
from d2lexp.plotting import Box, colour_masks, labelled_image_grid, save_image

PICTURES = {
    "boxes": ("data_boxes.png", "detections.png"),  # the data's, the test pass's
    "masks": ("data_masks.png", "segmentation.png"),
}
TRUE, FOUND = "lime", "red"  # the colours of true boxes and of detections


def _shown(images: torch.Tensor) -> torch.Tensor:
    """A batch as the model saw it [N, C, H, W], for looking at: grey [N, H, W] or colour [N, 3, H, W]
    in [0, 1] (normalised inputs rescaled per image)."""
    x = images.float().cpu()
    low = x.flatten(1).min(dim=1).values.view(-1, 1, 1, 1)
    high = x.flatten(1).max(dim=1).values.view(-1, 1, 1, 1)
    if not bool(((x >= 0) & (x <= 1)).all()):
        x = (x - low) / (high - low).clamp(min=1e-8)
    return x[:, 0] if x.shape[1] == 1 else x[:, :3]


def _grey_to_rgb(images: torch.Tensor) -> torch.Tensor:
    return images.unsqueeze(1).expand(-1, 3, -1, -1) if images.dim() == 3 else images


def true_boxes(rows: torch.Tensor, names: tuple[str, ...]) -> list[Box]:
    """[K, 5] rows (class, corners; -1 rows padding) as boxes to draw, titled with their class."""
    return [(*map(float, r[1:]), names[int(r[0])], TRUE) for r in rows.cpu() if r[0] >= 0]


class VisionPictures(RecordingCallback):
    """At the start of fitting: `num_images` training images with their true boxes
    (data_boxes.png) or beside their colour-mapped masks (data_masks.png). After the test pass:
    the first test images with their detections scoring at least `threshold` (red, with class and
    score) and their true boxes (green), detections.png; or each test image above its predicted
    and its true mask, segmentation.png. Needs a detection task whose `test_step` returns the
    batch's detections or a segmentation task's returning its masks; does nothing for other data.
    What was drawn goes into the run record (`pictures`)."""

    def __init__(self, output_dir: str, num_images: int = 9, threshold: float = 0.3) -> None:
        self.output_dir, self.num_images, self.threshold = Path(output_dir), num_images, threshold
        self.drawn: dict[str, Any] = {}
        self._first: tuple[torch.Tensor, torch.Tensor, Any] | None = None  # images, targets, predictions

    @staticmethod
    def _data(trainer: pl.Trainer) -> DataModule | None:
        data = trainer.datamodule
        if isinstance(data, DataModule) and data.target_kind in PICTURES and data.class_names:
            return data
        return None

    def _write(self, trainer: pl.Trainer, picture: torch.Tensor, name: str, tag: str) -> str:
        files.make_folder(self.output_dir)
        path = save_image(picture, self.output_dir / name)
        writer = tensorboard_writer(trainer)
        if writer is not None:
            writer.add_image(tag, picture, global_step=trainer.global_step)
        return str(path)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        data = self._data(trainer)
        if data is None or trainer.global_rank != 0 or "train" not in getattr(data, "splits", {}):
            return
        images, targets = data.splits["train"]
        n = self.num_images
        shown = _shown(data.transform(images[:n].cpu()))
        names = data.class_names
        if data.target_kind == "boxes":
            boxes = [true_boxes(rows, names) for rows in targets[:n]]
            picture = labelled_image_grid(shown, [f"#{i}" for i in range(len(shown))], min(n, 9), 128, boxes)
        else:
            masks = colour_masks(targets[:n], VOC_COLORMAP)
            picture = labelled_image_grid(
                torch.cat([_grey_to_rgb(shown), masks]), ["image"] * len(shown) + ["mask"] * len(masks), len(shown)
            )
        self.drawn["data"] = self._write(trainer, picture, PICTURES[data.target_kind][0], "data/targets")

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._first = None

    def on_test_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        if self._first is not None or self._data(trainer) is None or outputs is None:
            return
        images, targets = batch
        n = self.num_images
        kept = outputs[:n] if isinstance(outputs, (list, torch.Tensor)) else None
        if kept is not None:
            self._first = (images[:n].detach().cpu(), targets[:n].cpu(), kept)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        data = self._data(trainer)
        if data is None or self._first is None or trainer.global_rank != 0:
            return
        images, targets, predicted = self._first
        names, shown = data.class_names, _shown(images)
        name = PICTURES[data.target_kind][1]
        if data.target_kind == "boxes":
            found = [
                [(*map(float, box), f"{names[int(label)]} {float(score):.2f}", FOUND)
                 for box, score, label in zip(d["boxes"].cpu(), d["scores"].cpu(), d["labels"].cpu()) if score >= self.threshold]
                for d in predicted
            ]  # fmt: skip
            boxes = [true_boxes(rows, names) + mine for rows, mine in zip(targets, found)]
            picture = labelled_image_grid(
                shown, [f"test #{i}" for i in range(len(shown))], min(len(shown), 9), 128, boxes
            )
            self.drawn["detections"] = {
                "file": self._write(trainer, picture, name, "test/detections"),
                "threshold": self.threshold,
                "found": [[[round(v, 4) for v in b[:4]] + [b[4]] for b in mine] for mine in found],
            }
        else:
            rows = [
                _grey_to_rgb(shown),
                colour_masks(predicted.cpu(), VOC_COLORMAP),
                colour_masks(targets, VOC_COLORMAP),
            ]
            titles = ["image"] * len(shown) + ["predicted"] * len(shown) + ["true"] * len(shown)
            picture = labelled_image_grid(torch.cat(rows), titles, len(shown))
            self.drawn["segmentation"] = {
                "file": self._write(trainer, picture, name, "test/segmentation"),
                "pixel_acc": [float((p == t).float().mean()) for p, t in zip(predicted.cpu(), targets.long())],
            }
        self._first = None

    def record(self) -> dict[str, Any]:
        return {"vision_pictures": self.drawn} if self.drawn else {}
