"""Look inside a model without training it: `python -m d2lexp.inspect model=<name> [data.resize=96]`.

The book's "feed a dummy input through each block and print its shape", with the cost of
each block: one example goes through the net on PyTorch's meta device (shapes only: no
memory, no arithmetic) under torch's own FLOP counter. Units: MACs (multiply-accumulates);
FLOPs = 2 x MACs, the way `torch.utils.flop_counter` counts them. Biases, activations,
pooling and normalisation are not counted, as in the counter.

    python -m d2lexp.inspect model=vgg11                  # per block: output shape, parameters, MACs
    python -m d2lexp.inspect model=resnet18 inspect.depth=2 inspect.parameters=true
    python -m d2lexp.inspect inspect.compare=inception    # the course's Inception vs 3x3 vs 5x5 table
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import hydra
import torch
from omegaconf import DictConfig
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from d2lexp import config as _schemas  # noqa: F401  (registers the typed schemas with Hydra)
from d2lexp.train import CONF_DIR, instantiate


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
    )


def meta_model(build: Callable[[], nn.Module]) -> nn.Module:
    """Build a net on the meta device: parameters with shapes but no storage."""
    with torch.device("meta"):
        return build()


def count_macs(build: Callable[[], nn.Module], example: torch.Tensor) -> int:
    """MACs per example of the net `build()` makes (built and run on the meta device)."""
    return inspect_model(meta_model(build), example.to("meta"), depth=0).macs


def inception_comparison() -> list[tuple[str, int, int]]:
    """The course's comparison for a 192x28x28 input and 256 output channels:
    (block, weights without biases, MACs) for the Inception block, one 3x3 and one 5x5 conv."""
    from d2lexp.models.googlenet import Inception

    blocks = {
        "Inception(192 -> 64 + 128 + 32 + 32)": lambda: Inception(192, 64, (96, 128), (16, 32), 32, bias=False),
        "Conv2d 3x3, 192 -> 256": lambda: nn.Conv2d(192, 256, kernel_size=3, padding=1, bias=False),
        "Conv2d 5x5, 192 -> 256": lambda: nn.Conv2d(192, 256, kernel_size=5, padding=2, bias=False),
    }
    example = torch.empty(1, 192, 28, 28, device="meta")
    rows = []
    for name, build in blocks.items():
        stats = inspect_model(meta_model(build), example, depth=0)
        rows.append((name, stats.params, stats.macs))
    return rows


def _human(n: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table: readable in a terminal, pastes into Markdown."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [" | ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def format_model_stats(stats: ModelStats, title: str) -> str:
    rows = [
        (layer.name, layer.kind, "x".join(map(str, layer.output_shape or ())), f"{layer.params:,}", f"{layer.macs:,}")
        for layer in stats.layers
    ]
    rows.append(("total", "", "x".join(map(str, stats.output_shape)), f"{stats.params:,}", f"{stats.macs:,}"))
    return (
        f"{title}: input {'x'.join(map(str, stats.input_shape))}\n"
        + format_table(("layer", "type", "output shape", "parameters", "MACs"), rows)
        + f"\n{stats.params:,} parameters ({_human(stats.params)}); per example {stats.macs:,} MACs "
        f"({_human(stats.macs)}), {2 * stats.macs:,} FLOPs ({_human(2 * stats.macs)})"
    )


def format_parameters(net: nn.Module) -> str:
    """Every parameter by name with its shape (d2l ch. 6.2's parameter access)."""
    rows = [(name, "x".join(map(str, p.shape)), f"{p.numel():,}") for name, p in net.named_parameters()]
    return format_table(("parameter", "shape", "numel"), rows)


def model_example(cfg: DictConfig) -> torch.Tensor:
    """One example as the model receives it: the data module's dummy batch after its
    device-side transform (e.g. resized to 224)."""
    datamodule = instantiate(cfg.data, _convert_="all")
    return datamodule.on_after_batch_transfer(datamodule.example_input(), 0)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="inspect")
def main(cfg: DictConfig) -> None:
    if cfg.inspect.compare == "inception":
        rows = [(name, f"{weights:,}", f"{macs:,}", f"{weights / 1e6:.2f}M / {macs / 1e6:.0f}M") for name, weights, macs in inception_comparison()]
        print("Input 192x28x28, 256 output channels; weights without biases, MACs per example:")
        print(format_table(("block", "weights", "MACs", "weights / MACs"), rows))
        return
    if cfg.inspect.compare is not None:
        raise SystemExit(f"inspect.compare={cfg.inspect.compare!r}: the only comparison is 'inception'.")
    net = meta_model(lambda: instantiate(cfg.model, _convert_="all"))
    stats = inspect_model(net, model_example(cfg).to("meta"), depth=cfg.inspect.depth)
    print(format_model_stats(stats, type(net).__name__))
    if cfg.inspect.parameters:
        print()
        print(format_parameters(net))


if __name__ == "__main__":
    main()
