"""Shape arithmetic done by PyTorch itself, on the meta device (no memory, no compute)."""

from __future__ import annotations

import contextlib
import contextvars
import itertools
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

# Set while a probe below builds a throwaway copy of a net's layers: those weights are not the net's
# (d2lexp.nets.size_budget, which measures a net against the weights a file holds, counts each probe apart).
_probing = contextvars.ContextVar("probing", default=0)
_probe_numbers = itertools.count(1)


def probing() -> int:
    """The number of the shape probe whose layers are being built now (each probe its own), 0 for the net's own."""
    return _probing.get()


@contextlib.contextmanager
def _probe() -> Iterator[None]:
    token = _probing.set(next(_probe_numbers))
    try:
        with torch.device("meta"):
            yield
    finally:
        _probing.reset(token)


def output_numel(build: Callable[[], nn.Module], input_shape: Sequence[int]) -> int:
    """Features per example that `build()` produces for one input of `input_shape` (C, H, W).

    Lets a network size its first dense layer for its input resolution, as the book's
    lazy layers do, while every parameter exists (and can be counted) at construction.
    """
    with _probe():
        return build()(torch.empty(1, *input_shape)).numel()


def check_input_size(build: Callable[[], nn.Module], input_shape: Sequence[int], name: str) -> None:
    """Refuse an input size the net `build()` makes cannot take (its feature maps would shrink to
    nothing before its global pooling), as ValueError, at construction rather than in training."""
    try:
        output_numel(lambda: build().eval(), input_shape)  # eval: batch norm takes one example then
    except RuntimeError as e:
        size = "x".join(map(str, input_shape[1:]))
        raise ValueError(
            f"{name} cannot take {size} inputs: they shrink to nothing inside it ({e}); give it a larger input_size"
        ) from None
