"""What every suite shares: finding the data, composing d2lexp's real config, and running
d2lexp step about step with a reference loop in one process."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import torch

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def log(line: str = "") -> None:
    print(line, flush=True)


def benchmark_device() -> tuple[torch.device, str]:
    """The device a suite measures (a GPU where there is one) and its name for the report."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return device, torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"


def device_overrides(device: torch.device) -> list[str]:
    """d2lexp's trainer settings for that device."""
    return ["trainer=gpu"] if device.type == "cuda" else ["trainer.accelerator=cpu"]


def default_data_dir() -> str:
    for candidate in (os.environ.get("D2LEXP_DATA"), REPO / "data"):
        if candidate and (Path(candidate) / "FashionMNIST" / "raw").is_dir():
            return str(candidate)
    return str(REPO / "data")


def book_accuracy(y_hat: torch.Tensor, y: torch.Tensor) -> float:
    """The book's `accuracy`: the number of correct predictions, read back to the host."""
    return float((y_hat.argmax(axis=1).type(y.dtype) == y).type(y.dtype).sum())


def book_train_epoch(
    net: torch.nn.Module,
    loader: Iterator[tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    device: torch.device | None = None,
    limit: int | None = None,
) -> list[float]:
    """One epoch of the book's train_epoch_ch3/train_ch6 loop, host sync per batch included:
    returns its Accumulator(3), [loss sum, correct predictions, examples]."""
    loss = torch.nn.CrossEntropyLoss()
    metric = [0.0, 0.0, 0.0]
    net.train()
    for i, (X, y) in enumerate(loader):
        if limit is not None and i >= limit:
            break
        if device is not None:
            X, y = X.to(device), y.to(device)
        optimizer.zero_grad()
        y_hat = net(X)
        l = loss(y_hat, y)
        l.backward()
        optimizer.step()
        with torch.no_grad():
            metric[0] += float(l * X.shape[0])
            metric[1] += book_accuracy(y_hat, y)
            metric[2] += X.shape[0]
    return metric


def d2lexp_config(overrides: list[str]):  # -> DictConfig
    from hydra import compose, initialize_config_dir

    from d2lexp.config import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


@contextlib.contextmanager
def num_threads(n: int | None) -> Iterator[None]:
    previous = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class Reference(Protocol):
    """A loop to compare d2lexp with: one epoch of batches, and one training step on a batch."""

    def batches(self) -> Iterator[Any]: ...

    def step(self, batch: Any) -> int:  # items (examples or tokens) trained on
        ...


class Interleave:
    """A Lightning callback (built by `callback()`) that runs one reference step before each
    training step of the trainer it is given to, and times both.

    The machine's speed drifts (other tenants, clocks) by more than the differences being
    measured, so the two run step about step in one process: the time between two
    consecutive reference steps is exactly one whole iteration of the trainer (data,
    transfer, step, hooks, logging, progress bar); summed over an epoch, both see the same
    machine. The first epoch is warm-up. `trainer_rates` and `reference_rates` hold the
    per-epoch rates in items per second.
    """

    def __init__(self, reference: Reference, count: Callable[[Any], int]) -> None:
        self.reference, self.count = reference, count
        self.trainer_rates: list[float] = []
        self.reference_rates: list[float] = []

    def callback(self) -> Any:
        import lightning.pytorch as pl

        outer = self

        class InterleaveCallback(pl.Callback):  # list it first: its hooks run before the others
            def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
                self.batches = outer.reference.batches()
                self.mark: float | None = None
                self.timed = [0, 0.0]  # the trainer's items and seconds
                self.reference = [0, 0.0]
                self.pending = 0

            def on_train_batch_start(
                self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
            ) -> None:
                now = time.perf_counter()
                if self.mark is not None:  # one whole iteration of the trainer since the last reference step
                    self.timed[0] += self.pending
                    self.timed[1] += now - self.mark
                ref_batch = next(self.batches, None)
                if ref_batch is None:  # the reference's epoch ended first: start its next one
                    self.batches = outer.reference.batches()
                    ref_batch = next(self.batches)
                self.reference[0] += outer.reference.step(ref_batch)
                self.mark = time.perf_counter()
                self.reference[1] += self.mark - now
                self.pending = outer.count(batch)

            def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
                if trainer.current_epoch >= 1:
                    outer.trainer_rates.append(self.timed[0] / self.timed[1])
                    outer.reference_rates.append(self.reference[0] / self.reference[1])

        return InterleaveCallback()


def interleave_with_d2lexp(
    overrides: list[str], reference: Reference, count: Callable[[Any], int], threads: int | None = None
) -> tuple[list[float], list[float], dict[str, Any]]:
    """Train d2lexp (its real pipeline, `overrides` on the real config, which set the epochs;
    the first is warm-up) with one reference step before each of its steps (see `Interleave`).
    Returns the per-epoch rates (d2lexp, reference) and d2lexp's record."""
    from d2lexp.train import train

    interleave = Interleave(reference, count)
    with num_threads(threads):
        record = train(d2lexp_config(overrides), callbacks=[interleave.callback()])
    return interleave.trainer_rates, interleave.reference_rates, record


def time_command(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return seconds, result.stdout + result.stderr
