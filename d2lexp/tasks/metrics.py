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
