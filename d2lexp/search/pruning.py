"""Stopping a search's trial early: each epoch's validation score goes to the trial's Optuna study,
and a trial its pruner gives up on stops at that epoch's end, recorded as `pruned` (not failed)."""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl

from d2lexp.callbacks.base import RecordingCallback


class EpochPruning(RecordingCallback):
    """Reports `metric` (the run's objective, val/acc) to `trial` after each epoch's validation, at
    step = epochs trained (the book's resource is epochs), and asks the study's pruner whether to go
    on. When not, training stops there, as at its last epoch (Lightning's `should_stop`: the epoch's
    checkpoint is written, the loops end cleanly), the test pass is skipped, and the run's record
    says `pruned` and at which epoch. (optuna-integration's PyTorchLightningPruningCallback raises
    optuna.TrialPruned from inside the validation hook instead: an exception through Lightning, which
    d2lexp would record as a failed run.)"""

    def __init__(self, trial: Any, metric: str) -> None:
        self.trial, self.metric = trial, metric
        self.pruned_at: int | None = None  # epochs trained when the pruner stopped the run

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.pruned_at is not None:
            return
        value = trainer.callback_metrics.get(self.metric)
        if value is None:
            return
        number = float(value)  # one read a validation pass
        epochs = trainer.current_epoch + 1
        if not math.isfinite(number):
            return  # a diverging run stops by itself, as diverged
        self.trial.report(number, step=epochs)
        if epochs == trainer.max_epochs:  # trained all it was to: complete, as at the book's r_max, not pruned
            return
        if self.trial.should_prune():
            self.pruned_at = epochs
            trainer.should_stop = True

    def record(self) -> dict[str, Any]:
        return {"status": "pruned", "pruned_at_epoch": self.pruned_at} if self.pruned_at is not None else {}


def was_pruned(trainer: pl.Trainer) -> bool:
    """Whether a search's pruner stopped this run (its test pass is then skipped)."""
    return any(isinstance(c, EpochPruning) and c.pruned_at is not None for c in trainer.callbacks)
