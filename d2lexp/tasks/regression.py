"""Training a regression net on a squared loss: the book's linear regression (ch. 3),
and any other net whose targets are numbers."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from d2lexp.tasks.base import OptimizerFactory, Scheduler, Task
from d2lexp.tasks.metrics import RunningMean

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def mse(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Element-wise squared error (nn.MSELoss without the reduction)."""
    return F.mse_loss(y_hat, y.reshape(y_hat.shape), reduction="none")


class RegressionTask(Task):
    """Minimises `loss` (element-wise, e.g. the book's `squared_loss`), reduced by `reduction`.

    Logs train/loss, val/loss, test/loss (mean per element). When the net can tell its
    weights (`get_w_b()`, as the book's linear models) and the data knows the true ones
    (`true_parameters`), it also logs how far off they are: param/w_error (largest
    absolute difference), param/b_error and the estimates param/w_hat_<i>, param/b_hat.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: Scheduler | None = None,
        loss: Loss | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(net, optimizer, scheduler)
        if reduction not in ("mean", "sum"):
            raise ValueError(f"task.reduction must be 'mean' or 'sum', got {reduction!r}")
        self.loss = loss or mse
        self.reduction = reduction
        self.train_loss, self.val_loss, self.test_loss = (RunningMean() for _ in range(3))
        self.track_train_metrics(self.train_loss)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.apply_net(x)

    def _losses(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        return self.loss(self(x), y)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        losses = self._losses(batch)
        self.train_loss.update(losses.detach().flatten())
        loss = losses.mean() if self.reduction == "mean" else losses.sum()
        self.log_step_loss(loss)
        return loss

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        self.log_epoch_loss(self.train_loss)
        self._log_parameter_error()

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self.val_loss.update(self._losses(batch).flatten())

    def on_validation_epoch_end(self) -> None:
        self.log("val/loss", self.val_loss.compute(), prog_bar=True)
        self.val_loss.reset()

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self.test_loss.update(self._losses(batch).flatten())

    def on_test_epoch_end(self) -> None:
        self.log("test/loss", self.test_loss.compute())
        self.test_loss.reset()

    def _log_parameter_error(self) -> None:
        truth = self.data.true_parameters if self.data is not None else None
        if truth is None or not hasattr(self.net, "get_w_b"):
            return
        w_hat, b_hat = self.net.get_w_b()
        true_w = truth.w.to(dtype=w_hat.dtype, device=w_hat.device).flatten()
        self.log("param/w_error", (w_hat - true_w).abs().max())
        for i, value in enumerate(w_hat):
            self.log(f"param/w_hat_{i}", value)
        if truth.b is not None and b_hat is not None:
            self.log("param/b_error", (b_hat.flatten() - truth.b).abs().max())
            self.log("param/b_hat", b_hat.flatten()[0])
