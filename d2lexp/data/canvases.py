"""Detection and segmentation data made from Fashion-MNIST: items placed on larger canvases.

The book's computer-vision chapter trains TinySSD on its banana images and the FCN on Pascal VOC;
neither is here without a network. These canvases stand in with real images: each holds one to
`max_objects` Fashion-MNIST items, each scaled to a side drawn from `sides`, placed where their
boxes do not overlap. An item's box is the extent of its non-zero pixels (after scaling), its
class the item's label; its pixels, there, are its mask. The training canvases are made from
Fashion-MNIST's training items, the test canvases from its test items, so no test item is ever
seen in training. Made once per data module, seeded by `canvas_seed` alone (not the run's seed:
runs of a sweep score the same canvases), in memory: 6,000 canvases take about a second.

Targets, per canvas:
- `targets="boxes"` (TinySSD, the book's banana loader): [K, 5] float32 rows (class, x1, y1, x2,
  y2), corners in fractions of the canvas side, K = `max_objects`, unused rows all -1.
- `targets="masks"` (FCN): [H, W] uint8, the item's class + 1 where an item is, 0 (background)
  elsewhere; so 11 pixel classes, background first, as VOC's 21 are.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from d2lexp.data.fashion_mnist import CLASS_NAMES, ensure_fashion_mnist, load_split
from d2lexp.data.images import ImageDataModule, positive
from d2lexp.data.loader import seeded_generator
from d2lexp.errors import ConfigError

TARGETS = ("boxes", "masks")
# Where an item is placed: this many candidate positions are drawn, and the first whose box
# overlaps no box already on the canvas is taken (none: the item is left out).
PLACEMENT_TRIES = 20
MAX_CANVASES = 200_000  # 64x64 each: 800 MB
MAX_SIDE = 512


def _extent(mask: torch.Tensor) -> torch.Tensor:
    """(x1, y1, x2, y2) in pixels (x2, y2 exclusive) of each mask's True pixels: masks [N, s, s]."""
    side = mask.shape[-1]
    rows, cols = mask.any(dim=2), mask.any(dim=1)
    y1, x1 = rows.float().argmax(dim=1), cols.float().argmax(dim=1)
    y2, x2 = side - rows.flip(1).float().argmax(dim=1), side - cols.flip(1).float().argmax(dim=1)
    return torch.stack((x1, y1, x2, y2), dim=1)


def make_canvases(
    items: torch.Tensor,
    labels: torch.Tensor,
    count: int,
    size: int,
    max_objects: int,
    sides: tuple[int, int],
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`count` canvases of `size` x `size` from `items` [M, 1, h, w] uint8 and their `labels` [M].

    Returns (images [count, 1, size, size] uint8, boxes [count, max_objects, 5] float32 with -1
    rows for padding, masks [count, size, size] uint8 with class + 1 where an item is). Items are
    scaled with antialiasing as whole groups of one side each (no per-item resize); an item's
    mask is its non-zero pixels, scaled (area share at least a half), and its box their extent.
    """
    low, high = sides
    num_objects = torch.randint(1, max_objects + 1, (count,), generator=generator)
    total = int(num_objects.sum())
    chosen = torch.randint(0, len(items), (total,), generator=generator)
    side = torch.randint(low, high + 1, (total,), generator=generator)
    # Candidate upper-left corners, as fractions of the room left beside the item: drawn at once.
    where = torch.rand(total, PLACEMENT_TRIES, 2, generator=generator)

    scaled: list[np.ndarray] = [np.empty(0)] * total
    masks: list[np.ndarray] = [np.empty(0)] * total
    extents = torch.zeros(total, 4, dtype=torch.long)
    for s in side.unique().tolist():  # every item of one side scaled in one call
        which = (side == s).nonzero().flatten()
        source = items[chosen[which]].float()
        pixels = F.interpolate(source, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
        present = F.interpolate((source > 0).float(), size=(s, s), mode="area") >= 0.5
        extents[which] = _extent(present[:, 0])
        pixels = pixels.round().clamp(0, 255).to(torch.uint8)[:, 0].numpy()
        present = present[:, 0].numpy()
        for j, i in enumerate(which.tolist()):
            scaled[i], masks[i] = pixels[j], present[j]

    images = np.zeros((count, size, size), dtype=np.uint8)
    label_images = np.zeros((count, size, size), dtype=np.uint8)
    boxes = np.full((count, max_objects, 5), -1.0, dtype=np.float32)
    item_labels = labels[chosen].numpy()
    offsets = (where * (size - side).view(-1, 1, 1)).floor().long().numpy()  # [total, tries, (x, y)]
    extents_np, side_np = extents.numpy(), side.numpy()
    first = 0
    for c, n in enumerate(num_objects.tolist()):
        placed: list[np.ndarray] = []
        for i in range(first, first + n):
            candidates = extents_np[i][None, :] + np.tile(offsets[i], 2)  # boxes in canvas pixels
            fits = np.ones(PLACEMENT_TRIES, dtype=bool)
            for box in placed:
                overlap_w = np.minimum(candidates[:, 2], box[2]) - np.maximum(candidates[:, 0], box[0])
                overlap_h = np.minimum(candidates[:, 3], box[3]) - np.maximum(candidates[:, 1], box[1])
                fits &= (overlap_w <= 0) | (overlap_h <= 0)
            if not fits.any():
                continue  # no room: the canvas holds fewer items
            x, y = offsets[i][int(fits.argmax())]
            s = side_np[i]
            region = (c, slice(y, y + s), slice(x, x + s))
            images[region] = np.maximum(images[region], scaled[i])  # boxes apart: items never overwrite
            label_images[region][masks[i]] = item_labels[i] + 1
            box = candidates[int(fits.argmax())]
            boxes[c, len(placed)] = (item_labels[i], *(box / size))
            placed.append(box)
        first += n
    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(boxes), torch.from_numpy(label_images)


class FashionMNISTCanvases(ImageDataModule):
    """Fashion-MNIST items on `canvas_size` x `canvas_size` canvases, for detection (`targets`
    "boxes") or segmentation ("masks"): see the module's docstring. Canvases are grey (1 channel)."""

    targets_follow_geometry = False  # a flipped or cropped canvas would move its items away from their boxes

    def __init__(
        self,
        data_dir: str = "./data",
        download: bool = True,
        targets: str = "boxes",
        canvas_size: int = 64,
        max_objects: int = 3,
        min_side: int = 16,
        max_side: int = 40,
        train_canvases: int = 6000,
        test_canvases: int = 1000,
        canvas_seed: int = 0,
        **options: Any,
    ) -> None:
        """`data_dir`, `download`: where Fashion-MNIST is (FashionMNISTDataModule's). `targets`:
        "boxes" or "masks". Items are scaled to sides from `min_side` to `max_side` pixels.
        `options`: ImageDataModule's (batch_size, val_size, train_subset, augment, ...)."""
        if targets not in TARGETS:
            raise ConfigError(f"data.targets is one of {', '.join(TARGETS)}, got {targets!r}.")
        for key, value in (("canvas_size", canvas_size), ("max_objects", max_objects), ("min_side", min_side),
                           ("max_side", max_side), ("train_canvases", train_canvases), ("test_canvases", test_canvases)):  # fmt: skip
            positive(f"data.{key}", value)
        if canvas_size > MAX_SIDE or max(train_canvases, test_canvases) > MAX_CANVASES:
            raise ConfigError(
                f"data.canvas_size is at most {MAX_SIDE} and data.train_canvases and data.test_canvases at most "
                f"{MAX_CANVASES:,}; got {canvas_size}, {train_canvases} and {test_canvases}."
            )
        if not min_side <= max_side <= canvas_size:
            raise ConfigError(
                f"Items are scaled to sides from data.min_side to data.max_side, which must fit the canvas: "
                f"min_side <= max_side <= canvas_size, got {min_side}, {max_side} and {canvas_size}."
            )
        if not isinstance(canvas_seed, int) or isinstance(canvas_seed, bool) or canvas_seed < 0:
            raise ConfigError(f"data.canvas_seed must be a whole number of at least 0, got {canvas_seed!r}.")
        if targets == "masks" and options.get("resize") not in (None, canvas_size):
            raise ConfigError(
                f"data.resize={options['resize']} would resize the canvases but not their masks. Set "
                f"data.canvas_size={options['resize']} instead (and leave data.resize unset)."
            )
        self.train_size = train_canvases
        self.image_shape = (1, canvas_size, canvas_size)
        super().__init__(**options)
        self.data_dir, self.download, self.targets = data_dir, download, targets
        self.canvas_size, self.max_objects, self.sides = canvas_size, max_objects, (min_side, max_side)
        self.canvas_counts = {"train": train_canvases, "test": test_canvases}
        self.canvas_seed = canvas_seed
        self.target_kind = targets
        if targets == "boxes":  # detection: the objects' classes (background is the detector's own)
            self.num_classes, self.class_names = len(CLASS_NAMES), CLASS_NAMES
        else:  # segmentation: every pixel's class, background first
            self.num_classes, self.class_names = len(CLASS_NAMES) + 1, ("background", *CLASS_NAMES)

    def prepare_data(self) -> None:
        ensure_fashion_mnist(self.data_dir, self.download)

    def load_splits(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        raw = ensure_fashion_mnist(self.data_dir, self.download)
        splits = {}
        for stream, split in enumerate(("train", "test")):
            items, labels = load_split(raw, split)
            images, boxes, masks = make_canvases(
                items, labels, self.canvas_counts[split], self.canvas_size, self.max_objects, self.sides,
                seeded_generator(self.canvas_seed, 7, stream),
            )  # fmt: skip
            splits[split] = (images, boxes if self.targets == "boxes" else masks)
        return splits

    def sample_images(self, n: int = 18) -> tuple[torch.Tensor, list[str]]:
        """The first `n` training canvases, titled with the classes of the items on them."""
        images, targets = self.splits["train"]
        shown = images[:n, 0].float().cpu() / 255.0
        if self.targets == "boxes":
            titles = [",".join(CLASS_NAMES[int(c)][:7] for c in row[:, 0] if c >= 0) for row in targets[:n].cpu()]
        else:
            titles = [
                ",".join(CLASS_NAMES[int(c) - 1][:7] for c in mask.unique() if c > 0) for mask in targets[:n].cpu()
            ]
        return shown, titles
