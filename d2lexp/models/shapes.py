"""Shape arithmetic done by PyTorch itself, on the meta device (no memory, no compute)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn


def output_numel(build: Callable[[], nn.Module], input_shape: Sequence[int]) -> int:
    """Features per example that `build()` produces for one input of `input_shape` (C, H, W).

    Lets a network size its first dense layer for its input resolution, as the book's
    lazy layers do, while every parameter exists (and can be counted) at construction.
    """
    with torch.device("meta"):
        return build()(torch.empty(1, *input_shape)).numel()
