"""Image augmentation of training batches, on the batch's device, as batched tensor operations.

The book's AlexNet chapter adds augmentation (crops, flips, colour) to what LeNet did, and its
computer-vision chapter opens with it. Here each image of a batch gets its own random draw, and
the whole batch is changed at once: the geometric changes (flip, translation after padding,
random resized crop, rotation) are one affine map per image, applied to the batch by a single
`grid_sample`; the photometric ones (brightness, contrast, saturation) are per-image factors.
No per-image Python, no PIL, no DataLoader workers.

Mixing (MixUp, CutMix: torchvision's v2 batch transforms) comes last and changes the targets too:
each image is blended with the next one in the batch, or a box of it replaced by the same box of
that one, and its label becomes the two classes' probabilities in the same proportion; the
classification task trains on them (cross-entropy against probabilities).

The draws come from a generator seeded by (seed, epoch, batch), so the same seed gives the same
augmented batches, and a run resumed mid-epoch augments its next batch as an uninterrupted run
would. Every strength at zero (`Augment()`) changes nothing.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augment:
    """Random changes to images in [0, 1], [B, C, H, W], drawn per image.

    flip: probability of a horizontal flip. crop_padding: a random crop of the image's size after
    zero-padding it by this many pixels on each side (a shift of up to that many). resized_crop:
    (smallest, largest) share of the area kept by a random resized crop (aspect 3:4 to 4:3), or
    None. rotation: degrees, uniform in [-rotation, rotation]. brightness, contrast, saturation:
    factors uniform in [1 - s, 1 + s] (saturation: colour images only). mixup_alpha, cutmix_alpha:
    MixUp's and CutMix's Beta(alpha, alpha) for the share of each image kept (0: off; both on: one
    of the two, at random, per batch); they mix class labels (`mix`).
    """

    flip: float = 0.0
    crop_padding: int = 0
    resized_crop: tuple[float, float] | None = None
    rotation: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0

    def __post_init__(self) -> None:
        for name in ("flip", "rotation", "brightness", "contrast", "saturation", "mixup_alpha", "cutmix_alpha"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"augment.{name} must be a finite number, got {value!r}")
        if isinstance(self.crop_padding, bool) or not isinstance(self.crop_padding, int):
            raise ValueError(f"augment.crop_padding must be a whole number of pixels, got {self.crop_padding!r}")
        if self.rotation > 180:
            raise ValueError(f"augment.rotation is at most 180 degrees, got {self.rotation}")
        if not 0 <= self.flip <= 1:
            raise ValueError(f"augment.flip is a probability, in [0, 1]; got {self.flip}")
        if self.crop_padding < 0 or self.rotation < 0:
            raise ValueError("augment.crop_padding and augment.rotation must be at least 0")
        if self.mixup_alpha < 0 or self.cutmix_alpha < 0:
            raise ValueError("augment.mixup_alpha and augment.cutmix_alpha must be at least 0 (0: off)")
        for name in ("brightness", "contrast", "saturation"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"augment.{name} must be in [0, 1), got {getattr(self, name)}")
        if self.resized_crop is not None:
            if len(self.resized_crop) != 2 or not all(isinstance(v, (int, float)) for v in self.resized_crop):
                raise ValueError(f"augment.resized_crop is a (smallest, largest) pair, got {self.resized_crop}")
            low, high = self.resized_crop
            if not 0 < low <= high <= 1:
                raise ValueError(
                    f"augment.resized_crop is a (smallest, largest) share of the area in (0, 1], got {self.resized_crop}"
                )

    @property
    def active(self) -> bool:
        """Whether it changes anything at all."""
        return self.geometric or self.photometric or self.mixing

    @property
    def geometric(self) -> bool:
        return bool(self.flip or self.crop_padding or self.resized_crop or self.rotation)

    @property
    def photometric(self) -> bool:
        return bool(self.brightness or self.contrast or self.saturation)

    @property
    def mixing(self) -> bool:
        """Whether it mixes images, and so their labels (MixUp, CutMix)."""
        return bool(self.mixup_alpha or self.cutmix_alpha)

    def mix(
        self, images: torch.Tensor, labels: torch.Tensor, num_classes: int, seed: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """MixUp or CutMix of a batch [B, C, H, W] and its class labels [B]: the mixed images and
        the targets as class probabilities [B, num_classes] (float32), on the batch's device.
        torchvision draws the share and the box from torch's global generator, on the host (no
        device sync): it is seeded with `seed` for this batch alone, and left as it was after."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return _mixer(float(self.mixup_alpha), float(self.cutmix_alpha), num_classes)(images, labels)

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.geometric:
            images = self._geometric(images, generator)
        if self.photometric:
            images = self._photometric(images, generator)
        return images

    def _geometric(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One affine map per image (output coordinates to input ones, in grid_sample's [-1, 1]),
        sampled bilinearly, zero outside the image. All draws come from one call (few, large
        operations: the per-op cost dominates at 28 pixels)."""
        n, _, height, width = images.shape
        u = torch.rand(n, 8, generator=generator, device=images.device)  # area, aspect, x, y, dx, dy, angle, flip
        if self.resized_crop is not None:
            low, high = self.resized_crop
            area = low + (high - low) * u[:, 0]
            aspect = torch.exp(math.log(3 / 4) + math.log(16 / 9) * u[:, 1])  # 3:4 to 4:3, even in log
            scale = torch.stack([area * aspect, area / aspect], dim=1).sqrt_().clamp_(max=1.0)  # [N, (x, y)]
            shift = (1 - scale) * (2 * u[:, 2:4] - 1)
        else:
            scale, shift = torch.ones_like(u[:, :2]), torch.zeros_like(u[:, :2])
        if self.crop_padding:  # whole-pixel shifts: sampling lands on pixel centres, values stay exact
            p = self.crop_padding
            pixels = (u[:, 4:6] * (2 * p + 1)).floor_().clamp_(max=2 * p) - p  # uniform in -p..p
            shift = shift + 2 * pixels / torch.tensor([width, height], device=images.device)
        angle = (2 * u[:, 6] - 1) * (self.rotation * math.pi / 180)
        flip = 1 - 2 * (u[:, 7] < self.flip).float()  # -1 mirrors
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.stack(
            [scale[:, 0] * cos * flip, -scale[:, 0] * sin * (height / width), shift[:, 0],
             scale[:, 1] * sin * flip * (width / height), scale[:, 1] * cos, shift[:, 1]],
            dim=1,
        ).view(n, 2, 3)  # fmt: skip
        grid = affine_grid(theta, height, width)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def _photometric(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Brightness b then contrast c about the image's mean m, as one map per image:
        (b x - b m) c + b m = (b c) x + b m (1 - c); then saturation about the gray image."""
        n = images.shape[0]
        u = 2 * torch.rand(n, 3, 1, 1, 1, generator=generator, device=images.device) - 1  # [-1, 1]
        brightness, contrast = 1 + self.brightness * u[:, 0], 1 + self.contrast * u[:, 1]
        if self.contrast:
            offset = brightness * images.mean(dim=(1, 2, 3), keepdim=True) * (1 - contrast)
            x = torch.addcmul(offset, images, brightness * contrast)
        else:
            x = images * brightness
        if self.saturation and x.shape[1] == 3:
            gray = (x * torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
            x = torch.lerp(gray, x, 1 + self.saturation * u[:, 2])
        return x.clamp_(0, 1)


def affine_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """F.affine_grid(theta, [N, C, height, width], align_corners=False), as broadcast products: the
    same grid (to float rounding), ten times faster on a CPU, where affine_grid's batched matrix
    product costs more than the sampling itself."""
    xs, ys = _pixel_centres(width, theta.device, theta.dtype), _pixel_centres(height, theta.device, theta.dtype)
    t = theta.view(-1, 2, 3, 1, 1)
    grid = t[:, :, 0] * xs.view(1, 1, 1, width) + t[:, :, 1] * ys.view(1, 1, height, 1) + t[:, :, 2]  # [N, 2, H, W]
    return grid.permute(0, 2, 3, 1)


@functools.lru_cache(maxsize=16)
def _pixel_centres(size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The centres of `size` pixels in [-1, 1] (align_corners=False), made once per shape and device."""
    return (torch.arange(size, device=device, dtype=dtype) * 2 + 1) / size - 1


@functools.lru_cache(maxsize=8)
def _mixer(mixup_alpha: float, cutmix_alpha: float, num_classes: int):  # -> a torchvision v2 transform
    from torchvision.transforms import v2

    mixers = ([v2.MixUp(alpha=mixup_alpha, num_classes=num_classes)] if mixup_alpha else []) + (
        [v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes)] if cutmix_alpha else []
    )
    return mixers[0] if len(mixers) == 1 else v2.RandomChoice(mixers)


MIX_STREAM = 6  # mixing's draws: a stream of their own beside the other changes' (batch_seed's default)


def batch_seed(seed: int, epoch: int, batch: int, stream: int = 5) -> int:
    """The seed of one training batch's draws (of one `stream`): a function of (seed, epoch, batch) alone."""
    words = [seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF, stream, epoch, batch]
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0] & 0x7FFF_FFFF_FFFF_FFFF)


class BatchGenerators:
    """One generator per device, reseeded for each batch (a host-side setting: no device sync)."""

    def __init__(self) -> None:
        self._generators: dict[torch.device, torch.Generator] = {}

    def for_batch(self, device: torch.device, seed: int, epoch: int, batch: int) -> torch.Generator:
        generator = self._generators.get(device)
        if generator is None:
            generator = self._generators[device] = torch.Generator(device=device)
        return generator.manual_seed(batch_seed(seed, epoch, batch))
