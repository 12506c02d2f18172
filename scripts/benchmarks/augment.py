"""What augmentation costs: each preset's training rate with `augment=<preset>` on, against the
same run with it off, in one process.

One d2lexp run per preset takes turns epoch by epoch: after a warm-up epoch (augmented, so its
first-use costs fall there), plain and augmented epochs alternate, plain first and last, and
each augmented epoch's rate is set against the mean of the plain epochs around it. Machines
drift by more than the gap measured, so nothing is compared across runs or processes. The
rates are d2lexp's own (`Throughput`: training examples per second of wall time over whole
epochs, data included, the device synchronised at both ends); validation is off.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from typing import Any

import lightning.pytorch as pl
import torch

from benchmarks.common import benchmark_device, d2lexp_config, device_overrides, log
from d2lexp.callbacks.throughput import Throughput

PRESETS = ["d2l/lenet", "d2l/lenet_bn", "d2l/alexnet", "d2l/resnet18", "fast/vgg_bn"]  # experiment=...


class AlternateAugment(pl.Callback):
    """Turns the data's augmentation off on odd timed epochs (1, 3, ...) and on for the others."""

    def __init__(self) -> None:
        self.augment: Any = None
        self.rates: list[float] = []  # every epoch's, the warm-up's first

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        data = trainer.datamodule
        if self.augment is None:
            self.augment = data.augment
        data.augment = None if trainer.current_epoch % 2 else self.augment

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        timer = next(c for c in trainer.callbacks if isinstance(c, Throughput))
        self.rates = [items / seconds for items, seconds in zip(timer.epoch_items, timer.epoch_seconds, strict=True)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=3, help="augmented epochs, each between two plain ones")
    parser.add_argument("--presets", nargs="+", default=PRESETS, choices=PRESETS)
    parser.add_argument("--augment", default="light", help="which of conf/augment/ to measure")
    parser.add_argument("--batches", type=int, help="batches per epoch (default: whole epochs); for quick CPU runs")


def run(args: Any) -> dict[str, Any]:
    from d2lexp.train import train

    device, name = benchmark_device()
    log(f"\nAugmentation's cost on {name} (augment={args.augment}, torch {torch.__version__})")
    results: dict[str, Any] = {}
    for preset in args.presets:
        overrides = [
            f"experiment={preset}", f"augment={args.augment}", f"paths.data_dir={args.data_dir}",
            *device_overrides(device), "test=false",
            "trainer.limit_val_batches=0", f"trainer.max_epochs={2 + 2 * args.rounds}", *args.override,
        ]  # fmt: skip
        if args.batches:
            overrides.append(f"trainer.limit_train_batches={args.batches}")
        alternate = AlternateAugment()
        with tempfile.TemporaryDirectory() as tmp:
            cfg = d2lexp_config([*overrides, f"paths.output_dir={tmp}"])
            train(cfg, callbacks=[alternate])
        if alternate.augment is None:
            raise SystemExit(f"augment={args.augment} changes nothing: choose a preset that does")
        rates = alternate.rates[1:]
        plain, augmented = rates[0::2], rates[1::2]
        ratios = [on / ((before + after) / 2) for on, before, after in zip(augmented, plain, plain[1:])]
        results[preset] = {
            "augment": args.augment,
            "batch_size": cfg.data.batch_size,
            "resolution": cfg.data.resize or 28,
            "plain_epochs": plain,  # training examples per second
            "augmented_epochs": augmented,
            "augmented_vs_plain": statistics.median(ratios),  # each augmented epoch against the plain ones around it
        }
        log(f"  {preset}: plain {statistics.median(plain):,.0f} ex/s, augmented {statistics.median(augmented):,.0f} "
            f"ex/s: {statistics.median(ratios):.3f}x ({', '.join(f'{r:.3f}' for r in ratios)})")  # fmt: skip
    log(
        "\n| model | resolution | batch | plain ex/s | augmented ex/s | augmented / plain |\n|---|---:|---:|---:|---:|---:|"
    )
    for preset, r in results.items():
        log(f"| {preset} | {r['resolution']} | {r['batch_size']} | {statistics.median(r['plain_epochs']):,.0f} | "
            f"{statistics.median(r['augmented_epochs']):,.0f} | {r['augmented_vs_plain']:.3f}x |")  # fmt: skip
    return results
