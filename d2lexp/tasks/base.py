"""What every d2lexp task shares: the injected optimizer and scheduler, optional
`torch.compile`, cuDNN autotuning kept to the shapes a run is made of, a step-level loss
curve that costs no per-step sync, stopping on a non-finite loss, and exact mid-epoch
resumption of the epoch's running metrics."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torchmetrics import Metric

from d2lexp.errors import ConfigError
from d2lexp.tasks.metrics import upgrade_metric_states

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]
# An epoch's mean training loss above this many times the untrained net's first-batch loss: diverged.
DIVERGED_GROWTH = 10
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CUDA_GRAPHS_ONLY = "cudagraphs"


def compile_options(setting: bool | str | None) -> dict[str, Any] | None:
    """`torch.compile`'s keyword arguments for a task's `compile` setting, None for no compiling.

    false/null: eager; true: torch.compile's defaults; one of its modes by name; or `cudagraphs`.
    `reduce-overhead` generates fused kernels (Inductor) and replays the net's forward and
    backward as CUDA graphs, which takes away the per-kernel launch cost that bounds small
    nets on a GPU. `cudagraphs` replays the net's own kernels as CUDA graphs, with no code
    generation: it takes away the launch cost alone, and compiles in seconds where Inductor
    takes a minute or more for a net of many layers. Shapes are static (`dynamic=False`): the
    compiled net sees one input shape (see `Task.apply_net`).
    """
    if setting is None or setting is False:
        return None
    if setting is True:
        return {"dynamic": False}
    if setting == CUDA_GRAPHS_ONLY:
        return {"backend": CUDA_GRAPHS_ONLY, "dynamic": False}
    if isinstance(setting, str) and setting in COMPILE_MODES:
        return {"mode": setting, "dynamic": False}
    raise ConfigError(
        f"task.compile={setting!r} is not a compile setting. Use false (no torch.compile), true "
        f"(torch.compile's defaults), one of its modes ({', '.join(COMPILE_MODES)}) or "
        f"{CUDA_GRAPHS_ONLY} (CUDA graphs of the net's own kernels, no code generation); for example "
        "task.compile=reduce-overhead for fused kernels and CUDA graphs on a GPU."
    )


def batch_input_shape(batch: Any) -> tuple[int, ...] | None:
    """The shape of a batch's input tensor (its first element), None if it has none."""
    x = batch[0] if isinstance(batch, (tuple, list)) and batch else batch
    return tuple(x.shape) if isinstance(x, torch.Tensor) else None


class AutotuneMainShapes:
    """cuDNN autotuning (`trainer.benchmark`) for the input shapes a run is made of, and cuDNN's
    heuristic choice of algorithm for everything else.

    Autotuning times every algorithm of every conv layer, forward and backward, the first time
    it sees an input shape: seconds a shape (GoogLeNet's first training step took 10.5 s on an
    H200, mostly this). A loader's first batch has the shape of all its batches but the last, so
    the shape of each loop's first batch is tuned. Autotuning is paused (from a batch's start hook
    to its end hook: forward, backward and optimizer step) for the rest: an epoch's smaller last
    batch (60,000 mod 128 = 96 training images, 10,000 mod 128 = 16 test images), which runs once
    an epoch, and whatever runs the net between a stage's setup and its first batch (the model
    summary's one-example forward), which runs once.
    """

    def __init__(self) -> None:
        self.tuned: set[tuple[int, ...]] = set()
        self.paused = False

    def pause(self) -> None:
        if torch.backends.cudnn.benchmark:
            torch.backends.cudnn.benchmark = False
            self.paused = True

    def resume(self) -> None:
        if self.paused:
            torch.backends.cudnn.benchmark = True
            self.paused = False

    def before_batch(self, batch: Any, batch_idx: int) -> None:
        self.resume()
        if not torch.backends.cudnn.benchmark:  # autotuning off: nothing to keep to
            return
        shape = batch_input_shape(batch)
        if shape is None:
            return
        if batch_idx == 0 or not self.tuned:  # a loop's first batch (or a resumed run's)
            self.tuned.add(shape)
        elif shape not in self.tuned:
            self.pause()


class Task(pl.LightningModule):
    """Base LightningModule: trains `self.net` with an optimizer built from a partial.

    Subclasses define the loss and metrics; they never name an architecture.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        scheduler_interval: str = "epoch",
        scheduler_monitor: str = "val/loss",
        compile: bool | str = False,
    ) -> None:
        """`compile`: see `compile_options`."""
        super().__init__()
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scheduler_interval = scheduler_interval
        self.scheduler_monitor = scheduler_monitor
        self.compile_options = compile_options(compile)
        self._compiled_net: nn.Module | None = None  # set when fitting starts
        self._compiled_shape: tuple[int, ...] | None = None  # of the inputs it runs on
        self.diverged: str | None = None  # why training stopped, if the loss exploded or stopped being finite
        self._first_loss: torch.Tensor | None = None  # the untrained net's loss, on its first training batch
        self._train_metrics: tuple[Metric, ...] = ()
        self._resumed_epoch: int | None = None
        self._autotune = AutotuneMainShapes()

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

    def on_train_epoch_start(self) -> None:
        if not self.resuming_mid_epoch():
            for metric in self._train_metrics:
                metric.reset()

    def on_train_epoch_end(self) -> None:
        self._resumed_epoch = None

    # Each loop's batch hooks keep cuDNN autotuning to the run's main shapes (`AutotuneMainShapes`).
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._autotune.before_batch(batch, batch_idx)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._autotune.resume()

    def on_validation_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._autotune.before_batch(batch, batch_idx)

    def on_validation_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._autotune.resume()

    def on_test_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._autotune.before_batch(batch, batch_idx)

    def on_test_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._autotune.resume()

    def on_predict_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._autotune.before_batch(batch, batch_idx)

    def on_predict_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._autotune.resume()

    def setup(self, stage: str) -> None:
        self._autotune.pause()  # until the first batch

    def teardown(self, stage: str) -> None:
        # As the stage found it. (Lightning skips this hook when a stage fails; a Trainer built
        # with `benchmark` sets the flag again.)
        self._autotune.resume()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        first = None if self._first_loss is None else float(self._first_loss)
        checkpoint["d2lexp_task"] = {"epoch": self.current_epoch, "first_loss": first}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Lightning loads the state dict after this hook: older checkpoints' metric states get today's names.
        upgrade_metric_states(checkpoint["state_dict"])
        saved = checkpoint.get("d2lexp_task", {})
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

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning sets `_current_fx_name` around every hook, some 50 times a step;
        # nn.Module.__setattr__'s parameter/buffer bookkeeping is wasted on a plain string.
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def on_fit_start(self) -> None:
        # After the callbacks' on_fit_start, so after Lightning's model summary has run the net
        # under FlopCounterMode: torch before 2.14 skips a compiled call made under a dispatch
        # mode and then skips its code for good (pytorch/pytorch#190286), so the net trained eager.
        if self.compile_options is not None and self._compiled_net is None:
            # torch.compile(net), not net.compile(): before torch 2.14 the latter compiled nothing
            # for a net whose forward is torch's own, as nn.Sequential's (pytorch/pytorch#150915).
            # Kept out of the module tree, so state_dict keys stay those of the plain net.
            # Dynamo first forgets the nets compiled before in this process (a sweep's earlier jobs,
            # a benchmark's earlier presets). Every nn.Sequential net is compiled through one
            # shared wrapper function, and dynamo compiles a function for at most 8 different
            # nets: the 9th would silently train eager, with only a warning. This also frees
            # their CUDA-graph memory pools.
            torch._dynamo.reset()
            object.__setattr__(self, "_compiled_net", torch.compile(self.net, **self.compile_options))

    def apply_net(self, *inputs: Any) -> Any:
        """The net on `inputs`; tasks' `forward` calls this.

        With `compile`, training batches of the first batch's shape run compiled. Everything
        else runs eager, since each new graph costs a compile as long as the first (seconds to
        minutes) to save a little host time: an epoch's last, smaller batch (one step an epoch),
        and evaluation (in eval mode and without gradients the net is another graph, run
        forward only over the validation split once an epoch).
        """
        if self.training and self._compiled_net is not None:
            shape = tuple(inputs[0].shape)
            if self._compiled_shape is None:
                self._compiled_shape = shape
            if shape == self._compiled_shape:
                return self._compiled_net(*inputs)
        return self.net(*inputs)

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.net.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = {
            "scheduler": self.scheduler_factory(optimizer),
            "interval": self.scheduler_interval,
            "monitor": self.scheduler_monitor,
        }
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def log_epoch_loss(self, running_loss: Metric) -> torch.Tensor:
        """Log the epoch's mean training loss as `train/loss` (one sync per epoch) and stop
        training if it diverged: not a finite number, or more than `DIVERGED_GROWTH` times the
        untrained net's loss on its first batch. (Training lowers a loss; one that grew tenfold
        over the whole epoch is exploding, finite or not: LeNet at lr 1e6 reaches 1.6e7 against
        2.3 at the start. No preset of the book's comes near: their epoch losses stay below their
        first batch's.)"""
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

        Calling `self.log` on every step costs Lightning about a millisecond of
        bookkeeping per call; this writes directly, and reads the value back from
        the device only on the steps that are written.
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
