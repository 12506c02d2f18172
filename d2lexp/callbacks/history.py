"""The epoch-by-epoch values of a run's metrics, for metrics.json and the sweep report's curves."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl

from d2lexp.callbacks.base import RecordingCallback

HISTORY_KEY = "d2lexp_history"


class EpochHistory(RecordingCallback):
    """Snapshots the epoch-level metrics once each epoch has logged everything.

    Lightning calls callbacks before the module in each hook, so an epoch's training
    metrics are complete only after `on_train_epoch_end`; the snapshot is taken at the
    start of the next epoch and at the end of training. One device read per epoch.

    The history goes into every checkpoint (plain numbers), with what the unfinished epoch has
    logged so far, so a resumed run's history is the whole run's. Each row also says how many
    seconds of fitting the run had taken by its epoch's end (`seconds`, validation included). `on_epoch(row, history)` is
    told of each epoch as it is snapshotted (the run's record: a line in the log, metrics.json).
    """

    def __init__(self, on_epoch: Callable[[dict[str, float], dict[str, list]], None] | None = None) -> None:
        self.on_epoch = on_epoch
        self.epochs: list[dict[str, float]] = []
        self._pending_epoch: int | None = None
        self._carried: dict[str, float] = {}  # what the pending epoch logged before a resume
        self._fit_started = time.perf_counter()
        self.seconds_before_resume = 0.0  # of fitting, in the processes before a resume
        self.epochs_started_here = 0  # training epochs this fit started (none: a finished run resumed)

    def _epoch_values(self, trainer: pl.Trainer) -> dict[str, float]:
        return {
            key: float(value)
            for key, value in trainer.callback_metrics.items()
            if not key.endswith("_step") and not key.startswith("test/")
        }

    def _snapshot(self, trainer: pl.Trainer) -> None:
        if self._pending_epoch is None:
            return
        seconds = self._fitted_seconds()  # of fitting, to this epoch's end
        if self.epochs_started_here == 0 and "seconds" in self._carried:
            seconds = self._carried["seconds"]  # a finished epoch restored, not trained here: as it was saved
        row = {"epoch": self._pending_epoch, **self._carried, **self._epoch_values(trainer), "seconds": seconds}
        self.epochs.append(row)
        self._pending_epoch, self._carried = None, {}
        if self.on_epoch is not None and trainer.is_global_zero:
            self.on_epoch(row, self.as_columns())

    def _fitted_seconds(self) -> float:
        return self.seconds_before_resume + time.perf_counter() - self._fit_started

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._fit_started = time.perf_counter()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.epochs_started_here += 1
        if self._pending_epoch != trainer.current_epoch:  # not the epoch a resumed run continues
            self._snapshot(trainer)
            self._pending_epoch = trainer.current_epoch

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._snapshot(trainer)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # A run resumed after its last epoch trains nothing (no on_train_end): its last epoch, saved
        # pending in the checkpoint, completes the history here.
        self._snapshot(trainer)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        pending = None
        if self._pending_epoch is not None:
            seconds = self._fitted_seconds()
            pending = {"epoch": self._pending_epoch, **self._carried, **self._epoch_values(trainer), "seconds": seconds}
        checkpoint[HISTORY_KEY] = {"epochs": [dict(row) for row in self.epochs], "pending": pending}

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        saved = checkpoint.get(HISTORY_KEY)
        if not isinstance(saved, dict):
            return  # a checkpoint of an older run: the history starts here

        def numbers(row: Any) -> dict[str, float]:
            items = row.items() if isinstance(row, dict) else ()
            return {str(k): v for k, v in items if isinstance(v, (int, float)) and not isinstance(v, bool)}

        self.epochs = [numbers(row) for row in saved.get("epochs") or [] if isinstance(row, dict)]
        pending = numbers(saved.get("pending"))
        last = pending if "seconds" in pending else (self.epochs[-1] if self.epochs else {})
        self.seconds_before_resume = float(last.get("seconds", 0.0))  # fitting until the checkpoint was saved
        if "epoch" in pending:
            self._pending_epoch = int(pending.pop("epoch"))
            self._carried = pending

    def as_columns(self) -> dict[str, list[float | None]]:
        """{"epoch": [0, 1, ...], "val/acc": [...], ...}: one list per metric."""
        keys = sorted({k for row in self.epochs for k in row}, key=lambda k: (k != "epoch", k))
        return {k: [row.get(k) for row in self.epochs] for k in keys}

    def record(self) -> dict[str, Any]:
        return {"history": self.as_columns()}
