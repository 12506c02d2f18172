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
per step above the minimal loop (the median over epochs), and Python function calls per step,
counted by cProfile: a figure the machine's noise does not move.
"""

from __future__ import annotations

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


class CallCounter:
    """Python function calls per training step, counted by cProfile over steps WARMUP ..
    WARMUP + COUNTED of a trainer's first epoch: a figure the machine's noise does not move."""

    WARMUP, COUNTED = 20, 100

    def __init__(self) -> None:
        self.per_step: float | None = None

    def callback(self) -> Any:
        import lightning.pytorch as pl

        outer, profiler = self, cProfile.Profile()

        class Count(pl.Callback):
            def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
                if batch_idx == outer.WARMUP:
                    profiler.enable()
                elif batch_idx == outer.WARMUP + outer.COUNTED:
                    profiler.disable()
                    outer.per_step = pstats.Stats(profiler).total_calls / outer.COUNTED

        return Count()


def minimal_calls_per_step() -> float:
    minimal, profiler = Minimal(), cProfile.Profile()
    for _ in range(CallCounter.WARMUP):
        minimal.step(None)
    profiler.enable()
    for _ in range(CallCounter.COUNTED):
        minimal.step(None)
    profiler.disable()
    return pstats.Stats(profiler).total_calls / CallCounter.COUNTED


def microseconds_over(rates: list[float], reference_rates: list[float]) -> dict[str, float]:
    """Medians over epochs of the framework's microseconds per step, and of those above the reference's."""
    steps = [1e6 / r for r in rates]
    extra = [1e6 / r - 1e6 / ref for r, ref in zip(rates, reference_rates)]
    return {"us_per_step": statistics.median(steps), "us_above_minimal": statistics.median(extra)}


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
            d2lexp_rates, reference_rates, _ = interleave_with_d2lexp(d2lexp_overrides(tmp, EPOCHS), Minimal(), count=lambda b: len(b[1]))
        results["d2lexp"] = microseconds_over(d2lexp_rates, reference_rates)

        results["minimal"] = {"python_calls_per_step": minimal_calls_per_step()}
        counter = CallCounter()
        fit_bare_lightning(counter.callback(), 1)
        results["bare_lightning"]["python_calls_per_step"] = counter.per_step
        counter = CallCounter()
        with tempfile.TemporaryDirectory() as tmp:
            train(d2lexp_config(d2lexp_overrides(tmp, 1)), callbacks=[counter.callback()])
        results["d2lexp"]["python_calls_per_step"] = counter.per_step

    log("\n| loop | µs per step | µs per step above the minimal loop | Python calls per step |\n|---|---:|---:|---:|")
    for name in ("minimal", "bare_lightning", "d2lexp"):
        r = results[name]
        step, extra = (f"{r[k]:.0f}" if k in r else "-" for k in ("us_per_step", "us_above_minimal"))
        log(f"| {name.replace('_', ' ')} | {step} | {extra} | {r['python_calls_per_step']:.0f} |")
    return results
