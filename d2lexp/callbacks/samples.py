"""Log what the data looks like: sample images with their labels, and the class names."""

from __future__ import annotations

import lightning.pytorch as pl

from d2lexp.callbacks.base import tensorboard_writer
from d2lexp.data.base import DataModule
from d2lexp.plotting import labelled_image_grid


class LogSampleImages(pl.Callback):
    """At the start of training, writes `data/samples` (a grid of training images titled
    with their labels, as the book's `show_images`) and `data/classes` to TensorBoard."""

    def __init__(self, num_rows: int = 2, num_cols: int = 9) -> None:
        self.num_rows, self.num_cols = num_rows, num_cols

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        writer = tensorboard_writer(trainer)
        data = trainer.datamodule
        if writer is None or trainer.global_rank != 0 or not isinstance(data, DataModule):
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
