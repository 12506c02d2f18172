"""Training throughput measured by the wall clock, with one device sync per epoch, and how long
a run took to reach its first training step."""

from __future__ import annotations

import os
import time
from typing import Any

import lightning.pytorch as pl
import torch

from d2lexp.callbacks.base import RecordingCallback
from d2lexp.data.base import DataModule


def process_start_time() -> float | None:
    """When this process started (Unix time), from /proc where there is one (Linux)."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22: start, in ticks since boot
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")
        return time.time() - age
    except (OSError, ValueError, IndexError, AttributeError):
        return None


_process_has_run = False


def run_start_time() -> float:
    """Where a run's start-up begins: the first run of a process counts from the process's start
    (imports included), each later one (a sweep's next job in the same process) from now."""
    global _process_has_run
    first, _process_has_run = not _process_has_run, True
    started = process_start_time() if first else None
    return started if started is not None else time.time()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


class Throughput(RecordingCallback):
    """Logs `train/<unit>_per_second` for each epoch: items over training wall time.

    Validation inside an epoch is timed separately and left out. Items are counted from batch
    shapes (no device access), in the data's `item_unit`: `examples` = the batch's first
    dimension, `tokens` = every element of the input. The first epoch
    includes warm-up (cuDNN autotuning, `torch.compile`), so the run-level
    figure `items_per_second` excludes it whenever more than one epoch ran. On a GPU
    it also records the peak memory allocated during the run.
    """

    def __init__(self, run_start: float | None = None) -> None:
        self.run_start = time.time() if run_start is None else run_start  # see `run_start_time`
        self.unit = "examples"
        self.epoch_seconds: list[float] = []
        self.epoch_items: list[int] = []
        self.first_step_time: float | None = None
        self.first_step_seconds: float | None = None
        self._epoch_start = 0.0
        self._val_start = 0.0
        self._val_seconds = 0.0
        self.validation_seconds = 0.0  # of the whole fit
        self._items = 0
        self._device: torch.device | None = None
        self._world_size = 1  # every process trains its own share of each epoch

    def _count(self, batch: Any) -> int:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return int(x.numel()) if self.unit == "tokens" else int(x.shape[0])

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if isinstance(trainer.datamodule, DataModule):
            self.unit = trainer.datamodule.item_unit
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)
        self._device = pl_module.device
        self._world_size = trainer.world_size

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        synchronize(pl_module.device)
        self._epoch_start = time.perf_counter()
        self._val_seconds = 0.0
        self._items = 0

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.first_step_time is None:
            self.first_step_time = time.time()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._items += self._count(batch)
        if self.first_step_seconds is None:
            synchronize(pl_module.device)  # once per run: the first step's cost (compilation, autotuning)
            self.first_step_seconds = time.time() - (self.first_step_time or time.time())

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == "fit":  # validation inside fit (trainer.training is False by now)
            synchronize(pl_module.device)
            self._val_start = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == "fit":
            synchronize(pl_module.device)
            seconds = time.perf_counter() - self._val_start
            self._val_seconds += seconds
            self.validation_seconds += seconds

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        synchronize(pl_module.device)
        seconds = time.perf_counter() - self._epoch_start - self._val_seconds
        self.epoch_seconds.append(seconds)
        self.epoch_items.append(self._items)
        if seconds > 0:
            pl_module.log(f"train/{self.unit}_per_second", self._items * trainer.world_size / seconds)

    @property
    def startup_seconds(self) -> float | None:
        """Seconds from the run's start (the process's, for its first run) to the first training step."""
        return None if self.first_step_time is None else self.first_step_time - self.run_start

    @property
    def items_per_second(self) -> float | None:
        """Steady-state rate over the run: the first epoch (warm-up) is left out when there are more."""
        seconds, items = self.epoch_seconds, self.epoch_items
        if len(seconds) > 1:
            seconds, items = seconds[1:], items[1:]
        return sum(items) / sum(seconds) if seconds and sum(seconds) > 0 else None

    def record(self) -> dict[str, float | None]:
        rate = self.items_per_second
        record = {
            f"train_{self.unit}_per_second": rate * self._world_size if rate else rate,
            "train_seconds": sum(self.epoch_seconds),
            "validation_seconds": self.validation_seconds,  # the sanity check's included
            "first_step_seconds": self.first_step_seconds,
            "startup_seconds": self.startup_seconds,
        }
        if self._device is not None and self._device.type == "cuda":
            record["peak_memory_gb"] = torch.cuda.max_memory_allocated(self._device) / 2**30
        return record
