"""Object detection with anchors, the book's way (d2l 1.0 ch. 14.7): a single-shot detector's loss,
its class error and box MAE, and mAP as COCO computes it.

The net maps a batch of images to (anchors (1, A, 4), class scores (B, A, C + 1), offsets
(B, 4A)), as the book's TinySSD does; the targets are [B, K, 5] rows (class, x1, y1, x2, y2) in
fractions of the image, rows of -1 padding. Each anchor is labelled with the book's
`multibox_target`; the loss is its `calc_loss`: cross-entropy over every anchor's class plus
L1 over the offsets of anchors that hold an object, per image. Detections are the book's
`multibox_detection` made batched: every anchor's most likely object class and its box, those
under `score_threshold` dropped, then non-maximum suppression (torchvision's `batched_nms`, over
every image of the batch at once: one pass over all classes as the book does, or per class).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.detection import MeanAveragePrecision
from torchvision.ops import batched_nms

from d2lexp.errors import ConfigError
from d2lexp.scratch.detection import multibox_target, offset_inverse
from d2lexp.tasks.base import OptimizerFactory, Scheduler, Task
from d2lexp.tasks.metrics import RunningMean

Detections = list[dict[str, torch.Tensor]]  # per image: boxes (n, 4) in pixels, scores (n), labels (n)


def calc_loss(
    cls_preds: torch.Tensor,
    cls_labels: torch.Tensor,
    bbox_preds: torch.Tensor,
    bbox_labels: torch.Tensor,
    bbox_masks: torch.Tensor,
) -> torch.Tensor:
    """The book's loss, per image: the mean over anchors of the class cross-entropy, plus the mean
    over offsets of the L1 error where the mask keeps it."""
    batch_size, num_classes = cls_preds.shape[0], cls_preds.shape[2]
    cls = F.cross_entropy(cls_preds.reshape(-1, num_classes), cls_labels.reshape(-1), reduction="none")
    bbox = F.l1_loss(bbox_preds * bbox_masks, bbox_labels * bbox_masks, reduction="none")
    return cls.reshape(batch_size, -1).mean(dim=1) + bbox.mean(dim=1)


def decode(
    anchors: torch.Tensor,
    cls_preds: torch.Tensor,
    bbox_preds: torch.Tensor,
    score_threshold: float = 0.01,
    nms_threshold: float = 0.5,
    per_class: bool = False,
    max_detections: int = 100,
) -> Detections:
    """The detections of a batch, in fractions of the image: per image, boxes, scores and labels
    (0-based object classes) by decreasing score. With `per_class` False, the boxes kept are those
    of the book's `multibox_detection` whose class is not background (a box suppresses any other
    it overlaps by more than `nms_threshold`, whatever their classes)."""
    batch, num_anchors = cls_preds.shape[:2]
    probs = F.softmax(cls_preds.float(), dim=2)
    scores, labels = probs[:, :, 1:].max(dim=2)  # each anchor's most likely object class
    boxes = offset_inverse(anchors[0].repeat(batch, 1), bbox_preds.float().reshape(-1, 4)).reshape(
        batch, num_anchors, 4
    )
    image, anchor = (scores >= score_threshold).nonzero(as_tuple=True)
    kept_scores, kept_labels, kept_boxes = scores[image, anchor], labels[image, anchor], boxes[image, anchor]
    num_classes = cls_preds.shape[2] - 1
    groups = image * num_classes + kept_labels if per_class else image  # NMS apart per image (and class)
    keep = batched_nms(kept_boxes, kept_scores, groups, nms_threshold)  # by decreasing score
    detections = []
    for i in range(batch):
        mine = keep[image[keep] == i][:max_detections]
        detections.append({"boxes": kept_boxes[mine], "scores": kept_scores[mine], "labels": kept_labels[mine]})
    return detections


def ground_truth(targets: torch.Tensor, width: int, height: int) -> Detections:
    """[B, K, 5] targets (-1 rows padding) as torchmetrics' list of boxes (in pixels) and labels."""
    scale = torch.tensor([width, height, width, height], dtype=torch.float32, device=targets.device)
    return [{"boxes": rows[rows[:, 0] >= 0, 1:] * scale, "labels": rows[rows[:, 0] >= 0, 0].long()} for rows in targets]


def in_pixels(detections: Detections, width: int, height: int) -> Detections:
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    return [{**d, "boxes": d["boxes"] * scale.to(d["boxes"].device)} for d in detections]


class DetectionTask(Task):
    """Training any anchor-based detector that gives (anchors, class scores, offsets) as TinySSD does.

    Logged per epoch: train/loss, train/class_err, train/bbox_mae (the book's three), val/loss,
    val/class_err, val/bbox_mae, val/map (COCO's mAP, IoU 0.5 to 0.95) and val/map_50 (at IoU
    0.5), the same for test, and test/class_err_background: the class error of a detector that
    calls every anchor background (the baseline class error is measured against).
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: Scheduler | None = None,
        score_threshold: float = 0.01,
        nms_threshold: float = 0.5,
        nms_per_class: bool = False,
        max_detections: int = 100,
    ) -> None:
        """`score_threshold`: detections less confident are dropped (the book's `pos_threshold`);
        `nms_threshold`: the IoU above which non-maximum suppression drops the less confident box;
        `nms_per_class`: suppress only boxes of the same class (the book: any class);
        `max_detections`: per image, the most confident kept (COCO scores at most 100)."""
        super().__init__(net, optimizer, scheduler)
        if not 0 <= score_threshold < 1 or not 0 < nms_threshold <= 1:
            raise ConfigError(
                f"task.score_threshold must be in [0, 1) and task.nms_threshold in (0, 1], got {score_threshold} and "
                f"{nms_threshold}."
            )
        if not isinstance(max_detections, int) or max_detections < 1:
            raise ConfigError(f"task.max_detections must be a positive integer, got {max_detections!r}.")
        self.score_threshold, self.nms_threshold = score_threshold, nms_threshold
        self.nms_per_class, self.max_detections = nms_per_class, max_detections
        self.train_loss, self.val_loss, self.test_loss = RunningMean(), RunningMean(), RunningMean()
        self.train_cls, self.val_cls, self.test_cls = RunningMean(), RunningMean(), RunningMean()  # anchors right
        self.train_mae, self.val_mae, self.test_mae = RunningMean(), RunningMean(), RunningMean()
        self.test_cls_background = RunningMean()  # anchors that are background: all-background's accuracy
        self.val_map, self.test_map = MeanAveragePrecision(), MeanAveragePrecision()
        self.track_train_metrics(self.train_loss, self.train_cls, self.train_mae)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.apply_net(x)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], loss: RunningMean, cls: RunningMean,
              mae: RunningMean) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], torch.Tensor]:  # fmt: skip
        """The batch's per-image losses (and the epoch's sums updated), the net's output, the anchors' classes."""
        images, targets = batch
        anchors, cls_preds, bbox_preds = output = self(images)
        bbox_labels, bbox_masks, cls_labels = multibox_target(anchors, targets)
        losses = calc_loss(cls_preds, cls_labels, bbox_preds, bbox_labels, bbox_masks)
        loss.update(losses.detach())
        cls.update(cls_preds.detach().argmax(dim=-1) == cls_labels)
        mae.update(((bbox_labels - bbox_preds.detach()) * bbox_masks).abs())
        return losses, output, cls_labels

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        losses, _, _ = self._step(batch, self.train_loss, self.train_cls, self.train_mae)
        loss = losses.mean()
        self.log_step_loss(loss)
        return loss

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        self.log_epoch_loss(self.train_loss)
        self.log("train/class_err", 1 - self.train_cls.compute())
        self.log("train/bbox_mae", self.train_mae.compute())

    def detections(self, output: tuple[torch.Tensor, ...]) -> Detections:
        """The net's output decoded (`decode`), boxes in fractions of the image."""
        return decode(*output, self.score_threshold, self.nms_threshold, self.nms_per_class, self.max_detections)

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> Detections:
        loss, cls, mae = (getattr(self, f"{stage}_{name}") for name in ("loss", "cls", "mae"))
        _, output, cls_labels = self._step(batch, loss, cls, mae)
        images, targets = batch
        height, width = images.shape[-2:]
        found = self.detections(output)
        # In pixels: COCO's small, medium and large objects are areas in pixels.
        getattr(self, f"{stage}_map").update(in_pixels(found, width, height), ground_truth(targets, width, height))
        if stage == "test":
            self.test_cls_background.update(cls_labels == 0)
        return found

    def _log_evaluation(self, stage: str) -> None:
        loss, cls, mae, mean_ap = (getattr(self, f"{stage}_{name}") for name in ("loss", "cls", "mae", "map"))
        scores = mean_ap.compute()
        self.log(f"{stage}/loss", loss.compute(), prog_bar=stage == "val")
        self.log(f"{stage}/class_err", 1 - cls.compute())
        self.log(f"{stage}/bbox_mae", mae.compute())
        self.log(f"{stage}/map", scores["map"].float())
        self.log(f"{stage}/map_50", scores["map_50"].float(), prog_bar=stage == "val")
        for metric in (loss, cls, mae, mean_ap):
            metric.reset()

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_evaluation("val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> Detections:
        """Returns the batch's detections (fractions of the image), for callbacks that draw them."""
        return self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._log_evaluation("test")
        self.log("test/class_err_background", 1 - self.test_cls_background.compute())
        self.test_cls_background.reset()

    def predict_step(self, batch: Any, batch_idx: int) -> Detections:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.detections(self(x))
