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
per step above the minimal loop, the median over epochs.
"""

from __future__ import annotations

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


def bare_lightning_rates(reference: Minimal) -> tuple[list[float], list[float]]:
    """Lightning's floor: the same step as a LightningModule in a barebones Trainer."""
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

    interleave = Interleave(reference, count=lambda batch: len(batch[1]))
    trainer = pl.Trainer(accelerator="cpu", max_epochs=EPOCHS, barebones=True, callbacks=[interleave.callback()])
    trainer.fit(BareTask(), train_dataloaders=Batches())
    return interleave.trainer_rates, interleave.reference_rates


def microseconds_over(rates: list[float], reference_rates: list[float]) -> tuple[float, float]:
    """Median over epochs of (framework, framework minus reference) microseconds per step."""
    steps = [1e6 / r for r in rates]
    extra = [1e6 / r - 1e6 / ref for r, ref in zip(rates, reference_rates)]
    return statistics.median(steps), statistics.median(extra)


def run(args: Any) -> dict[str, Any]:
    log("\nPer-step cost of the framework (softmax regression, batch 1, CPU, one thread)")
    torch.manual_seed(0)
    results: dict[str, Any] = {}
    with num_threads(1):
        lightning_rates, reference_rates = bare_lightning_rates(Minimal())
        results["bare_lightning"] = microseconds_over(lightning_rates, reference_rates)
        with tempfile.TemporaryDirectory() as tmp:
            overrides = ["experiment=d2l/softmax", f"paths.data_dir={args.data_dir}", "trainer.accelerator=cpu",
                         "test=false", "trainer.limit_val_batches=0", "data.batch_size=1", f"trainer.max_epochs={EPOCHS}",
                         f"trainer.limit_train_batches={STEPS}", f"paths.output_dir={tmp}", *args.override]  # fmt: skip
            d2lexp_rates, reference_rates, _ = interleave_with_d2lexp(overrides, Minimal(), count=lambda b: len(b[1]))
        results["d2lexp"] = microseconds_over(d2lexp_rates, reference_rates)
    log("\n| loop | µs per step | µs per step above the minimal loop |\n|---|---:|---:|")
    for name, (step, extra) in results.items():
        log(f"| {name.replace('_', ' ')} | {step:.0f} | {extra:.0f} |")
    return {name: {"us_per_step": step, "us_above_minimal": extra} for name, (step, extra) in results.items()}
