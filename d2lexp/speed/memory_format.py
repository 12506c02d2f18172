"""Conv nets in channels-last memory format: NHWC, the layout tensor-core convolutions read."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn


def has_conv2d(net: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in net.modules())


class ChannelsLastInputs:
    """Calls `apply_net` with its 4-D input made channels-last first."""

    def __init__(self, apply_net: Callable[..., Any]) -> None:
        self.apply_net = apply_net

    def __call__(self, x: torch.Tensor, *rest: Any) -> Any:
        if x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.apply_net(x, *rest)


def use_channels_last(task: pl.LightningModule, setting: bool | str) -> bool:
    """Put the task's net, and every 4-D input it is given, in channels-last format.
    `setting`: true, false, or "auto" (nets with 2-D convolutions). Returns whether it did."""
    wanted = has_conv2d(task.net) if setting == "auto" else bool(setting)
    if wanted:
        task.net = task.net.to(memory_format=torch.channels_last)
        task.apply_net = ChannelsLastInputs(task.apply_net)
    return wanted
