"""What d2lexp's callbacks share: a declared way to add to the run's record, and the run's
TensorBoard writer."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl


class RecordingCallback(pl.Callback):
    """A callback whose measurements go into the run's record (metrics.json): d2lexp.record
    asks each of these for `record()` when the run ends."""

    def record(self) -> dict[str, Any]:
        raise NotImplementedError


def tensorboard_writer(trainer: pl.Trainer):  # -> SummaryWriter | None
    """The SummaryWriter of the run's TensorBoard logger, if it has one."""
    from lightning.pytorch.loggers import TensorBoardLogger

    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None
