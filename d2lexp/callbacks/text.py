"""Text a language model writes while it trains: logged to TensorBoard, kept for the run record."""

from __future__ import annotations

import logging
from typing import Any

import lightning.pytorch as pl

from d2lexp.callbacks.base import RecordingCallback, tensorboard_writer
from d2lexp.data.base import DataModule
from d2lexp.models.rnn import predict_chars

log = logging.getLogger(__name__)


class GeneratedText(RecordingCallback):
    """Every `every_n_epochs` epochs and at the end of training, continue `prefix` by
    `num_chars` characters (greedy, the book's `predict_ch8`) and log it as `samples/text`."""

    def __init__(self, prefix: str = "time traveller", num_chars: int = 50, every_n_epochs: int = 50) -> None:
        self.prefix, self.num_chars, self.every_n_epochs = prefix, num_chars, every_n_epochs
        self.last: str | None = None

    def _generate(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        data = trainer.datamodule
        vocab = data.vocab if isinstance(data, DataModule) else None
        if vocab is None or trainer.global_rank != 0:
            return
        self.last = predict_chars(pl_module.net, vocab, self.prefix, self.num_chars, pl_module.device)
        writer = tensorboard_writer(trainer)
        if writer is not None:
            writer.add_text("samples/text", f"`{self.last}`", global_step=trainer.current_epoch)
        log.info("epoch %d: %s", trainer.current_epoch, self.last)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.every_n_epochs and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self._generate(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._generate(trainer, pl_module)

    def record(self) -> dict[str, Any]:
        return {"sample": self.last} if self.last is not None else {}
