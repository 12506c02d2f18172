"""How fast is d2lexp? LeNet with the book's settings, trained three ways in one run.

1. d2lexp: the real pipeline (Hydra config -> Lightning -> TensorBoard), `experiment=d2l/lenet`.
2. minimal: the fastest plain-PyTorch loop we can write for this net on this machine, over the
   same in-memory uint8 tensors. Variants (memory format, threads, batch construction,
   torch.compile) are measured first, alternating and repeated, and the fastest is kept;
   d2lexp is then run with the matching config (task.channels_last, task.compile).
3. book-style: the book's recipe: torchvision's FashionMNIST with ToTensor in a
   DataLoader(num_workers=4), per-batch float() accumulation (d2l's train_ch6).

Every rate is training examples per second of wall time over whole epochs, data loading
included, evaluation excluded, after a warm-up epoch. d2lexp and the minimal loop run in
one process, step about step (a minimal step before each d2lexp step; the time between
two minimal steps is one whole d2lexp iteration), so that the machine's drift, which is
larger than the difference measured, hits both alike; the ratio is the median over epochs.
`--wall` also times complete 10-epoch runs as a user starts them (two processes:
`python -m d2lexp experiment=d2l/lenet` and the book-style loop), start-up and evaluation
included.

    python scripts/benchmark.py [--rounds 5] [--wall] [--json results.json]

Figures are ratios against baselines measured in the same run: machines are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from d2lexp.data.fashion_mnist import ensure_fashion_mnist, load_split  # noqa: E402
from d2lexp.models.init import xavier_uniform  # noqa: E402
from d2lexp.models.lenet import LeNet  # noqa: E402

BATCH, LR = 256, 0.9  # the book's LeNet settings


def default_data_dir() -> str:
    for candidate in (os.environ.get("D2LEXP_DATA"), REPO.parent / "shared" / "datasets", REPO / "data"):
        if candidate and (Path(candidate) / "FashionMNIST" / "raw").is_dir():
            return str(candidate)
    return str(REPO / "data")


def book_lenet() -> nn.Module:
    torch.manual_seed(0)
    net = LeNet()
    net.apply(xavier_uniform())
    return net


# ---------------------------------------------------------------- minimal loop


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

    def batches(self, limit: int | None = None):
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

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        x = x.float().div_(255)
        if self.variant.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(self.step_net(x), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def run(self, limit: int | None = None) -> tuple[int, float]:
        """One (partial) epoch: (examples, seconds)."""
        previous = torch.get_num_threads()
        if self.variant.threads:
            torch.set_num_threads(self.variant.threads)
        try:
            count, start = 0, time.perf_counter()
            for x, y in self.batches(limit):
                self.step(x, y)
                count += len(y)
            return count, time.perf_counter() - start
        finally:
            torch.set_num_threads(previous)


CANDIDATES = [
    Variant(),
    Variant(channels_last=True),
    Variant(channels_last=True, threads=1),
    Variant(channels_last=True, shuffle_once=True),
    Variant(compile=True),
    Variant(channels_last=True, compile=True),
]


def pick_minimal_variant(images, labels, batches: int, repeats: int, log: Callable[[str], None]) -> Variant:
    """Measure every variant on `batches` batches, alternating, `repeats` times; the fastest wins."""
    candidates = CANDIDATES
    loops = {v: MinimalLoop(images, labels, v) for v in candidates}
    for loop in loops.values():  # warm-up: compilation, allocator, oneDNN primitive caches
        loop.run(limit=8)
    rates: dict[Variant, list[float]] = {v: [] for v in candidates}
    for _ in range(repeats):
        for variant, loop in loops.items():
            count, seconds = loop.run(limit=batches)
            rates[variant].append(count / seconds)
    medians = {v: statistics.median(r) for v, r in rates.items()}
    for variant, rate in sorted(medians.items(), key=lambda kv: -kv[1]):
        log(f"  minimal variant {variant.name:<32} {rate:>9,.0f} examples/s (median of {repeats})")
    return max(medians, key=medians.get)


# ---------------------------------------------------------------- the book's loop


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
    loss = nn.CrossEntropyLoss()

    def accuracy(y_hat: torch.Tensor, y: torch.Tensor) -> float:
        return float((y_hat.argmax(axis=1).type(y.dtype) == y).type(y.dtype).sum())

    timings = []
    for _ in range(epochs):
        metric = [0.0, 0.0, 0.0]  # the book's Accumulator(3): loss sum, correct, examples
        net.train()
        start = time.perf_counter()
        for X, y in train_iter:
            optimizer.zero_grad()
            y_hat = net(X)
            l = loss(y_hat, y)
            l.backward()
            optimizer.step()
            with torch.no_grad():
                metric[0] += float(l * X.shape[0])
                metric[1] += accuracy(y_hat, y)
                metric[2] += X.shape[0]
        timings.append((int(metric[2]), time.perf_counter() - start))
        if evaluate:
            net.eval()
            correct = total = 0.0
            with torch.no_grad():
                for X, y in test_iter:
                    correct += accuracy(net(X), y)
                    total += y.numel()
            print(
                f"epoch loss {metric[0] / metric[2]:.3f}, train acc {metric[1] / metric[2]:.3f}, "
                f"test acc {correct / total:.3f}",
                flush=True,
            )
    return timings


def time_book_style(data_dir: str, epochs: int) -> float:
    timings = book_style_train(data_dir, epochs + 1, evaluate=False)[1:]  # first epoch: warm-up
    return sum(c for c, _ in timings) / sum(s for _, s in timings)


# ---------------------------------------------------------------- d2lexp


def d2lexp_overrides(variant: Variant) -> list[str]:
    return [
        "experiment=d2l/lenet",
        f"task.channels_last={str(variant.channels_last).lower()}",
        f"task.compile={str(variant.compile).lower()}",
    ]


def d2lexp_interleaved(
    data_dir: str, variant: Variant, rounds: int, output_dir: Path, minimal: MinimalLoop, extra: list[str]
) -> tuple[list[float], list[float]]:
    """Train d2lexp for 1 + `rounds` epochs with a minimal-loop step before each of its steps.

    The machine's speed drifts (other tenants, clocks) by more than the difference being
    measured, so the two run step about step in one process: the time between two
    consecutive minimal steps is exactly one whole d2lexp iteration (data, transfer, step,
    hooks, logging, progress bar). Summed over an epoch, both see the same machine.
    The first epoch is warm-up. Returns the per-epoch rates (d2lexp, minimal).
    """
    import lightning.pytorch as pl
    from hydra import compose, initialize_config_dir

    from d2lexp.train import CONF_DIR, train

    d2lexp_rates: list[float] = []
    minimal_rates: list[float] = []

    class Interleave(pl.Callback):  # listed first: its hooks run before d2lexp's own
        def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            self.batches = minimal.batches()
            self.mark: float | None = None
            self.d2lexp = [0, 0.0]  # examples, seconds
            self.minimal = [0, 0.0]
            self.pending = 0

        def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx) -> None:
            now = time.perf_counter()
            if self.mark is not None:  # one whole d2lexp iteration since the last minimal step
                self.d2lexp[0] += self.pending
                self.d2lexp[1] += now - self.mark
            x, y = next(self.batches)
            minimal.step(x, y)
            self.mark = time.perf_counter()
            self.minimal[0] += len(y)
            self.minimal[1] += self.mark - now
            self.pending = len(batch[1])

        def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            if trainer.current_epoch >= 1:
                d2lexp_rates.append(self.d2lexp[0] / self.d2lexp[1])
                minimal_rates.append(self.minimal[0] / self.minimal[1])

    overrides = [
        *d2lexp_overrides(variant),
        f"trainer.max_epochs={rounds + 1}",  # the first epoch is warm-up
        f"paths.data_dir={data_dir}",
        f"paths.output_dir={output_dir}",
        "test=false",
        *extra,
    ]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    previous = torch.get_num_threads()
    if variant.threads:
        torch.set_num_threads(variant.threads)
    try:
        train(cfg, callbacks=[Interleave()])
    finally:
        torch.set_num_threads(previous)
    return d2lexp_rates, minimal_rates


def time_command(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return seconds, result.stdout + result.stderr


def wall_clock(data_dir: str, output_dir: Path, log: Callable[[str], None]) -> dict[str, float]:
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
    book_seconds, book_output = time_command([sys.executable, __file__, "--book-style-run", "--data-dir", data_dir], env)
    last_epoch = [line for line in book_output.splitlines() if line.startswith("epoch loss")][-1]
    log(f"  book-style 10 epochs: {book_seconds:.1f} s wall, last epoch: {last_epoch}")
    return {
        "d2lexp_wall_seconds": d2lexp_seconds,
        "book_style_wall_seconds": book_seconds,
        "wall_ratio": d2lexp_seconds / book_seconds,
        "d2lexp_startup_seconds": record["startup_seconds"],
        "d2lexp_test_acc": record["test/acc"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=default_data_dir())
    parser.add_argument("--rounds", type=int, default=3, help="timed epochs of step-interleaved minimal and d2lexp")
    parser.add_argument("--variant-batches", type=int, default=40, help="batches per variant trial")
    parser.add_argument("--variant-repeats", type=int, default=3)
    parser.add_argument("--variant", choices=[v.name for v in CANDIDATES], help="skip the search: use this variant")
    parser.add_argument("--override", action="append", default=[], help="extra d2lexp config override (repeatable)")
    parser.add_argument("--skip-book-style", action="store_true", help="measure d2lexp against the minimal loop only")
    parser.add_argument("--wall", action="store_true", help="also time complete 10-epoch runs (several minutes)")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--book-style-run", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.book_style_run:  # the child process of --wall
        book_style_train(args.data_dir, epochs=10)
        return

    def log(line: str) -> None:
        print(line, flush=True)

    raw = ensure_fashion_mnist(args.data_dir, download=True)
    images, labels = load_split(raw, "train")
    log(f"torch {torch.__version__}, {torch.get_num_threads()} threads, LeNet, batch {BATCH}, lr {LR}, CPU")
    if args.variant:
        variant = next(v for v in CANDIDATES if v.name == args.variant)
    else:
        log("Choosing the minimal loop's variant:")
        variant = pick_minimal_variant(images, labels, args.variant_batches, args.variant_repeats, log)
    log(f"Fastest minimal variant: {variant.name}; d2lexp runs with {' '.join(d2lexp_overrides(variant)[1:])}")

    samples: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        minimal = MinimalLoop(images, labels, variant)
        minimal.run()  # warm-up epoch (compilation)
        samples["d2lexp"], samples["minimal"] = d2lexp_interleaved(
            args.data_dir, variant, args.rounds, Path(tmp) / "d2lexp", minimal, args.override
        )
        for i, (d, m) in enumerate(zip(samples["d2lexp"], samples["minimal"])):
            log(f"  epoch {i + 1}, step-interleaved: minimal {m:,.0f}, d2lexp {d:,.0f} examples/s ({d / m:.2f}x)")
        if not args.skip_book_style:
            samples["book-style"] = [time_book_style(args.data_dir, epochs=1)]
            log(f"  book-style {samples['book-style'][-1]:,.0f} examples/s")
        wall = wall_clock(args.data_dir, Path(tmp), log) if args.wall else {}

    rates = {name: statistics.median(values) for name, values in samples.items()}
    paired = statistics.median(d / m for d, m in zip(samples["d2lexp"], samples["minimal"]))
    log("")
    book = rates.get("book-style")
    log("| approach | training examples/s | vs minimal | vs book-style |")
    log("|---|---:|---:|---:|")
    for name in rates:
        vs_minimal = paired if name == "d2lexp" else rates[name] / rates["minimal"]
        vs_book = f"{rates[name] / book:.2f}x" if book else "-"
        log(f"| {name} | {rates[name]:,.0f} | {vs_minimal:.2f}x | {vs_book} |")
    if wall:
        log(
            f"\n10-epoch wall time: d2lexp {wall['d2lexp_wall_seconds']:.1f} s, book-style "
            f"{wall['book_style_wall_seconds']:.1f} s ({100 * wall['wall_ratio']:.0f}%); "
            f"d2lexp's first training step {wall['d2lexp_startup_seconds']:.1f} s after the command"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {"variant": variant.name, "examples_per_second": rates, "samples": samples, "d2lexp_vs_minimal": paired, **wall},
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
