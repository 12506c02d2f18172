"""Log what the data looks like: sample images with their labels, the class names, and (where the
training batches are augmented) the book's figure of one image under many draws."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl

from d2lexp.callbacks.base import tensorboard_writer
from d2lexp.data.base import DataModule
from d2lexp.plotting import labelled_image_grid, save_image

AUGMENTATION_PICTURE = "augmentation.png"


class LogSampleImages(pl.Callback):
    """At the start of training, writes `data/samples` (a grid of training images titled
    with their labels, as the book's `show_images`) and `data/classes` to TensorBoard. Where the
    data augments its training batches: `augmentation.png` in `output_dir` and
    `data/augmentation` in TensorBoard, one training image under `num_rows * num_cols` draws."""

    def __init__(self, num_rows: int = 2, num_cols: int = 9, output_dir: str | None = None) -> None:
        self.num_rows, self.num_cols = num_rows, num_cols
        self.output_dir = Path(output_dir) if output_dir is not None else None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        data = trainer.datamodule
        if trainer.global_rank != 0 or not isinstance(data, DataModule):
            return
        writer = tensorboard_writer(trainer)
        augmented = data.augmented_samples(self.num_rows * self.num_cols)
        if augmented is not None:
            picture = labelled_image_grid(*augmented, self.num_cols)
            if self.output_dir is not None:
                save_image(picture, self.output_dir / AUGMENTATION_PICTURE)
            if writer is not None:
                writer.add_image("data/augmentation", picture, global_step=0)
        if writer is None:
            return
        samples = data.sample_images(self.num_rows * self.num_cols)
        if samples is None:
            return
        images, titles = samples
        writer.add_image("data/samples", labelled_image_grid(images, titles, self.num_cols), global_step=0)
        names = data.class_names
        if names:
            table = "| index | class |\n|---|---|\n" + "\n".join(f"| {i} | {n} |" for i, n in enumerate(names))
            writer.add_text("data/classes", table, global_step=0)
