"""What a classifier makes of the test split, in pictures: the book's `predict_ch3` (test images
with their true and predicted labels), the confusion matrix, and the test images it got wrong
most confidently. Gathered on the device during the test pass, drawn once it ends (never in
the training loop), written into the run folder and TensorBoard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torchmetrics.classification import MulticlassConfusionMatrix

from d2lexp import files
from d2lexp.callbacks.base import RecordingCallback, tensorboard_writer
from d2lexp.data.base import DataModule
from d2lexp.plotting import confusion_figure, labelled_image_grid, png_image, save_figure, save_image

PICTURES = {"predictions": "predictions.png", "confusion": "confusion.png", "misclassified": "misclassified.png"}


def _gray(images: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] inputs as [N, H, W] in [0, 1] to look at (normalised inputs are rescaled)."""
    x = images.float().mean(dim=1) if images.dim() == 4 else images.float()
    low = x.flatten(1).min(dim=1).values[:, None, None]
    high = x.flatten(1).max(dim=1).values[:, None, None]
    inside = bool(((x >= 0) & (x <= 1)).all())
    return x if inside else (x - low) / (high - low).clamp(min=1e-8)


class ClassifierPictures(RecordingCallback):
    """Needs a classification task whose `test_step` returns the batch's logits, and a data module
    with `class_names`; does nothing otherwise. The labels drawn are kept in the run record
    (`pictures`), so what the pictures say can be checked against the net itself."""

    def __init__(self, output_dir: str, num_images: int = 18) -> None:
        self.output_dir, self.num_images = Path(output_dir), num_images
        self.drawn: dict[str, Any] = {}
        self._reset()

    def _reset(self) -> None:
        self._confusion: MulticlassConfusionMatrix | None = None
        self._first: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # images, labels, predictions
        self._wrong: tuple[torch.Tensor, ...] | None = None  # confidences, images, labels, predictions

    def _names(self, trainer: pl.Trainer) -> tuple[str, ...] | None:
        data = trainer.datamodule  # a class per example only: boxes and masks are VisionPictures'
        return data.class_names if isinstance(data, DataModule) and data.target_kind == "labels" else None

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._reset()
        names = self._names(trainer)
        if names:
            self._confusion = MulticlassConfusionMatrix(len(names)).to(pl_module.device)

    def on_test_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        if self._confusion is None or not isinstance(outputs, torch.Tensor):
            return
        images, labels = batch
        confidence, predicted = torch.softmax(outputs.float(), dim=-1).max(dim=-1)
        self._confusion.update(predicted, labels)
        if self._first is None:
            n = self.num_images
            self._first = (images[:n].detach(), labels[:n], predicted[:n])
        # The most confident mistakes so far: this batch's wrong ones merged in, kept on the device.
        wrong = predicted != labels
        candidates = (confidence[wrong], images[wrong].detach(), labels[wrong], predicted[wrong])
        if self._wrong is not None:
            candidates = tuple(torch.cat([kept, new]) for kept, new in zip(self._wrong, candidates))
        keep = candidates[0].topk(min(self.num_images, len(candidates[0]))).indices
        self._wrong = tuple(c[keep] for c in candidates)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        names = self._names(trainer)
        if self._confusion is None or self._first is None or not names:
            return
        matrix = self._confusion.compute().cpu()  # every process: the sum over all of them
        if trainer.global_rank != 0:
            return
        files.make_folder(self.output_dir)
        writer = tensorboard_writer(trainer)
        images, labels, predicted = (t.cpu() for t in self._first)
        titles = [f"{names[int(t)]}\n{names[int(p)]}" for t, p in zip(labels, predicted)]
        grid = labelled_image_grid(_gray(images), titles)
        save_image(grid, self.output_dir / PICTURES["predictions"])
        figure = confusion_figure(matrix, names)
        save_figure(figure, self.output_dir / PICTURES["confusion"])
        confidences, wrong_images, wrong_labels, wrong_predicted = (t.cpu() for t in self._wrong)
        wrong_titles = [
            f"{names[int(t)]}\n-> {names[int(p)]} {float(c):.2f}"
            for c, t, p in zip(confidences, wrong_labels, wrong_predicted)
        ]
        wrong_grid = labelled_image_grid(_gray(wrong_images), wrong_titles) if len(wrong_titles) else None
        if wrong_grid is not None:
            save_image(wrong_grid, self.output_dir / PICTURES["misclassified"])
        if writer is not None:
            writer.add_image("test/predictions", grid, global_step=trainer.global_step)
            writer.add_image(
                "test/confusion", png_image(self.output_dir / PICTURES["confusion"]), global_step=trainer.global_step
            )
            if wrong_grid is not None:
                writer.add_image("test/misclassified", wrong_grid, global_step=trainer.global_step)
        self.drawn = {
            "predictions": {"file": str(self.output_dir / PICTURES["predictions"]), "true": [names[int(t)] for t in labels],
                            "predicted": [names[int(p)] for p in predicted]},
            "confusion": {"file": str(self.output_dir / PICTURES["confusion"]), "matrix": matrix.tolist()},
            "misclassified": {"file": str(self.output_dir / PICTURES["misclassified"]) if wrong_grid is not None else None,
                              "true": [names[int(t)] for t in wrong_labels],
                              "predicted": [names[int(p)] for p in wrong_predicted],
                              "confidence": [float(c) for c in confidences]},
        }  # fmt: skip
        self._reset()

    def record(self) -> dict[str, Any]:
        return {"pictures": self.drawn} if self.drawn else {}
