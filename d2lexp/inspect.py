"""Look inside a model without training it: `python -m d2lexp.inspect model=<name> [overrides]`.

The book's "feed a dummy input through each block and print its shape", with the cost of
each block (d2lexp.measure: on PyTorch's meta device, under torch's own FLOP counter; MACs,
FLOPs = 2 x MACs).

    python -m d2lexp.inspect model=vgg11                  # per block: output shape, parameters, MACs
    python -m d2lexp.inspect experiment=d2l/resnet18 inspect.depth=2 inspect.parameters=true
    python -m d2lexp.inspect inspect.compare=inception    # the course's Inception vs 3x3 vs 5x5 table
    python -m d2lexp.inspect inspect.compare=inception_v3 # Inception-V3's factorised convolutions
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig

from d2lexp.cli import Command, fail, refuse_unknown_keys, start
from d2lexp.config import CONFIG_PATH
from d2lexp.errors import D2lexpError

if TYPE_CHECKING:  # torch is imported where a net is measured: `--help` and a refused command line need none
    import torch
    from torch import nn

    from d2lexp.measure import ModelStats


def _cost(build: Callable[[], nn.Module], example: torch.Tensor) -> tuple[int, int]:
    from d2lexp.measure import inspect_model, meta_model

    stats = inspect_model(meta_model(build), example, depth=0)
    return stats.params, stats.macs


def inception_comparison() -> list[tuple[str, int, int]]:
    """The course's comparison for a 192x28x28 input and 256 output channels:
    (block, weights without biases, MACs) for the Inception block, one 3x3 and one 5x5 conv."""
    import torch
    from torch import nn

    from d2lexp.models.googlenet import Inception

    blocks = {
        "Inception(192 -> 64 + 128 + 32 + 32)": lambda: Inception(192, 64, (96, 128), (16, 32), 32, bias=False),
        "Conv2d 3x3, 192 -> 256": lambda: nn.Conv2d(192, 256, kernel_size=3, padding=1, bias=False),
        "Conv2d 5x5, 192 -> 256": lambda: nn.Conv2d(192, 256, kernel_size=5, padding=2, bias=False),
    }
    example = torch.empty(1, 192, 28, 28, device="meta")
    return [(name, *_cost(make, example)) for name, make in blocks.items()]


def _layer(kernel: str) -> nn.Module:
    from torch import nn

    from d2lexp.models.googlenet import spatial_conv

    return nn.Sequential(*spatial_conv(256, 256, kernel, bias=False))


def inception_v3_comparison() -> tuple[list[tuple[str, int, int]], list[tuple[str, int, int]]]:
    """Inception-V3's factorisations, measured as the course's Inception table: the block
    (192 -> 64, (96, 128), (16, 32), 32 on 192x28x28) as GoogLeNet builds it and with each
    replacement on its own; then single layers at equal channels (256 -> 256 at 28x28), each
    beside its factorisation. (name, weights without biases, MACs) rows."""
    import torch

    from d2lexp.models.googlenet import Inception

    channels = (192, 64, (96, 128), (16, 32), 32)
    blocks = {
        "GoogLeNet's block (5x5, 3x3)": {},
        "5x5 -> 3x3 + 3x3": {"five": "3x3+3x3"},
        "5x5 -> 1x7 + 7x1": {"five": "1x7+7x1"},
        "3x3 -> 1x3 + 3x1": {"three": "1x3+3x1"},
    }
    example = torch.empty(1, 192, 28, 28, device="meta")
    block_rows = [(name, *_cost(partial(Inception, *channels, bias=False, **k), example)) for name, k in blocks.items()]
    example = torch.empty(1, 256, 28, 28, device="meta")
    layer_rows = [
        (f"{kernel.replace('+', ' + ')}, 256 -> 256", *_cost(partial(_layer, kernel), example))
        for kernel in ("5x5", "3x3+3x3", "3x3", "1x3+3x1", "7x7", "1x7+7x1")
    ]
    return block_rows, layer_rows


def _human(n: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table: readable in a terminal, pastes into Markdown."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [
        " | ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in cells
    ]
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


def _rows(rows: list[tuple[str, int, int]]) -> list[tuple[str, str, str, str]]:
    return [
        (name, f"{weights:,}", f"{macs:,}", f"{weights / 1e6:.2f}M / {macs / 1e6:.0f}M") for name, weights, macs in rows
    ]


def comparison(name: str) -> str:
    """The course's cost tables: `inception` (the block against single convolutions) and
    `inception_v3` (its factorised convolutions)."""
    header = ("block", "weights", "MACs", "weights / MACs")
    if name == "inception":
        return "Input 192x28x28, 256 output channels; weights without biases, MACs per example:\n" + format_table(
            header, _rows(inception_comparison())
        )
    if name == "inception_v3":
        blocks, layers = inception_v3_comparison()
        return (
            "Inception(192 -> 64, (96, 128), (16, 32), 32) on 192x28x28, each replacement on its own; "
            "weights without biases, MACs per example:\n"
            + format_table(header, _rows(blocks))
            + "\n\nSingle layers at equal channels, 256 -> 256 at 28x28:\n"
            + format_table(("layer", "weights", "MACs", "weights / MACs"), _rows(layers))
        )
    raise SystemExit(f"inspect.compare={name!r}: the comparisons are 'inception' and 'inception_v3'.")


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="inspect")
def hydra_main(cfg: DictConfig) -> None:
    from d2lexp import build
    from d2lexp.measure import inspect_model, meta_model

    if cfg.inspect.compare is not None:
        print(comparison(str(cfg.inspect.compare)))
        return
    try:
        net = meta_model(lambda: build.net(cfg, start=False))
        example = build.data(cfg).model_input()
    except D2lexpError as e:
        fail(e)
    stats = inspect_model(net, example.to("meta"), depth=cfg.inspect.depth)
    print(format_model_stats(stats, type(net).__name__))
    if cfg.inspect.parameters:
        print()
        print(format_parameters(net))


COMMAND = Command(
    script="d2lexp-inspect",
    module="d2lexp.inspect",
    purpose="a net's blocks: output shapes, parameters and multiply-accumulates, without training or data.",
    usage="d2lexp-inspect [model=NAME] [key=value ...]",
    options=(
        ("model=NAME", "any model option (python -m d2lexp --help lists them), or experiment=PRESET"),
        ("inspect.depth=N", "1: the net's direct children (the book's blocks); 2: one level deeper"),
        ("inspect.parameters=true", "also list every parameter by name and shape"),
        ("inspect.compare=NAME", "inception: the course's Inception block against single convolutions; inception_v3"),
        ("key=value", "any training setting that changes the net (model.input_size=64, data.resize=96)"),
    ),
    examples=(
        ("d2lexp-inspect model=googlenet", "GoogLeNet's blocks at 96x96"),
        (
            "d2lexp-inspect model=vgg11 model.input_size=64 inspect.parameters=true",
            "a smaller VGG-11, parameter by parameter",
        ),
    ),
)


def main() -> None:
    """`python -m d2lexp.inspect` and `d2lexp-inspect`."""
    args = start(COMMAND, sys.argv[1:])
    refuse_unknown_keys("inspect", args)
    hydra_main()


if __name__ == "__main__":
    main()
