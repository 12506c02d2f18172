"""What every d2lexp task shares: the injected optimizer and scheduler, a step-level loss curve
that costs no per-step sync, stopping a run whose loss diverges, and exact mid-epoch resumption
of the epoch's running metrics."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torchmetrics import Metric

from d2lexp.data.base import DataModule
from d2lexp.errors import ConfigError
from d2lexp.speed.hooks import LeanHookBookkeeping

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]

# An epoch's mean training loss above this many times the untrained net's first-batch loss: diverged.
DIVERGED_GROWTH = 10


@dataclass(frozen=True)
class Scheduler:
    """A learning-rate scheduler as Lightning takes it: built from the optimizer, stepped every
    `interval` ("epoch" or "step"), and for ReduceLROnPlateau watching `monitor`.

    A schedule over the whole run (one-cycle) needs the run's length: `total_steps_arg` names the
    factory's keyword that receives the number of optimizer steps the trainer will take."""

    factory: Callable[..., Any]
    interval: str = "epoch"
    monitor: str = "val/loss"
    total_steps_arg: str | None = None


class Task(LeanHookBookkeeping, pl.LightningModule):
    """Base LightningModule: trains `self.net` with an optimizer built from a partial.

    Subclasses define the loss and metrics; they never name an architecture. They call the net
    through `apply_net`, which faster stand-ins may replace (d2lexp.speed: compiled, channels-last).
    """

    def __init__(self, net: nn.Module, optimizer: OptimizerFactory, scheduler: Scheduler | None = None) -> None:
        super().__init__()
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler = scheduler
        self.diverged: str | None = None  # why training stopped, if the loss exploded or stopped being finite
        self._first_loss: torch.Tensor | None = None  # the untrained net's loss, on its first training batch
        self._train_metrics: tuple[Metric, ...] = ()
        self._resumed_epoch: int | None = None

    def apply_net(self, *inputs: Any) -> Any:
        """The net on `inputs`; tasks' `forward` calls this. d2lexp.speed may put a faster
        stand-in (compiled, channels-last) in its place, as an attribute of the instance."""
        return self.net(*inputs)

    @property
    def data(self) -> DataModule | None:
        """The run's data module, with what it declares (d2lexp.data.base.DataModule), if any."""
        trainer = self._trainer
        datamodule = trainer.datamodule if trainer is not None else None
        return datamodule if isinstance(datamodule, DataModule) else None

    def track_train_metrics(self, *metrics: Metric) -> None:
        """Metrics that accumulate over a training epoch. They are saved in checkpoints, so a
        run resumed mid-epoch goes on with the sums it had, and reset when an epoch starts
        (unless the run resumes inside that very epoch)."""
        for metric in metrics:
            metric.persistent(True)
        self._train_metrics = metrics

    def resuming_mid_epoch(self) -> bool:
        """True in the epoch a run resumed inside of (from a checkpoint written mid-epoch)."""
        return self._resumed_epoch == self.current_epoch

    def on_train_start(self) -> None:
        """A schedule over the whole run (one-cycle), restored from a checkpoint, was made for that
        run's length: a resumed run that would step past it ends here, in one paragraph, not in the
        scheduler's error some epochs later."""
        arg = self.scheduler.total_steps_arg if self.scheduler is not None else None
        restored = getattr(self.lr_schedulers(), arg, None) if arg else None
        needed = self.trainer.estimated_stepping_batches
        if isinstance(restored, int) and math.isfinite(needed) and restored < needed:
            raise ConfigError(
                f"The run resumes a schedule made for {restored} steps, but this run would take {int(needed)}. Resume "
                "it with the trainer.max_epochs (and data settings) it was started with, or start a new run."
            )

    def on_train_epoch_start(self) -> None:
        if not self.resuming_mid_epoch():
            for metric in self._train_metrics:
                metric.reset()

    def on_train_epoch_end(self) -> None:
        self._resumed_epoch = None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        first = None if self._first_loss is None else float(self._first_loss)
        checkpoint["d2lexp_task"] = {"epoch": self.current_epoch, "first_loss": first}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("d2lexp_task") or {}  # checked by d2lexp.resume
        self._resumed_epoch = saved.get("epoch")
        if isinstance(saved.get("first_loss"), float):
            self._first_loss = torch.tensor(saved["first_loss"])

    def stop_diverged(self, why: str) -> None:
        """Stop training, clearly: the run ends with status "diverged" and this reason."""
        if self.diverged is None:
            self.diverged = (
                f"{why} at step {self.global_step} (epoch {self.current_epoch}); training stopped. "
                "Lower optimizer.lr, clip gradients (trainer.gradient_clip_val=1) or change the init."
            )
            self.trainer.should_stop = True

    def check_finite(self, value: float, what: str) -> bool:
        """Stop training when a loss stops being a finite number."""
        if math.isfinite(value):
            return True
        self.stop_diverged(f"the {what} became {value}")
        return False

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.net.parameters())
        if self.scheduler is None:
            return optimizer
        length = {}
        if self.scheduler.total_steps_arg is not None:
            steps = self.trainer.estimated_stepping_batches
            if not math.isfinite(steps):
                raise ConfigError(
                    f"The scheduler needs the run's length ({self.scheduler.total_steps_arg}), but the run has no end: "
                    "set trainer.max_epochs or trainer.max_steps."
                )
            length[self.scheduler.total_steps_arg] = int(steps)
        scheduler = {
            "scheduler": self.scheduler.factory(optimizer, **length),
            "interval": self.scheduler.interval,
            "monitor": self.scheduler.monitor,
        }
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def log_epoch_loss(self, running_loss: Metric) -> torch.Tensor:
        """Log the epoch's mean training loss as `train/loss` (one sync per epoch) and stop
        training if it diverged: not a finite number, or more than `DIVERGED_GROWTH` times the
        untrained net's loss on its first batch. (Training lowers a loss; one that grew tenfold
        over a whole epoch is exploding, finite or not: LeNet at lr 1e6 reaches 1.6e7 against
        2.3 at the start. The book's presets stay below their first batch's loss.)"""
        loss = running_loss.compute()
        self.log("train/loss", loss)
        value = float(loss)
        if self.check_finite(value, "mean training loss of the epoch") and self._first_loss is not None:
            first = float(self._first_loss)
            if first > 0 and value > DIVERGED_GROWTH * first:
                self.stop_diverged(
                    f"the mean training loss of the epoch, {value:.3g}, grew to more than {DIVERGED_GROWTH} times "
                    f"the untrained net's first-batch loss ({first:.3g}): the training is diverging"
                )
        return loss

    def log_step_loss(self, loss: torch.Tensor, name: str = "train/loss_step") -> None:
        """Write the batch loss to the loggers every `log_every_n_steps` steps.

        Calling `self.log` on every step costs Lightning bookkeeping per
        call; this writes directly, and reads the value back from the device only on the steps
        that are written.
        """
        if self._first_loss is None:  # kept on the device: read once, at the epoch's end
            self._first_loss = loss.detach().float().clone()
        every = self.trainer.log_every_n_steps
        if not every or self.global_step % every:
            return
        value = loss.detach().float().item()
        if self.check_finite(value, "training loss"):
            for logger in self.loggers:
                logger.log_metrics({name: value}, step=self.global_step)
