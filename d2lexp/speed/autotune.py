"""cuDNN autotuning (`trainer.benchmark`) for the input shapes a run is made of, and cuDNN's
heuristic choice of algorithm for everything else (`speed.autotune_main_shapes`)."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch


def batch_input_shape(batch: Any) -> tuple[int, ...] | None:
    """The shape of a batch's input tensor (its first element), None if it has none."""
    x = batch[0] if isinstance(batch, (tuple, list)) and batch else batch
    return tuple(x.shape) if isinstance(x, torch.Tensor) else None


class AutotuneMainShapes(pl.Callback):
    """Autotuning times every algorithm of every conv layer, forward and backward, the first time
    it sees an input shape: seconds a shape on a large net. A loader's first batch has the shape of
    all its batches but the last, so the shape of each loop's first batch is tuned. Autotuning is
    paused (from a batch's start hook to its end hook: forward, backward and optimizer step) for
    the rest: an epoch's smaller last batch (60,000 mod 128 = 96 training images), which runs once
    an epoch, and whatever runs the net between a stage's setup and its first batch (the model
    summary's one-example forward). Nothing changes where autotuning is off (CPUs, deterministic
    runs)."""

    def __init__(self) -> None:
        self.tuned: set[tuple[int, ...]] = set()
        self.paused = False

    def pause(self) -> None:
        if torch.backends.cudnn.benchmark:
            torch.backends.cudnn.benchmark = False
            self.paused = True

    def resume(self) -> None:
        if self.paused:
            torch.backends.cudnn.benchmark = True
            self.paused = False

    def before_batch(self, batch: Any, batch_idx: int) -> None:
        self.resume()
        if not torch.backends.cudnn.benchmark:  # autotuning off: nothing to keep to
            return
        shape = batch_input_shape(batch)
        if shape is None:
            return
        if batch_idx == 0 or not self.tuned:  # a loop's first batch (or a resumed run's)
            self.tuned.add(shape)
        elif shape not in self.tuned:
            self.pause()

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.pause()  # until the first batch

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # As the stage found it. (Lightning skips this hook when a stage fails; a Trainer built
        # with `benchmark` sets the flag again.)
        self.resume()

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.before_batch(batch, batch_idx)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.resume()

    def on_validation_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self.before_batch(batch, batch_idx)

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self.resume()

    def on_test_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self.before_batch(batch, batch_idx)

    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self.resume()

    def on_predict_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self.before_batch(batch, batch_idx)

    def on_predict_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self.resume()
