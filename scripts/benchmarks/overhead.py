"""What the framework costs per training step, measured where the host bounds the step.

On a GPU, small nets (LeNet, BN-LeNet, NiN) and nets of many small layers (GoogLeNet,
DenseNet) are bound by the host: the Python that runs each step and launches its kernels.
Whatever the framework adds per step then shows in full. This suite measures that addition
on any machine (the CPU too): softmax regression at batch 1, whose own work is small, as

1. minimal: zero_grad, forward, cross-entropy, backward, SGD step, on a fixed tensor;
2. bare Lightning: a LightningModule holding only that net and loss, Trainer(barebones=True)
   (no callbacks, logger, progress bar or metrics): Lightning's own floor;
3. d2lexp: the real pipeline, `experiment=d2l/softmax` (callbacks, metrics, loggers).

Lightning and d2lexp each run step about step with the minimal loop (common.Interleave), so
both are measured against a minimal loop on the same machine state. Reported: microseconds
per step above the minimal loop (the median over epochs), and per step the Python function
calls (cProfile) and torch operators (torch's profiler; on a GPU most launch a kernel):
counts the machine's noise does not move.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import tempfile
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks.common import Interleave, d2lexp_config, interleave_with_d2lexp, log, num_threads

STEPS, EPOCHS = 300, 4  # per epoch; the first epoch is warm-up


def softmax_net() -> torch.nn.Module:
    from d2lexp.models.softmax import SoftmaxRegression

    return SoftmaxRegression()


class Minimal:
    """The reference: one plain-PyTorch training step of softmax regression at batch 1."""

    def __init__(self) -> None:
        self.net = softmax_net()
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=0.1)
        self.x, self.y = torch.rand(1, 1, 28, 28), torch.randint(0, 10, (1,))

    def batches(self) -> Iterator[int]:
        return iter(range(STEPS))

    def step(self, _: Any) -> int:
        loss = F.cross_entropy(self.net(self.x), self.y)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return 1


def fit_bare_lightning(callback: Any, epochs: int) -> None:
    """Lightning's floor: the minimal loop's step as a LightningModule in a barebones Trainer."""
    import lightning.pytorch as pl

    class BareTask(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = softmax_net()

        def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
            x, y = batch
            return F.cross_entropy(self.net(x), y)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.net.parameters(), lr=0.1)

    class Batches:  # one example per batch, sliced from tensors (no DataLoader)
        x, y = torch.rand(STEPS, 1, 28, 28), torch.randint(0, 10, (STEPS,))

        def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            return ((self.x[i : i + 1], self.y[i : i + 1]) for i in range(STEPS))

        def __len__(self) -> int:
            return STEPS

    trainer = pl.Trainer(accelerator="cpu", max_epochs=epochs, barebones=True, callbacks=[callback])
    trainer.fit(BareTask(), train_dataloaders=Batches())


class StepCounter:
    """Per training step, over steps WARMUP .. WARMUP + COUNTED: Python function calls (cProfile)
    and torch operators dispatched from Python (torch's profiler; on a GPU most launch a
    kernel, and a host-bound step pays for every dispatch and launch). Counts, not times:
    figures the machine's noise does not move."""

    WARMUP, COUNTED = 20, 100

    def __init__(self) -> None:
        self.python_calls: float | None = None
        self.torch_ops: float | None = None

    def start(self) -> None:
        from torch.profiler import ProfilerActivity, profile

        self._ops = profile(activities=[ProfilerActivity.CPU])
        self._ops.__enter__()
        self._calls = cProfile.Profile()
        self._calls.enable()

    def stop(self) -> None:
        self._calls.disable()
        self._ops.__exit__(None, None, None)
        self.python_calls = pstats.Stats(self._calls).total_calls / self.COUNTED
        top_level = [e for e in self._ops.events() if e.name.startswith("aten::") and not _inside_aten_op(e)]
        self.torch_ops = len(top_level) / self.COUNTED

    def callback(self) -> Any:
        import lightning.pytorch as pl

        outer = self

        class Count(pl.Callback):
            def on_train_batch_start(
                self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
            ) -> None:
                if batch_idx == outer.WARMUP:
                    outer.start()
                elif batch_idx == outer.WARMUP + outer.COUNTED:
                    outer.stop()

        return Count()

    def count_minimal(self) -> None:
        minimal = Minimal()
        for _ in range(self.WARMUP):
            minimal.step(None)
        self.start()
        for _ in range(self.COUNTED):
            minimal.step(None)
        self.stop()

    def counts(self) -> dict[str, float | None]:
        return {"python_calls_per_step": self.python_calls, "torch_ops_per_step": self.torch_ops}


def _inside_aten_op(event: Any) -> bool:
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith("aten::"):
            return True
        parent = parent.cpu_parent
    return False


def microseconds_over(rates: list[float], reference_rates: list[float]) -> dict[str, float]:
    """Medians over epochs of the framework's microseconds per step, and of those above the reference's."""
    steps = [1e6 / r for r in rates]
    extra = [1e6 / r - 1e6 / ref for r, ref in zip(rates, reference_rates)]
    return {"us_per_step": statistics.median(steps), "us_above_minimal": statistics.median(extra)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options of its own: the data folder and overrides every suite takes."""


def run(args: Any) -> dict[str, Any]:
    from d2lexp.train import train

    log("\nPer-step cost of the framework (softmax regression, batch 1, CPU, one thread)")
    torch.manual_seed(0)
    results: dict[str, dict[str, float | None]] = {}  # None: a call count the window did not reach

    def d2lexp_overrides(tmp: str, epochs: int) -> list[str]:
        return ["experiment=d2l/softmax", f"paths.data_dir={args.data_dir}", "trainer.accelerator=cpu", "test=false",
                "trainer.limit_val_batches=0", "data.batch_size=1", f"trainer.max_epochs={epochs}",
                f"trainer.limit_train_batches={STEPS}", f"paths.output_dir={tmp}", *args.override]  # fmt: skip

    with num_threads(1):
        interleave = Interleave(Minimal(), count=lambda batch: len(batch[1]))
        fit_bare_lightning(interleave.callback(), EPOCHS)
        results["bare_lightning"] = microseconds_over(interleave.trainer_rates, interleave.reference_rates)
        with tempfile.TemporaryDirectory() as tmp:
            d2lexp_rates, reference_rates, _ = interleave_with_d2lexp(
                d2lexp_overrides(tmp, EPOCHS), Minimal(), count=lambda b: len(b[1])
            )
        results["d2lexp"] = microseconds_over(d2lexp_rates, reference_rates)

        counter = StepCounter()
        counter.count_minimal()
        results["minimal"] = counter.counts()
        counter = StepCounter()
        fit_bare_lightning(counter.callback(), 1)
        results["bare_lightning"] |= counter.counts()
        counter = StepCounter()
        with tempfile.TemporaryDirectory() as tmp:
            train(d2lexp_config(d2lexp_overrides(tmp, 1)), callbacks=[counter.callback()])
        results["d2lexp"] |= counter.counts()

    log(
        "\n| loop | µs per step | µs per step above the minimal loop | Python calls per step | torch ops per step |"
        "\n|---|---:|---:|---:|---:|"
    )
    for name in ("minimal", "bare_lightning", "d2lexp"):
        r = results[name]
        step, extra, calls, ops = (
            f"{r[k]:.0f}" if r.get(k) is not None else "-"
            for k in ("us_per_step", "us_above_minimal", "python_calls_per_step", "torch_ops_per_step")
        )
        log(f"| {name.replace('_', ' ')} | {step} | {extra} | {calls} | {ops} |")
    return results
