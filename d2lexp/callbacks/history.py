"""The epoch-by-epoch values of a run's metrics, for metrics.json and the sweep report's curves."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl


class EpochHistory(pl.Callback):
    """Snapshots the epoch-level metrics once each epoch has logged everything.

    Lightning calls callbacks before the module in each hook, so an epoch's training
    metrics are complete only after `on_train_epoch_end`; the snapshot is taken at the
    start of the next epoch and at the end of training. One device read per epoch.
    """

    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []
        self._pending_epoch: int | None = None

    def _snapshot(self, trainer: pl.Trainer) -> None:
        if self._pending_epoch is None:
            return
        values = {"epoch": self._pending_epoch}
        for key, value in trainer.callback_metrics.items():
            if not key.endswith("_step") and not key.startswith("test/"):
                values[key] = float(value)
        self.epochs.append(values)
        self._pending_epoch = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._snapshot(trainer)
        self._pending_epoch = trainer.current_epoch

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._snapshot(trainer)

    def as_columns(self) -> dict[str, list[float | None]]:
        """{"epoch": [0, 1, ...], "val/acc": [...], ...}: one list per metric."""
        keys = sorted({k for row in self.epochs for k in row}, key=lambda k: (k != "epoch", k))
        return {k: [row.get(k) for row in self.epochs] for k in keys}

    def record(self) -> dict[str, Any]:
        return {"history": self.as_columns()}
