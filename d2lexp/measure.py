"""Shapes, parameters and MACs of a net, measured on PyTorch's meta device (shapes only: no
memory, no arithmetic) under torch's own FLOP counter. Units: MACs (multiply-accumulates);
FLOPs = 2 x MACs, the way `torch.utils.flop_counter` counts them. Biases, activations, pooling
and normalisation are not counted, as in the counter."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class LayerStats:
    name: str
    kind: str
    output_shape: tuple[int, ...] | None
    params: int
    macs: int


@dataclass(frozen=True)
class ModelStats:
    layers: list[LayerStats]
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    params: int
    macs: int  # per example
    output_shapes: tuple[tuple[int, ...], ...] = ()  # every tensor of an output that is several (a detector's)


def _shape(output: object) -> tuple[int, ...] | None:
    if isinstance(output, torch.Tensor):
        return tuple(output.shape)
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return tuple(output[0].shape)
    return None


def inspect_model(net: nn.Module, example: torch.Tensor, depth: int = 1) -> ModelStats:
    """Shapes, parameters and MACs of `net`'s modules down to `depth` levels, for one `example`.

    Run it on a meta-device net and example (see `meta_model`) to pay nothing for big models.
    """
    root = type(net).__name__
    modules = [(name, module) for name, module in net.named_modules() if name and name.count(".") < depth]
    shapes: dict[str, tuple[int, ...] | None] = {}

    def recorder(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: object, output: object) -> None:
            shapes[name] = _shape(output)

        return hook

    handles = [module.register_forward_hook(recorder(name)) for name, module in modules]
    was_training = net.training
    net.eval()  # batch norm in training mode refuses a batch of one example
    try:
        with torch.no_grad(), FlopCounterMode(display=False, depth=depth + 1) as counter:
            output = net(example)
    finally:
        net.train(was_training)
        for handle in handles:
            handle.remove()
    flops = {key: sum(ops.values()) for key, ops in counter.get_flop_counts().items()}
    layers = [
        LayerStats(
            name=name,
            kind=type(module).__name__,
            output_shape=shapes.get(name),
            params=sum(p.numel() for p in module.parameters()),
            macs=flops.get(f"{root}.{name}", 0) // 2,
        )
        for name, module in modules
    ]
    return ModelStats(
        layers=layers,
        input_shape=tuple(example.shape),
        output_shape=_shape(output) or (),
        params=sum(p.numel() for p in net.parameters()),
        macs=flops.get("Global", 0) // 2 // max(1, example.shape[0]),
        output_shapes=tuple(
            tuple(t.shape)
            for t in (output if isinstance(output, (tuple, list)) else (output,))
            if isinstance(t, torch.Tensor)
        ),  # fmt: skip
    )


def meta_model(build: Callable[[], nn.Module]) -> nn.Module:
    """Build a net on the meta device: parameters with shapes but no storage."""
    with torch.device("meta"):
        return build()


def model_stats(build: Callable[[], nn.Module], example: torch.Tensor) -> ModelStats:
    """Parameters, output shape and MACs per example of the net `build()` makes, built and run on
    the meta device (a net `build` returns elsewhere is moved there: no memory either way)."""
    return inspect_model(meta_model(build).to("meta"), example.to("meta"), depth=0)
