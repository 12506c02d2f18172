"""Single shot multibox detection (d2l 1.0 ch. 14.7): the book's TinySSD.

A base network and three down-sampling blocks halve the feature map four times, a global max
pool makes a fifth, 1x1 scale; at each of the five scales, anchors are laid on every cell
(`multibox_prior`) and two 3x3 convolutions predict each anchor's class scores and box
offsets. Small anchors on the large maps find small objects, large ones on the small maps
large objects. For 256x256 inputs: 32^2 + 16^2 + 8^2 + 4^2 + 1 = 1361 cells, 4 anchors each.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from d2lexp.models.registry import register_net
from d2lexp.scratch.detection import multibox_prior

# The book's anchors: sizes growing evenly from 0.2 to 0.961 over the five scales (the second of
# each pair is the geometric mean of the scale's size and the next one's), ratios 1, 2, 1/2.
SIZES = ((0.2, 0.272), (0.37, 0.447), (0.54, 0.619), (0.71, 0.79), (0.88, 0.961))
RATIOS = ((1.0, 2.0, 0.5),) * 5


def cls_predictor(num_inputs: int, num_anchors: int, num_classes: int) -> nn.Conv2d:
    """A 3x3 convolution giving every cell num_anchors * (num_classes + 1) class scores (0: background)."""
    return nn.Conv2d(num_inputs, num_anchors * (num_classes + 1), kernel_size=3, padding=1)


def bbox_predictor(num_inputs: int, num_anchors: int) -> nn.Conv2d:
    """A 3x3 convolution giving every cell 4 offsets per anchor."""
    return nn.Conv2d(num_inputs, num_anchors * 4, kernel_size=3, padding=1)


def flatten_pred(pred: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) to (N, H * W * C), channels last, so each cell's predictions stay together."""
    return pred.permute(0, 2, 3, 1).flatten(start_dim=1)


def concat_preds(preds: Sequence[torch.Tensor]) -> torch.Tensor:
    """The predictions of every scale, flattened and joined: (N, sum of H * W * C)."""
    return torch.cat([flatten_pred(p) for p in preds], dim=1)


def down_sample_blk(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two 3x3 conv + BN + ReLU layers, then a 2x2 max pool: half the height and width."""
    layers: list[nn.Module] = []
    for _ in range(2):
        layers += [
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
        ]
        in_channels = out_channels
    layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


def base_net(in_channels: int = 3, channels: Sequence[int] = (16, 32, 64)) -> nn.Sequential:
    """Down-sampling blocks to each width in turn (the book's 16, 32, 64: 256x256 to 64x32x32)."""
    widths = [in_channels, *channels]
    return nn.Sequential(*(down_sample_blk(widths[i], widths[i + 1]) for i in range(len(channels))))


def get_blk(
    i: int, in_channels: int = 3, base_channels: Sequence[int] = (16, 32, 64), channels: int = 128
) -> nn.Module:
    """The block of scale i: the base network, three down-sampling blocks, a global max pool."""
    if i == 0:
        return base_net(in_channels, base_channels)
    if i == 1:
        return down_sample_blk(base_channels[-1], channels)
    if i == 4:
        return nn.AdaptiveMaxPool2d((1, 1))
    return down_sample_blk(channels, channels)


def blk_forward(
    X: torch.Tensor,
    blk: nn.Module,
    size: Sequence[float],
    ratio: Sequence[float],
    cls_predictor: nn.Module,
    bbox_predictor: nn.Module,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One scale: its feature map Y, the anchors on Y, and Y's class and offset predictions."""
    Y = blk(X)
    anchors = multibox_prior(Y, sizes=list(size), ratios=list(ratio))
    return Y, anchors, cls_predictor(Y), bbox_predictor(Y)


@register_net
class TinySSD(nn.Module):
    """The book's TinySSD: five scales of anchors, class and box predictions.

    forward(X (N, in_channels, H, W)) returns (anchors (1, A, 4), class scores (N, A,
    num_classes + 1), offsets (N, 4A)); at 256x256, A = 5444. `in_channels` is 3 for the
    book's banana images (1 for grey canvases); widths and anchors default to the book's.
    """

    def __init__(
        self,
        num_classes: int = 1,
        in_channels: int = 3,
        base_channels: Sequence[int] = (16, 32, 64),
        channels: int = 128,
        sizes: Sequence[Sequence[float]] = SIZES,
        ratios: Sequence[Sequence[float]] = RATIOS,
    ) -> None:
        super().__init__()
        if len(sizes) != 5 or len(ratios) != 5:
            raise ValueError(
                f"TinySSD has five scales: give five sizes and five ratios, got {len(sizes)} and {len(ratios)}"
            )
        per_cell = {len(s) + len(r) - 1 for s, r in zip(sizes, ratios)}
        if len(per_cell) != 1:
            raise ValueError(
                f"every scale needs as many anchors per cell (len(sizes) + len(ratios) - 1); got {per_cell}"
            )
        self.num_classes = num_classes
        self.sizes = [list(s) for s in sizes]
        self.ratios = [list(r) for r in ratios]
        num_anchors = per_cell.pop()
        idx_to_in_channels = [base_channels[-1], channels, channels, channels, channels]
        for i in range(5):
            setattr(self, f"blk_{i}", get_blk(i, in_channels, base_channels, channels))
            setattr(self, f"cls_{i}", cls_predictor(idx_to_in_channels[i], num_anchors, num_classes))
            setattr(self, f"bbox_{i}", bbox_predictor(idx_to_in_channels[i], num_anchors))

    def forward(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        anchors, cls_preds, bbox_preds = [], [], []
        for i in range(5):
            X, scale_anchors, scale_cls, scale_bbox = blk_forward(
                X,
                getattr(self, f"blk_{i}"),
                self.sizes[i],
                self.ratios[i],
                getattr(self, f"cls_{i}"),
                getattr(self, f"bbox_{i}"),
            )
            anchors.append(scale_anchors)
            cls_preds.append(scale_cls)
            bbox_preds.append(scale_bbox)
        class_scores = concat_preds(cls_preds)
        return (
            torch.cat(anchors, dim=1),
            class_scores.reshape(class_scores.shape[0], -1, self.num_classes + 1),
            concat_preds(bbox_preds),
        )
