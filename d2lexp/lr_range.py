"""The learning-rate range test's parts (`python -m d2lexp.tune` runs it through Lightning's
`Tuner.lr_find`): each step's loss as lr_find recorded it, their smoothed curve, the suggested
rate, the picture, and where lr_find keeps the state it restores."""

from __future__ import annotations

import copy
from typing import Any

from lightning.fabric.plugins import CheckpointIO

# The smoothing of Lightning's lr_find (its _LRCallback's beta).
LIGHTNING_BETA = 0.98


def lightning_step_losses(recorded: list[float], beta: float = LIGHTNING_BETA) -> list[float]:
    """Each step's training loss, recovered exactly from the curve Lightning 2.6's lr_find keeps (it
    keeps no other): its k-th point (from 0) is a_k / (1 - beta^(k + 2)), where a_k = beta a_(k-1) +
    (1 - beta) loss_k: the bias correction counts the step already taken (`trainer.global_step`), so
    its first points are about half the loss. (tests/test_tune.py holds a fresh net's first loss to
    ln(classes): a Lightning that changed this formula would fail it.)"""
    losses, previous = [], 0.0
    for k, point in enumerate(recorded):
        average = point * (1 - beta ** (k + 2))
        losses.append((average - beta * previous) / (1 - beta))
        previous = average
    return losses


def smooth(losses: list[float], beta: float = 0.98) -> list[float]:
    """The losses' exponential moving average, its start's bias corrected (Adam's correction, as
    Lightning's lr_find means to: the i-th of n averages divided by 1 - beta^(i + 1))."""
    average, smoothed = 0.0, []
    for i, loss in enumerate(losses):
        average = beta * average + (1 - beta) * loss
        smoothed.append(average / (1 - beta ** (i + 1)))
    return smoothed


def suggest(lrs: list[float], smoothed: list[float], skip_begin: int = 10, skip_end: int = 1) -> float | None:
    """The middle (in log scale) of the decade of rates over which the smoothed loss falls most (past
    the first `skip_begin` steps, as Lightning skips them, and before the last `skip_end`); None if
    it falls over none. A whole decade, not the steepest point: a net that learns slowly (the
    sigmoid LeNet) gives a nearly flat curve whose steepest point is the noise of one step (it
    was 9e-5 for d2l_1/lenet, against a fall of the loss between 0.1 and 1: measured)."""
    import numpy as np

    end = len(lrs) - skip_end
    log_lr, loss = (
        np.log10(np.asarray(lrs[skip_begin:end], dtype=float)),
        np.asarray(smoothed[skip_begin:end], dtype=float),
    )
    if len(loss) < 3 or not np.all(np.isfinite(log_lr)):
        return None
    width = min(1.0, (log_lr[-1] - log_lr[0]) / 2)  # a decade, or half the range tried if that is less
    best, at = 0.0, None
    for i in range(len(loss)):
        j = int(np.searchsorted(log_lr, log_lr[i] + width))  # the first rate a decade on
        if j >= len(loss):
            break
        if np.isfinite(loss[i]) and np.isfinite(loss[j]) and loss[j] - loss[i] < best:
            best, at = loss[j] - loss[i], (i + j) // 2
    return None if at is None else float(lrs[skip_begin + at])


def lr_figure(record: dict[str, Any]):  # -> matplotlib Figure
    """Loss against learning rate (log scale): each step's, the smoothed curve, the suggestion and the configured rate."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    ax.plot(record["lr"], record["loss"], color="tab:blue", alpha=0.3, linewidth=0.8, label="each step")
    ax.plot(record["lr"], record["smoothed_loss"], color="tab:blue", label="smoothed")
    if record["suggested_lr"] is not None:
        at = record["lr"].index(record["suggested_lr"])
        ax.plot([record["suggested_lr"]], [record["smoothed_loss"][at]], "o", color="tab:red", markersize=8,
                label=f"suggested: {record['suggested_lr']:.3g}")  # fmt: skip
    if record["configured_lr"] is not None:
        ax.axvline(
            record["configured_lr"], color="gray", linestyle=":", label=f"configured: {record['configured_lr']:.3g}"
        )
    finite = [v for v in record["smoothed_loss"] if v is not None]
    if finite:  # the start's scale: a loss that explodes at the end would flatten the rest
        ax.set_ylim(min(finite) * 0.95, max(finite[: max(len(finite) // 2, 1)]) * 1.3)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title(f"{record['model']}: loss against learning rate ({record['steps']} steps)")
    ax.legend()
    fig.tight_layout()
    return fig


class InMemoryCheckpoints(CheckpointIO):
    """Where lr_find keeps the state it started from (it saves it first and restores it at the end):
    in this process's memory, so no file is written, and none read back."""

    def __init__(self) -> None:
        self.saved: dict[str, dict[str, Any]] = {}

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        self.saved[str(path)] = copy.deepcopy(checkpoint)

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        return self.saved[str(path)]

    def remove_checkpoint(self, path: Any) -> None:
        self.saved.pop(str(path), None)
