"""The CNN chapter on whatever device this runs (a GPU, or the CPU): for each preset at its
resolution, batch size and precision, three rates in training examples per second of wall
time over whole epochs (data included), warm-up and compilation excluded, the device
synchronised around every timed region:

1. d2lexp: the real pipeline (`experiment=d2l/<preset>`, `trainer=gpu` on a GPU);
2. ceiling: the same net, precision, memory format and batch size in a minimal loop over
   synthetic tensors already on the device: the most any framework could get here;
3. book-style: the book's recipe: torchvision's FashionMNIST with Resize + ToTensor in a
   DataLoader(num_workers=4), fp32, per-batch float() accumulation.

d2lexp and the ceiling take turns in one process (see `Alternate`): `--rounds` timed epochs of
d2lexp after a warm-up one, a block of as many ceiling steps before, between and after them.
Epochs are whole, or `--batches` long, or as long as the ceiling takes about
`--epoch-seconds` to run (`batches_lasting`): short epochs are noisy.
Each rate is the median of its epochs or blocks; d2lexp/ceiling is the median of each epoch's
ratio to the blocks around it.

It also reports d2lexp's peak memory and the achieved TFLOP/s, from the FLOPs torch's
counter gives one example (training = 3 x the forward FLOPs), and with
`--profile-steps N` where each step's time goes (step_profile.py): the device's busy
time per step against the wall time, for d2lexp and the ceiling. With `--odd-batch`, what
an epoch's smaller last batch costs on its first step when cuDNN autotunes its new shape, and
on cuDNN's heuristics, as d2lexp runs it (`odd_batch_seconds`). With `--lightning-floor`, a
fourth rate: the ceiling's step as a bare LightningModule in `Trainer(barebones=True)` over the
same on-device tensors (`lightning_floor`), taking turns with the ceiling as d2lexp does. It
splits d2lexp's gap to the ceiling into Lightning's own loop (floor / ceiling) and what d2lexp
adds to it (d2lexp / floor): the first no change to d2lexp can close.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import math
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F

from benchmarks.common import benchmark_device, book_train_epoch, d2lexp_config, device_overrides, log
from benchmarks.step_profile import profile_d2lexp, profile_loop
from d2lexp.callbacks.throughput import Throughput, synchronize
from d2lexp.speed.compile import compile_options

PRESETS = ["lenet", "alexnet", "vgg", "nin", "googlenet", "lenet_bn", "resnet18", "densenet"]


class MinimalLoop:
    """The minimal training loop: synthetic batches already on the device, autocast as d2lexp's
    precision, channels_last, the same net, optimizer and (unless `compile=False`) compile setting."""

    def __init__(self, cfg: Any, device: torch.device, compile: bool = True) -> None:
        from d2lexp import build

        net = build.net(cfg).to(device).to(memory_format=torch.channels_last)
        options = compile_options(cfg.speed.compile) if compile else None
        self.net = torch.compile(net, **options) if options is not None else net
        self.optimizer = torch.optim.SGD(net.parameters(), lr=cfg.optimizer.lr)
        size = cfg.data.resize or 28
        self.x = torch.rand(cfg.data.batch_size, 1, size, size, device=device).contiguous(
            memory_format=torch.channels_last
        )
        self.y = torch.randint(0, 10, (cfg.data.batch_size,), device=device)
        self.device_type, self.bf16 = device.type, str(cfg.trainer.precision).startswith("bf16")

    def step(self, batch_size: int | None = None) -> None:
        """One training step on the whole synthetic batch, or on its first `batch_size` examples."""
        x, y = (self.x, self.y) if batch_size is None else (self.x[:batch_size], self.y[:batch_size])
        with torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=self.bf16):
            loss = F.cross_entropy(self.net(x), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def ceiling_step(cfg: Any, device: torch.device) -> Callable[[], None]:
    """The ceiling's step (`MinimalLoop`), warmed up: autotuning, allocator, compilation."""
    step = MinimalLoop(cfg, device).step
    for _ in range(5):
        step()
    return step


def odd_batch_seconds(cfg: Any, device: torch.device) -> dict[str, float]:
    """What an epoch's smaller last batch costs (eager, the minimal loop, cuDNN autotuning on
    as d2lexp's GPU runs have it), in seconds per training step at a shape not seen before and at
    that shape again: with autotuning, and on cuDNN's heuristic choice, which is what d2lexp
    gives it (`AutotuneMainShapes`). Two fresh sizes just under the epoch's remainder
    (60,000 mod the batch size), one per way, so neither finds the other's cache."""
    timings: dict[str, float] = {}
    step = MinimalLoop(cfg, device, compile=False).step
    before = torch.backends.cudnn.benchmark
    try:
        torch.backends.cudnn.benchmark = True
        for _ in range(3):  # the main shape, tuned: what the run is made of
            step()
        remainder = 60_000 % cfg.data.batch_size
        remainder = remainder if remainder > 2 else cfg.data.batch_size // 2  # a batch size that divides the split
        for way, size, autotune in (("autotuned", remainder - 1, True), ("heuristic", remainder - 2, False)):
            torch.backends.cudnn.benchmark = autotune
            for when in ("first", "again"):
                synchronize(device)
                start = time.perf_counter()
                step(size)
                synchronize(device)
                timings[f"{way}_{when}_step_seconds"] = time.perf_counter() - start
    finally:
        torch.backends.cudnn.benchmark = before
    return timings


def ceiling_block(step: Callable[[], None], batch_size: int, device: torch.device, batches: int) -> float:
    """Training examples per second of `batches` calls of the minimal loop's `step`."""
    synchronize(device)
    start = time.perf_counter()
    for _ in range(batches):
        step()
    synchronize(device)
    return batches * batch_size / (time.perf_counter() - start)


def batches_lasting(seconds: float, cfg: Any, device: torch.device, whole_epoch: int) -> int:
    """Training batches for timed epochs of about `seconds` each, from the rate of the minimal
    loop's eager step (timed in blocks that double until one lasts a quarter of a second), at
    least 2 and at most `whole_epoch`.

    A fixed count makes the epochs of a small net far shorter than those of a big one (50 batches:
    0.12 s for LeNet on an H200, 1 s for GoogLeNet), and in a fraction of a second the host's
    drift moves a rate by more than the gaps measured. A compiled or host-bound run's epochs come
    out shorter or longer than `seconds`; what matters is that none is tiny."""
    step, batch_size = MinimalLoop(cfg, device, compile=False).step, cfg.data.batch_size
    for _ in range(3):  # autotuning, allocator
        step()
    steps = 1
    while True:
        rate = ceiling_block(step, batch_size, device, steps)  # examples a second
        if steps * batch_size / rate >= 0.25 or steps >= whole_epoch:
            break
        steps *= 2
    return max(2, min(whole_epoch, math.ceil(seconds * rate / batch_size)))


class Alternate:
    """A Lightning callback that times a block of the ceiling's steps before each timed epoch of
    a Lightning run (d2lexp's, or the Lightning floor's) and once after the last, and reads the
    run's epoch rates off its epoch timer (d2lexp's `Throughput`, or `EpochTimer`).

    A GPU host's speed drifts between and within lease calls by more than the gaps being
    measured (1.5x between two calls, once), so the two loops take turns epoch by epoch in one
    process: each timed epoch sits between two ceiling blocks. The blocks run outside the run's
    timed window: this callback comes before the run's timer, which syncs the device and starts
    its clock after it. The ceiling is built (and warmed up) when epoch 1 starts, so epoch 0,
    the run's warm-up, ran alone: its peak memory is the run's own.
    """

    def __init__(
        self, make_step: Callable[[], Callable[[], None]], batch_size: int, device: torch.device, batches: int
    ) -> None:
        self.make_step, self.batch_size, self.device, self.batches = make_step, batch_size, device, batches
        self.step: Callable[[], None] | None = None
        self.ceiling_setup_seconds: float | None = None  # its build and warm-up steps: its compile, if any
        self.peak_memory_gb: float | None = None  # the run's, before the ceiling was built
        self.ceiling_rates: list[float] = []
        self.rates: list[float] = []  # the run's timed epochs

    def block(self) -> float:
        assert self.step is not None
        return ceiling_block(self.step, self.batch_size, self.device, self.batches)

    def callback(self) -> pl.Callback:
        outer = self

        class AlternateCallback(pl.Callback):
            def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
                if trainer.current_epoch < 1:
                    return
                if outer.step is None:
                    if outer.device.type == "cuda":
                        outer.peak_memory_gb = torch.cuda.max_memory_allocated(outer.device) / 2**30
                    start = time.perf_counter()
                    outer.step = outer.make_step()
                    outer.ceiling_setup_seconds = time.perf_counter() - start
                outer.ceiling_rates.append(outer.block())

            def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
                if outer.step is None:
                    raise RuntimeError("the run ended before its second epoch: the ceiling never ran")
                outer.ceiling_rates.append(outer.block())
                timer = next(c for c in trainer.callbacks if isinstance(c, (Throughput, EpochTimer)))
                timed = zip(timer.epoch_items[1:], timer.epoch_seconds[1:], strict=True)
                outer.rates = [items / seconds for items, seconds in timed]

        return AlternateCallback()

    def ratios(self) -> list[float]:
        """Each timed epoch's rate over the mean rate of the two ceiling blocks around it."""
        around = zip(self.ceiling_rates, self.ceiling_rates[1:])
        return [rate / ((before + after) / 2) for rate, (before, after) in zip(self.rates, around, strict=True)]


class EpochTimer(pl.Callback):
    """Examples and wall seconds of each training epoch, the device synchronised at both ends:
    d2lexp's `Throughput` without its logging, which a barebones Trainer refuses."""

    def __init__(self) -> None:
        self.epoch_items: list[int] = []
        self.epoch_seconds: list[float] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        synchronize(pl_module.device)
        self._start, self._items = time.perf_counter(), 0

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._items += int(batch[0].shape[0])

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        synchronize(pl_module.device)
        self.epoch_seconds.append(time.perf_counter() - self._start)
        self.epoch_items.append(self._items)


class FloorTask(pl.LightningModule):
    """The ceiling's training step (its net, optimizer and batch) as a bare LightningModule."""

    def __init__(self, loop: MinimalLoop) -> None:
        super().__init__()
        self.net, self.optimizer = loop.net, loop.optimizer

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer


class SameBatch:
    """`batches` times the ceiling's synthetic batch, already on the device: a loader that costs nothing."""

    def __init__(self, loop: MinimalLoop, batches: int) -> None:
        self.batch, self.batches = (loop.x, loop.y), batches

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return itertools.repeat(self.batch, self.batches)

    def __len__(self) -> int:
        return self.batches


def lightning_floor(
    cfg: Any, device: torch.device, batches: int, rounds: int, ceiling: Callable[[], None]
) -> Alternate:
    """Lightning's floor for this net: the ceiling's step, net, precision, memory format and batch
    in a barebones Trainer (no logger, progress bar, checkpoints, metrics or callbacks but the
    timers), `rounds` timed epochs of `batches` after a warm-up one, taking turns with blocks of
    the ceiling's `ceiling` step. Returns the `Alternate` that holds both loops' rates."""
    loop = MinimalLoop(cfg, device)
    alternate = Alternate(lambda: ceiling, cfg.data.batch_size, device, batches)
    trainer = pl.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu", devices=1, precision=cfg.trainer.precision,
        benchmark=cfg.trainer.get("benchmark"), max_epochs=1 + rounds, barebones=True,
        callbacks=[alternate.callback(), EpochTimer()],  # the ceiling's block first, outside the timed epoch
    )  # fmt: skip
    trainer.fit(FloorTask(loop), train_dataloaders=SameBatch(loop, batches))
    return alternate


def compile_counts() -> dict[str, int]:
    """What torch.compile made of the run's nets, from dynamo's counters: a graph break splits a
    net into graphs with eager code between them, and a skipped CUDA graph launches every kernel."""
    counters = torch._dynamo.utils.counters
    return {
        "graphs": counters["stats"]["unique_graphs"],
        "graph_breaks": sum(counters["graph_break"].values()),
        "cudagraph_skips": counters["inductor"]["cudagraph_skips"],
    }


def book_style_rate(cfg: Any, device: torch.device, data_dir: str, batches: int | None) -> float:
    """d2l's train_ch6 on this device: PIL Resize + ToTensor per image in 4 workers, fp32."""
    import torchvision
    from torch.utils.data import DataLoader
    from torchvision import transforms

    from d2lexp import build

    steps = [transforms.ToTensor()]
    if cfg.data.resize:
        steps.insert(0, transforms.Resize(cfg.data.resize))
    dataset = torchvision.datasets.FashionMNIST(
        data_dir, train=True, transform=transforms.Compose(steps), download=False
    )
    loader = DataLoader(dataset, cfg.data.batch_size, shuffle=True, num_workers=4)
    net = build.net(cfg).to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=cfg.optimizer.lr)

    def epoch(limit: int | None) -> tuple[float, float]:
        start = time.perf_counter()
        examples = book_train_epoch(net, loader, optimizer, device, limit)[2]
        synchronize(device)
        return examples, time.perf_counter() - start

    epoch(min(10, batches or 10))  # warm-up: cuDNN, allocator
    count, seconds = epoch(batches)  # a new epoch: the workers start again, as in the book
    return count / seconds


def counted_flops(cfg: Any) -> int:
    """Forward FLOPs for one example, from torch's counter on the meta device."""
    from d2lexp import build
    from d2lexp.measure import model_stats

    return 2 * model_stats(lambda: build.net(cfg), build.data(cfg).model_input()).macs


def _busy(profile: dict[str, Any]) -> str:
    return "-" if profile["device_ms_per_step"] is None else f"{profile['device_ms_per_step']:.2f}"


def log_floors(results: dict[str, Any]) -> None:
    """d2lexp's gap to the ceiling, split: Lightning's own loop, and what d2lexp adds to it."""
    log("\n| model | d2lexp ex/s | Lightning floor ex/s | ceiling ex/s | floor/ceiling | d2lexp/floor | d2lexp/ceiling |"
        "\n|---|---:|---:|---:|---:|---:|---:|")  # fmt: skip
    for preset, r in results.items():
        floor = r["lightning_floor"]
        log(f"| {preset} | {r['d2lexp']:,.0f} | {floor['rate']:,.0f} | {r['ceiling']:,.0f} | {floor['vs_ceiling']:.2f}x | "
            f"{floor['d2lexp_vs_floor']:.2f}x | {r['d2lexp_vs_ceiling']:.2f}x |")  # fmt: skip


def log_profiles(results: dict[str, Any]) -> None:
    """Where each step's time goes: wall time (unprofiled) against the device's busy time."""
    log(
        "\n| model | d2lexp ms/step | its device ms/step | ceiling ms/step | its device ms/step "
        "| d2lexp host waits/step | d2lexp launches/step | ceiling launches/step | CUDA-graph replays/step, d2lexp / ceiling |"
        "\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    for preset, r in results.items():
        ours, ceiling = r["profile"]["d2lexp"], r["profile"]["ceiling"]
        waits = sum(ours["host_waits_per_step"].values())
        log(
            f"| {preset} | {1e3 * r['batch_size'] / r['d2lexp']:.2f} | {_busy(ours)} | "
            f"{1e3 * r['batch_size'] / r['ceiling']:.2f} | {_busy(ceiling)} | {waits:.2f} | "
            f"{ours['device_launches_per_step']:.0f} | {ceiling['device_launches_per_step']:.0f} | "
            f"{ours['graph_replays_per_step']:.0f} / {ceiling['graph_replays_per_step']:.0f} |"
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="d2lexp's timed epochs, each beside the reference loops (after one warm-up epoch)",
    )
    parser.add_argument("--presets", nargs="+", default=PRESETS, choices=PRESETS)
    parser.add_argument("--skip-book-style", action="store_true", help="leave out the book's loop")
    epoch_length = parser.add_mutually_exclusive_group()
    epoch_length.add_argument(
        "--batches", type=int, help="batches per epoch (default: whole epochs); for quick CPU runs"
    )
    epoch_length.add_argument(
        "--epoch-seconds", type=float,
        help="as many batches per epoch (up to a whole one) as the ceiling runs in about this many seconds",
    )  # fmt: skip
    parser.add_argument(
        "--profile-steps",
        type=int,
        default=0,
        help="also profile this many steady-state steps of d2lexp and the ceiling (where the time goes)",
    )
    parser.add_argument(
        "--odd-batch",
        action="store_true",
        help="also time a new batch shape's first training step, autotuned by cuDNN and on its heuristics",
    )
    parser.add_argument(
        "--lightning-floor",
        action="store_true",
        help="also time the ceiling's step in a barebones Lightning Trainer (Lightning's own share of d2lexp's gap)",
    )


def run(args: Any) -> dict[str, Any]:
    from d2lexp.train import train

    device, name = benchmark_device()
    log(f"\nThe CNN presets on {name} (torch {torch.__version__})")
    results: dict[str, Any] = {}
    for preset in args.presets:
        overrides = [f"experiment=d2l/{preset}", f"paths.data_dir={args.data_dir}", *device_overrides(device),
                     "test=false", "trainer.limit_val_batches=0", *args.override]  # fmt: skip
        cfg = d2lexp_config(overrides)
        whole_epoch = 60_000 // cfg.data.batch_size
        limit = args.batches  # None: whole epochs
        if args.epoch_seconds:
            limit = batches_lasting(args.epoch_seconds, cfg, device, whole_epoch)
        if limit:
            overrides.append(f"trainer.limit_train_batches={limit}")
            cfg = d2lexp_config(overrides)
        batches = limit or whole_epoch
        alternate = Alternate(functools.partial(ceiling_step, cfg, device), cfg.data.batch_size, device, batches)
        torch._dynamo.utils.counters.clear()
        with tempfile.TemporaryDirectory() as tmp:
            epochs = f"trainer.max_epochs={1 + args.rounds}"
            record = train(
                d2lexp_config([*overrides, epochs, f"paths.output_dir={tmp}"]), callbacks=[alternate.callback()]
            )
        compiled = compile_counts() if cfg.speed.compile else None
        minimal_step = alternate.step
        assert minimal_step is not None
        d2lexp, ceiling = statistics.median(alternate.rates), statistics.median(alternate.ceiling_rates)
        ratios = alternate.ratios()
        floor = lightning_floor(cfg, device, batches, args.rounds, minimal_step) if args.lightning_floor else None
        book = None if args.skip_book_style else book_style_rate(cfg, device, args.data_dir, limit)
        flops = counted_flops(cfg)
        results[preset] = {
            "resolution": cfg.data.resize or 28,
            "batch_size": cfg.data.batch_size,
            "batches_per_epoch": batches,  # of every timed epoch and ceiling block
            "precision": str(cfg.trainer.precision),
            "compile": cfg.speed.compile,
            "d2lexp": d2lexp,  # the median of its timed epochs
            "ceiling": ceiling,  # the median of its blocks
            "book_style": book,
            "d2lexp_vs_ceiling": statistics.median(ratios),  # of each epoch against the blocks around it
            "d2lexp_epochs": alternate.rates,
            "ceiling_blocks": alternate.ceiling_rates,
            "d2lexp_vs_book_style": d2lexp / book if book else None,
            "first_step_seconds": record.get("first_step_seconds"),  # compilation and autotuning, not in the rates
            "ceiling_setup_seconds": alternate.ceiling_setup_seconds,  # the same for the ceiling, and its 5 warm-up steps
            "compiled": compiled,  # d2lexp's and the ceiling's graphs together
            "peak_memory_gb": alternate.peak_memory_gb,  # d2lexp alone: its warm-up epoch
            "forward_flops_per_example": flops,
            "achieved_tflops": 3 * flops * d2lexp / 1e12,
        }
        if floor is not None:
            floor_vs_ceiling = statistics.median(floor.ratios())
            results[preset]["lightning_floor"] = {
                "rate": statistics.median(floor.rates),
                "epochs": floor.rates,
                "ceiling_blocks": floor.ceiling_rates,
                "vs_ceiling": floor_vs_ceiling,  # of each epoch against the blocks around it, as d2lexp's
                "d2lexp_vs_floor": results[preset]["d2lexp_vs_ceiling"] / floor_vs_ceiling,  # both against the ceiling
            }
        book_text = f"{book:,.0f}" if book else "not run"
        spread = " ".join(f"{r:.2f}" for r in ratios)
        compiled_text = (
            ""
            if compiled is None
            else (
                f"; compiled: {compiled['graphs']} graphs, {compiled['graph_breaks']} graph breaks, "
                f"{compiled['cudagraph_skips']} CUDA-graph skips; ceiling setup {alternate.ceiling_setup_seconds:.1f} s"
            )
        )
        log(f"  {preset} ({batches} batches an epoch): d2lexp {d2lexp:,.0f}, ceiling {ceiling:,.0f}, book-style {book_text} examples/s; "
            f"d2lexp/ceiling per epoch {spread}; first step {record.get('first_step_seconds') or 0:.1f} s{compiled_text}")  # fmt: skip
        if floor is not None:
            log(f"  {preset}: Lightning's floor {statistics.median(floor.rates):,.0f} examples/s, floor/ceiling per epoch "
                f"{' '.join(f'{r:.2f}' for r in floor.ratios())}")  # fmt: skip
        if args.profile_steps:
            warmup, steps = 10, args.profile_steps
            window = [*overrides, "trainer.max_epochs=1", f"trainer.limit_train_batches={warmup + steps + 1}"]
            # The ceiling first: a compiled d2lexp run starts dynamo afresh, which would make the
            # ceiling's compiled step compile again inside its profile.
            ceiling_profile = profile_loop(minimal_step, device, steps)
            with tempfile.TemporaryDirectory() as tmp:
                d2lexp_profile = profile_d2lexp(
                    d2lexp_config([*window, f"paths.output_dir={tmp}"]), device, warmup, steps
                )
            results[preset]["profile"] = {"d2lexp": d2lexp_profile, "ceiling": ceiling_profile}
        if args.odd_batch:
            results[preset]["odd_batch"] = odd = odd_batch_seconds(cfg, device)
            log(f"  {preset}: a new batch shape's first training step {odd['autotuned_first_step_seconds']:.3f} s autotuned, "
                f"{odd['heuristic_first_step_seconds']:.3f} s on heuristics; again: {odd['autotuned_again_step_seconds']:.4f} "
                f"and {odd['heuristic_again_step_seconds']:.4f} s")  # fmt: skip
    log(
        "\n| model | resolution | d2lexp ex/s | ceiling ex/s | book-style ex/s | d2lexp/ceiling | d2lexp/book-style "
        "| peak memory | TFLOP/s |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    for preset, r in results.items():
        memory = f"{r['peak_memory_gb']:.1f} GiB" if r["peak_memory_gb"] else "-"
        book, vs_book = (
            (f"{r['book_style']:,.0f}", f"{r['d2lexp_vs_book_style']:.2f}x") if r["book_style"] else ("-", "-")
        )
        log(
            f"| {preset} | {r['resolution']} | {r['d2lexp']:,.0f} | {r['ceiling']:,.0f} | {book} | "
            f"{r['d2lexp_vs_ceiling']:.2f}x | {vs_book} | {memory} | {r['achieved_tflops']:.2f} |"
        )
    if args.lightning_floor:
        log_floors(results)
    if args.profile_steps:
        log_profiles(results)
    return {"device": name, "presets": results}
