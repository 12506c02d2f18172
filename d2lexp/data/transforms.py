"""Per-batch image preparation, run on the batch's device after transfer.

The data stays uint8 until here: the host moves a quarter of the bytes, and
scaling, normalising and resizing (28 -> 96 or 224 for the later CNNs) cost
the device one fused pass per batch instead of PIL work per image.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ImageBatchTransform:
    """uint8 [B, C, H, W] in 0..255 -> float32 in [0, 1], then changed by `augment` if one is given
    (training batches: see d2lexp.data.augment), then optionally normalised and resized."""

    resize: int | None = None
    mean: float | None = None
    std: float | None = None

    def __call__(
        self, images: torch.Tensor, augment: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> torch.Tensor:
        x = images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()
        if augment is not None:  # before resizing: the cheaper at 28 pixels than at 224
            x = augment(x)
        if self.mean is not None:
            x = x.sub_(self.mean).div_(self.std if self.std is not None else 1.0)
        if self.resize is not None and tuple(x.shape[-2:]) != (self.resize, self.resize):
            downsampling = self.resize < x.shape[-1]
            x = F.interpolate(
                x, size=(self.resize, self.resize), mode="bilinear", align_corners=False, antialias=downsampling
            )
        return x
