"""LeNet with the book's settings on this machine, three ways:

1. d2lexp: the real pipeline, `experiment=d2l/lenet`, with the config matching the fastest
   minimal loop (speed.channels_last, speed.compile);
2. minimal: the fastest plain-PyTorch loop found for this net here, over the same in-memory
   uint8 tensors: memory format, threads, batch construction and torch.compile are measured
   first, alternating and repeated;
3. book-style: d2l's train_ch6: torchvision's FashionMNIST with ToTensor in a
   DataLoader(num_workers=4), per-batch float() accumulation.

Rates are training examples per second of wall time over whole epochs (data loading
included, evaluation excluded) after a warm-up epoch; d2lexp and the minimal loop run step
about step (see common.interleave_with_d2lexp). `--wall` also times complete 10-epoch runs
as a user starts them, start-up and evaluation included.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.common import book_accuracy, book_train_epoch, interleave_with_d2lexp, log, num_threads, time_command

BATCH, LR = 256, 0.9  # the book's LeNet settings


def book_lenet() -> nn.Module:
    from d2lexp.models.init import xavier_uniform
    from d2lexp.models.lenet import LeNet

    torch.manual_seed(0)
    net = LeNet()
    net.apply(xavier_uniform())
    return net


@dataclass(frozen=True)
class Variant:
    channels_last: bool = False
    compile: bool = False
    threads: int | None = None  # None: torch's default (one per core)
    shuffle_once: bool = False  # one gather per epoch, then contiguous slices

    @property
    def name(self) -> str:
        parts = ["channels_last" if self.channels_last else "contiguous"]
        if self.compile:
            parts.append("compile")
        if self.threads:
            parts.append(f"{self.threads}thread")
        if self.shuffle_once:
            parts.append("shuffle-once")
        return "+".join(parts)

    def d2lexp_overrides(self) -> list[str]:
        return [
            "experiment=d2l/lenet",
            f"speed.channels_last={str(self.channels_last).lower()}",
            f"speed.compile={str(self.compile).lower()}",
        ]


CANDIDATES = [
    Variant(),
    Variant(channels_last=True),
    Variant(channels_last=True, threads=1),
    Variant(channels_last=True, shuffle_once=True),
    Variant(compile=True),
    Variant(channels_last=True, compile=True),
]


class MinimalLoop:
    """Plain PyTorch: index a batch out of the uint8 tensors, scale it, step."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, variant: Variant) -> None:
        self.images, self.labels, self.variant = images, labels, variant
        self.net = book_lenet()
        if variant.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.step_net = torch.compile(self.net) if variant.compile else self.net
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=LR)
        self.epoch = 0

    def batches(self, limit: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.epoch))
        self.epoch += 1
        images, labels = (self.images[order], self.labels[order]) if self.variant.shuffle_once else (None, None)
        for i, start in enumerate(range(0, n, BATCH)):
            if limit is not None and i >= limit:
                return
            if self.variant.shuffle_once:
                yield images[start : start + BATCH], labels[start : start + BATCH]
            else:
                index = order[start : start + BATCH]
                yield self.images[index], self.labels[index]

    def step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> int:
        x, y = batch
        x = x.float().div_(255)
        if self.variant.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(self.step_net(x), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return len(y)

    def run(self, limit: int | None = None) -> tuple[int, float]:
        """One (partial) epoch: (examples, seconds)."""
        with num_threads(self.variant.threads):
            count, start = 0, time.perf_counter()
            for batch in self.batches(limit):
                count += self.step(batch)
            return count, time.perf_counter() - start


def pick_minimal_variant(images: torch.Tensor, labels: torch.Tensor, batches: int, repeats: int) -> Variant:
    """Measure every variant on `batches` batches, alternating, `repeats` times; the fastest wins."""
    loops = {v: MinimalLoop(images, labels, v) for v in CANDIDATES}
    for loop in loops.values():  # warm-up: compilation, allocator, oneDNN primitive caches
        loop.run(limit=8)
    rates: dict[Variant, list[float]] = {v: [] for v in CANDIDATES}
    for _ in range(repeats):
        for variant, loop in loops.items():
            count, seconds = loop.run(limit=batches)
            rates[variant].append(count / seconds)
    medians = {v: statistics.median(r) for v, r in rates.items()}
    for variant, rate in sorted(medians.items(), key=lambda kv: -kv[1]):
        log(f"  minimal variant {variant.name:<32} {rate:>9,.0f} examples/s (median of {repeats})")
    return max(medians, key=medians.get)


def book_style_train(data_dir: str, epochs: int, evaluate: bool = True) -> list[tuple[int, float]]:
    """d2l's train_ch6 on the CPU: per-image ToTensor in 4 workers, float() accumulation per batch.

    Returns (examples, training seconds) per epoch; evaluation runs (as in the book) but is not timed.
    """
    import torchvision
    from torch.utils.data import DataLoader
    from torchvision import transforms

    to_tensor = transforms.ToTensor()
    train_set = torchvision.datasets.FashionMNIST(data_dir, train=True, transform=to_tensor, download=False)
    test_set = torchvision.datasets.FashionMNIST(data_dir, train=False, transform=to_tensor, download=False)
    train_iter = DataLoader(train_set, BATCH, shuffle=True, num_workers=4)
    test_iter = DataLoader(test_set, BATCH, shuffle=False, num_workers=4)
    net = book_lenet()
    optimizer = torch.optim.SGD(net.parameters(), lr=LR)

    timings = []
    for _ in range(epochs):
        start = time.perf_counter()
        metric = book_train_epoch(net, train_iter, optimizer)
        timings.append((int(metric[2]), time.perf_counter() - start))
        if evaluate:
            net.eval()
            correct = total = 0.0
            with torch.no_grad():
                for X, y in test_iter:
                    correct += book_accuracy(net(X), y)
                    total += y.numel()
            print(
                f"epoch loss {metric[0] / metric[2]:.3f}, train acc {metric[1] / metric[2]:.3f}, "
                f"test acc {correct / total:.3f}",
                flush=True,
            )
    return timings


def wall_clock(data_dir: str, output_dir: Path) -> dict[str, float]:
    """Complete 10-epoch runs, each in its own process, as a user would start them: the
    preset as it is (no torch.compile: on a few CPU cores its compile time outweighs its gain
    over 10 epochs), and the book's loop."""
    env = {**os.environ, "D2LEXP_DATA": data_dir, "PYTHONUNBUFFERED": "1"}
    run_dir = output_dir / "wall_d2lexp"
    d2lexp_seconds, _ = time_command(
        [sys.executable, "-m", "d2lexp", "experiment=d2l/lenet", f"hydra.run.dir={run_dir}"], env
    )
    record = json.loads((run_dir / "metrics.json").read_text())
    log(f"  d2lexp 10 epochs: {d2lexp_seconds:.1f} s wall, test acc {record['test/acc']:.3f}, "
        f"first step after {record['startup_seconds']:.1f} s")  # fmt: skip
    book_seconds, output = time_command(
        [sys.executable, "-c", f"from benchmarks.lenet import book_style_train; book_style_train({data_dir!r}, 10)"],
        {**env, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    last_epoch = [line for line in output.splitlines() if line.startswith("epoch loss")][-1]
    log(f"  book-style 10 epochs: {book_seconds:.1f} s wall, last epoch: {last_epoch}")
    return {
        "d2lexp_wall_seconds": d2lexp_seconds,
        "book_style_wall_seconds": book_seconds,
        "wall_ratio": d2lexp_seconds / book_seconds,
        "d2lexp_startup_seconds": record["startup_seconds"],
        "d2lexp_test_acc": record["test/acc"],
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="d2lexp's timed epochs, each beside the reference loop (after one warm-up epoch)",
    )
    parser.add_argument("--variant", choices=[v.name for v in CANDIDATES], help="skip the search, use this variant")
    parser.add_argument("--variant-batches", type=int, default=40, help="batches per variant trial")
    parser.add_argument("--variant-repeats", type=int, default=3)
    parser.add_argument("--skip-book-style", action="store_true", help="leave out the book's loop")
    parser.add_argument("--wall", action="store_true", help="also time complete 10-epoch runs (several minutes)")


def run(args: Any) -> dict[str, Any]:
    from d2lexp.data.fashion_mnist import ensure_fashion_mnist, load_split

    images, labels = load_split(ensure_fashion_mnist(args.data_dir, download=True), "train")
    log(f"LeNet, batch {BATCH}, lr {LR}, on the CPU with {torch.get_num_threads()} threads (torch {torch.__version__})")
    if args.variant:
        variant = next(v for v in CANDIDATES if v.name == args.variant)
    else:
        log("Choosing the minimal loop's variant:")
        variant = pick_minimal_variant(images, labels, args.variant_batches, args.variant_repeats)
    overrides = [*variant.d2lexp_overrides(), f"paths.data_dir={args.data_dir}", "test=false", *args.override]
    log(f"Minimal variant: {variant.name}; d2lexp runs with {' '.join(overrides[1:3])}")

    samples: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        minimal = MinimalLoop(images, labels, variant)
        minimal.run()  # warm-up epoch (compilation; a compiled d2lexp run restarts dynamo, so a compiled
        # minimal loop compiles once more, in the interleaving's warm-up epoch)
        samples["d2lexp"], samples["minimal"], _ = interleave_with_d2lexp(
            [*overrides, f"trainer.max_epochs={args.rounds + 1}", f"paths.output_dir={tmp}/d2lexp"],
            minimal, count=lambda batch: len(batch[1]), threads=variant.threads,
        )  # fmt: skip
        for i, (d, m) in enumerate(zip(samples["d2lexp"], samples["minimal"])):
            log(f"  epoch {i + 1}, step-interleaved: minimal {m:,.0f}, d2lexp {d:,.0f} examples/s ({d / m:.2f}x)")
        if not args.skip_book_style:
            timings = book_style_train(args.data_dir, 2, evaluate=False)[1:]  # the first epoch is warm-up
            samples["book-style"] = [sum(c for c, _ in timings) / sum(s for _, s in timings)]
            log(f"  book-style {samples['book-style'][-1]:,.0f} examples/s")
        wall = wall_clock(args.data_dir, Path(tmp)) if args.wall else {}

    rates = {name: statistics.median(values) for name, values in samples.items()}
    paired = statistics.median(d / m for d, m in zip(samples["d2lexp"], samples["minimal"]))
    book = rates.get("book-style")
    log("\n| approach | training examples/s | vs minimal | vs book-style |\n|---|---:|---:|---:|")
    for name in rates:
        vs_minimal = paired if name == "d2lexp" else rates[name] / rates["minimal"]
        log(f"| {name} | {rates[name]:,.0f} | {vs_minimal:.2f}x | {f'{rates[name] / book:.2f}x' if book else '-'} |")
    if wall:
        log(
            f"\n10-epoch wall time: d2lexp {wall['d2lexp_wall_seconds']:.1f} s, book-style "
            f"{wall['book_style_wall_seconds']:.1f} s ({100 * wall['wall_ratio']:.0f}%); "
            f"d2lexp's first training step {wall['d2lexp_startup_seconds']:.1f} s after the command"
        )
    return {
        "variant": variant.name,
        "examples_per_second": rates,
        "samples": samples,
        "d2lexp_vs_minimal": paired,
        **wall,
    }
