"""Semantic segmentation, the book's way (d2l 1.0 ch. 14.11): a class for every pixel.

The net maps images (B, C, H, W) to class scores for every pixel (B, classes, H, W), as the FCN
does; the targets are class indices (B, H, W). The loss is the book's: the cross-entropy of each
pixel, averaged over the image's pixels, per image. Pixel accuracy and mean IoU (the intersection
over union of each class's predicted and true pixels over the whole split, averaged over the
classes) come from torchmetrics; the number of classes is the data's (DataModule.num_classes).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from d2lexp.errors import ConfigError
from d2lexp.tasks.base import OptimizerFactory, Scheduler, Task
from d2lexp.tasks.metrics import RunningMean, correct


class SegmentationTask(Task):
    """Per-pixel cross-entropy, pixel accuracy and mean IoU, for any net mapping images to per-pixel
    class scores.

    Logged per epoch: train/loss, train/pixel_acc, val/loss, val/pixel_acc, val/miou, the same for
    test, and test/pixel_acc_background and test/miou_background: the scores of a net that calls
    every pixel background (class 0), the baseline the others are measured against.
    """

    def __init__(self, net: nn.Module, optimizer: OptimizerFactory, scheduler: Scheduler | None = None) -> None:
        super().__init__(net, optimizer, scheduler)
        self.train_loss, self.val_loss, self.test_loss = RunningMean(), RunningMean(), RunningMean()
        self.train_acc = RunningMean()  # the book's accuracy: the share of pixels right
        self.track_train_metrics(self.train_loss, self.train_acc)
        self.num_classes: int | None = None  # the data's, once the trainer has it (`setup`)

    def setup(self, stage: str) -> None:
        """The split metrics, for as many classes as the data declares (a data module without
        `num_classes` cannot be segmented: one paragraph)."""
        data = self.data
        classes = data.num_classes if data is not None else None
        if not classes or (data is not None and data.target_kind != "masks"):
            raise ConfigError(
                "task=segmentation needs data whose targets are a class per pixel (data=canvas_segmentation, "
                "data=voc_segmentation), with the number of classes it holds."
            )
        if self.num_classes == classes:
            return
        self.num_classes = classes
        for split in ("val", "test"):
            setattr(self, f"{split}_acc", MulticlassAccuracy(classes, average="micro").to(self.device))
            setattr(self, f"{split}_iou", MulticlassJaccardIndex(classes, average="macro").to(self.device))
        self.test_acc_background = MulticlassAccuracy(classes, average="micro").to(self.device)
        self.test_iou_background = MulticlassJaccardIndex(classes, average="macro").to(self.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.apply_net(x)

    def _losses(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        images, masks = batch
        masks = masks.long()
        scores = self(images)
        if scores.shape[-2:] != masks.shape[-2:]:
            raise ConfigError(
                f"The net gives class scores for {tuple(scores.shape[-2:])} pixels, but the masks are "
                f"{tuple(masks.shape[-2:])}: a segmentation net must keep the image's size."
            )
        losses = F.cross_entropy(scores, masks, reduction="none").mean(dim=(1, 2))  # the book's, per image
        return losses, scores, masks

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        losses, scores, masks = self._losses(batch)
        self.train_loss.update(losses.detach())
        self.train_acc.update(correct(scores.detach().movedim(1, -1), masks))
        loss = losses.mean()
        self.log_step_loss(loss)
        return loss

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        self.log_epoch_loss(self.train_loss)
        self.log("train/pixel_acc", self.train_acc.compute())

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        losses, scores, masks = self._losses(batch)
        predicted = scores.argmax(dim=1)
        getattr(self, f"{stage}_loss").update(losses)
        getattr(self, f"{stage}_acc").update(predicted, masks)
        getattr(self, f"{stage}_iou").update(predicted, masks)
        if stage == "test":
            background = torch.zeros_like(masks)
            self.test_acc_background.update(background, masks)
            self.test_iou_background.update(background, masks)
        return predicted

    def _log_evaluation(self, stage: str) -> None:
        loss, acc, iou = (getattr(self, f"{stage}_{name}") for name in ("loss", "acc", "iou"))
        self.log(f"{stage}/loss", loss.compute(), prog_bar=stage == "val")
        self.log(f"{stage}/pixel_acc", acc.compute())
        self.log(f"{stage}/miou", iou.compute(), prog_bar=stage == "val")
        for metric in (loss, acc, iou):
            metric.reset()

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_evaluation("val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Returns the batch's predicted masks (B, H, W), for callbacks that draw them."""
        return self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._log_evaluation("test")
        self.log("test/pixel_acc_background", self.test_acc_background.compute())
        self.log("test/miou_background", self.test_iou_background.compute())
        self.test_acc_background.reset()
        self.test_iou_background.reset()

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(x).argmax(dim=1)
