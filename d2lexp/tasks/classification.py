"""Training any classifier net with cross-entropy: the book's `train_ch3`/`train_ch6`, in Lightning."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MaxMetric

from d2lexp.errors import ConfigError
from d2lexp.tasks.base import OptimizerFactory, Scheduler, Task
from d2lexp.tasks.metrics import RunningMean, correct


def cross_entropy_on_logits(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example cross-entropy of class scores (log-softmax inside: numerically stable)."""
    return F.cross_entropy(logits, y, reduction="none")


def shifted_views(x: torch.Tensor, pixels: int) -> list[torch.Tensor]:
    """The batch `x` [B, C, H, W] shifted by `pixels` down, up, right and left, the edge pixels
    repeated into the gap (the background, in normalised or raw units alike, where zeros would be
    black only in raw ones): what a net trained on random shifts (augment.crop_padding) has seen."""
    p = pixels
    padded = F.pad(x, (p, p, p, p), mode="replicate")
    height, width = x.shape[-2:]
    return [
        padded[..., p + dy : p + dy + height, p + dx : p + dx + width] for dy, dx in ((-p, 0), (p, 0), (0, -p), (0, p))
    ]


class ClassificationTask(Task):
    """Cross-entropy training with accuracy, for any net mapping a batch to class logits.

    The net's output may be logits (default loss: cross-entropy) or probabilities with a
    matching `loss` (the hand-written `cross_entropy`); accuracy is the argmax either way.
    Metrics accumulate on the device and are reduced once per epoch, so no step
    waits for the host. Logged: train/loss, train/acc, val/loss, val/acc,
    val/acc_best, test/loss, test/acc (epoch values) and train/loss_step.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: Scheduler | None = None,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        label_smoothing: float = 0.0,
        test_time_flip: bool = False,
        test_time_shift: int = 0,
    ) -> None:
        """`label_smoothing`: training targets put this much probability evenly on all classes
        (cross-entropy on logits only; validation and test losses stay plain cross-entropy, so
        they compare across recipes). `test_time_flip`: validation, test and prediction score
        each image by the mean of the net's logits for it and its mirror image. `test_time_shift`: and
        for it shifted by that many pixels up, down, left and right (5 views; 10 with the flips)."""
        super().__init__(net, optimizer, scheduler)
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"task.label_smoothing must be in [0, 1), got {label_smoothing}.")
        if label_smoothing and loss is not None:
            raise ConfigError(
                "task.label_smoothing applies to the default cross-entropy on logits; this task has its own "
                "task.loss. Set one of them."
            )
        if isinstance(test_time_shift, bool) or not isinstance(test_time_shift, int) or not 0 <= test_time_shift <= 8:
            raise ConfigError(f"task.test_time_shift is a whole number of pixels from 0 to 8, got {test_time_shift!r}.")
        # Per-example losses from the net's output and the labels; default: cross-entropy on logits.
        self.loss = loss or cross_entropy_on_logits
        self.label_smoothing = label_smoothing
        self.test_time_flip = test_time_flip
        self.test_time_shift = test_time_shift

        # Means over examples: of the per-example losses, and of whether each prediction was right.
        self.train_loss, self.val_loss, self.test_loss = RunningMean(), RunningMean(), RunningMean()
        self.train_acc, self.val_acc, self.test_acc = RunningMean(), RunningMean(), RunningMean()
        self.val_acc_best = MaxMetric(nan_strategy="disable")  # its NaN check would sync with the host
        self.val_acc_best.persistent(True)  # saved in checkpoints, so a resumed run remembers its best
        self.track_train_metrics(self.train_loss, self.train_acc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores; outside training with `test_time_flip` or `test_time_shift`, the mean of the
        scores of the image's views (each view a batched call of the net)."""
        logits = self.apply_net(x)
        if self.training or not (self.test_time_flip or self.test_time_shift):
            return logits
        views = [x, *shifted_views(x, self.test_time_shift)] if self.test_time_shift else [x]
        for view in views[1:]:
            logits = logits + self.apply_net(view)
        if self.test_time_flip:
            for view in views:
                logits = logits + self.apply_net(view.flip(-1))
        return logits / (len(views) * (2 if self.test_time_flip else 1))

    def _shared_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y = batch
        logits = self(x)
        return self.loss(logits, y), logits, y

    def on_fit_start(self) -> None:
        data = self.data
        if data is not None and data.soft_targets and self.loss is not cross_entropy_on_logits:
            raise ConfigError(
                "Mixed training images (augment.mixup_alpha, augment.cutmix_alpha) come with class probabilities, "
                "which the default cross-entropy on logits trains on; this task has its own task.loss, which takes "
                "labels. Leave task.loss out, or the mixing off."
            )

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        soft = y.dim() == 2  # class probabilities [B, classes] of mixed images (mixup, cutmix), not labels
        if soft or self.label_smoothing:
            losses = F.cross_entropy(logits, y, reduction="none", label_smoothing=self.label_smoothing)
        else:
            losses = self.loss(logits, y)
        loss = losses.mean()
        # Per-example losses: the epoch value is the exact mean over examples, as the book reports it.
        self.train_loss.update(losses.detach())
        # A mixed image is right when the net picks its dominant class (the larger share).
        self.train_acc.update(correct(logits.detach(), y.argmax(dim=1) if soft else y))
        self.log_step_loss(loss)
        return loss

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        self.log_epoch_loss(self.train_loss)
        self.log("train/acc", self.train_acc.compute())

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        losses, logits, y = self._shared_step(batch)
        self.val_loss.update(losses)
        self.val_acc.update(correct(logits, y))

    def on_validation_epoch_end(self) -> None:
        acc = self.val_acc.compute()
        self.log("val/loss", self.val_loss.compute(), prog_bar=True)
        self.log("val/acc", acc, prog_bar=True)
        self.val_loss.reset()
        self.val_acc.reset()
        if not self.trainer.sanity_checking:
            self.val_acc_best.update(acc)
            self.log("val/acc_best", self.val_acc_best.compute())

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Returns the batch's class scores, for callbacks that picture what the net made of it."""
        losses, logits, y = self._shared_step(batch)
        self.test_loss.update(losses)
        self.test_acc.update(correct(logits, y))
        return logits

    def on_test_epoch_end(self) -> None:
        self.log("test/loss", self.test_loss.compute())
        self.log("test/acc", self.test_acc.compute())
        self.test_loss.reset()
        self.test_acc.reset()

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(x).argmax(dim=1)
