"""The running means d2lexp's tasks log per epoch (mean loss, accuracy), as the book's
`Accumulator` sums them, kept on the device as a torchmetrics `Metric`.

`Metric` brings what a training framework needs: states saved in checkpoints, reset,
and the sum over processes in distributed runs. The update itself is as small as it can be:
a sum and two in-place adds, three kernels on a GPU. torchmetrics' general `MeanMetric`
(weights, NaN handling) dispatches ten torch operators per update and `MulticlassAccuracy`
(any averaging) eighteen, most of them kernels: 28 operators a step where these take 8. A
small net's step on a GPU is bound by the host's dispatches and launches, so that difference
is a visible share of it.
"""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics import Metric


class RunningMean(Metric):
    """The mean of every value given to `update` since the last reset: per-example losses give
    the epoch's mean loss, as the book reports it; 0/1 correctness gives the accuracy."""

    full_state_update = False
    total: torch.Tensor
    count: torch.Tensor

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("total", torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, values: torch.Tensor) -> None:
        self.total += values.sum()
        self.count += values.numel()  # a Python number: no copy to the device

    def compute(self) -> torch.Tensor:
        return self.total / self.count


def correct(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Whether each example's highest score is its label (the book's `accuracy`, per example)."""
    return logits.argmax(dim=-1) == labels


def upgrade_metric_states(state_dict: dict[str, Any]) -> None:
    """Rename, in place, the metric states of checkpoints written before `RunningMean`: a
    torchmetrics `MeanMetric` (`mean_value`: its sum, `weight`: its count) or a micro-averaged
    `MulticlassAccuracy` (`tp`: the correct, `fn`: the wrong predictions) becomes a
    `RunningMean`'s `total` and `count`, so those runs still resume exactly mid-epoch."""
    metrics = [k for k in state_dict if k.count(".") == 1]  # a task's own metrics, not its net's tensors
    for key in [k for k in metrics if k.endswith(".mean_value")]:
        name = key.removesuffix(".mean_value")
        if f"{name}.weight" in state_dict:
            state_dict[f"{name}.total"] = state_dict.pop(key)
            state_dict[f"{name}.count"] = state_dict.pop(f"{name}.weight").round().long()
    for key in [k for k in metrics if k.endswith(".tp")]:
        name = key.removesuffix(".tp")
        if all(f"{name}.{part}" in state_dict for part in ("fp", "tn", "fn")):
            right, wrong = state_dict.pop(key), state_dict.pop(f"{name}.fn")
            del state_dict[f"{name}.fp"], state_dict[f"{name}.tn"]
            state_dict[f"{name}.total"] = right.sum().float()
            state_dict[f"{name}.count"] = (right + wrong).sum().long()
