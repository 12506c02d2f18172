"""Image data sets held in memory: what Fashion-MNIST and the computer-vision chapter's data sets share.

Each split is one uint8 tensor of images [N, C, H, W] and one tensor of targets (class labels [N],
masks [N, H, W], boxes [N, K, 5], ...) whose first dimension is the same; batches are gathered by
index (d2lexp.data.loader), never image by image. Images reach the model as float32 in [0, 1],
optionally augmented (training batches only), normalised and resized, on the model's device after
transfer (d2lexp.data.transforms). On a GPU (`on_device="auto"`) the splits live there.

A data set is a short subclass: it declares what its images and targets are (`image_shape`,
`num_classes`, `class_names`, `train_size`, `mean`/`std`) and loads its splits (`load_splits`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from d2lexp.data.augment import MIX_STREAM, Augment, BatchGenerators, batch_seed
from d2lexp.data.base import DataModule
from d2lexp.data.loader import TensorBatchLoader, seeded_generator
from d2lexp.data.transforms import ImageBatchTransform
from d2lexp.errors import ConfigError

# The largest side images are resized to (the book's largest is 224; a batch of 256 at 2048 is 4 GiB).
MAX_SIDE = 2048
Split = tuple[torch.Tensor, torch.Tensor]  # images [N, C, H, W] uint8, targets [N, ...]


class ImageDataModule(DataModule):
    """Images and their targets as tensors, per split: "train", "test", and "val" (the test split,
    as the book reports "test acc" every epoch, unless `val_size` > 0 holds out that many training
    images instead)."""

    augmentable = True
    # What a subclass declares: its images' (channels, height, width), its training set's size (known
    # without reading it: a sweep's launcher weighs jobs by it), and the pixel mean and standard
    # deviation `normalize` uses.
    image_shape: tuple[int, int, int] = (1, 28, 28)
    train_size: int | None = None
    mean: float = 0.5
    std: float = 0.5
    # Whether a random crop, flip or rotation keeps the targets true (class labels: yes; boxes, masks: no).
    targets_follow_geometry: bool = False
    target_kind = "labels"

    def __init__(
        self,
        batch_size: int = 256,
        eval_batch_size: int | None = None,
        val_size: int = 0,
        resize: int | None = None,
        normalize: bool = False,
        train_subset: int | None = None,
        test_subset: int | None = None,
        seed: int = 0,
        on_device: bool | str = "auto",
        augment: Augment | None = None,
        classes: list[int] | None = None,
    ) -> None:
        """`augment`: random changes to training batches, on their device (d2lexp.data.augment).
        `classes`: keep only the examples of these classes, relabelled 0, 1, ... in the order given
        (`[5, 6, 7, 8, 9]`: Fashion-MNIST's last five, as labels 0 to 4)."""
        super().__init__()
        self.classes = self._checked_classes(classes)
        positive("data.batch_size", batch_size)
        positive("data.eval_batch_size", eval_batch_size, allow_none=True)
        positive("data.resize", resize, allow_none=True)
        if resize is not None and resize > MAX_SIDE:
            raise ConfigError(f"data.resize is at most {MAX_SIDE} pixels a side, got {resize}.")
        positive("data.train_subset", train_subset, allow_none=True)
        positive("data.test_subset", test_subset, allow_none=True)
        if not isinstance(val_size, int) or not 0 <= val_size < (self.train_size or 2**63):
            raise ConfigError(f"data.val_size must be in [0, {self.train_size}), got {val_size}.")
        augment = augment if augment is not None and augment.active else None
        if augment is not None and augment.geometric and not self.targets_follow_geometry:
            raise ConfigError(
                f"{type(self).__name__}'s targets are tied to where things are in the image (boxes or masks): a "
                "random crop, flip or rotation of the image alone would make them wrong. Keep augment to brightness, "
                "contrast and saturation, or augment=none."
            )
        if augment is not None and augment.mixing and (not self.targets_follow_geometry or not self.num_classes):
            raise ConfigError(
                f"augment.mixup_alpha and augment.cutmix_alpha mix class labels, and {type(self).__name__}'s targets "
                "are not class labels. Leave both at 0."
            )
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.val_size, self.train_subset, self.test_subset = val_size, train_subset, test_subset
        self.seed, self.on_device, self.augment = seed, on_device, augment
        self.transform = ImageBatchTransform(
            resize=resize, mean=self.mean if normalize else None, std=self.std if normalize else None
        )
        self.splits: dict[str, Split] = {}
        self._generators = BatchGenerators()

    def _checked_classes(self, classes: list[int] | None) -> list[int] | None:
        """The classes kept (ConfigError for a bad list); this data module's class count and names follow them."""
        if classes is None:
            return None
        known = self.num_classes or 0
        if (
            self.target_kind != "labels"
            or not isinstance(classes, (list, tuple))
            or not classes
            or len(set(classes)) != len(classes)
            or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c < known for c in classes)
        ):
            raise ConfigError(
                f"data.classes is a list of different class indices from 0 to {known - 1} (e.g. data.classes=[5,6,7]), "
                f"for data whose targets are class labels; got {str(classes)[:80]!r}."
            )
        if self.class_names:
            self.class_names = tuple(self.class_names[c] for c in classes)
        self.num_classes = len(classes)
        self.train_size = None  # how many training examples those classes have is known once read
        return list(classes)

    def _only_classes(self, split: Split) -> Split:
        """A split's examples of `self.classes`, relabelled by their place in that list."""
        images, labels = split
        relabel = torch.full((type(self).num_classes,), -1, dtype=labels.dtype)  # the data set's own count
        relabel[torch.tensor(self.classes)] = torch.arange(len(self.classes), dtype=labels.dtype)
        new = relabel[labels]
        keep = (new >= 0).nonzero().flatten()
        return images[keep], new[keep]

    def load_splits(self) -> dict[str, Split]:
        """The data set's "train" and "test" splits, whole (a subclass's: read or made, checked)."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        loaded = self.load_splits()
        train, test = loaded["train"], loaded["test"]
        if self.classes is not None:
            train, test = self._only_classes(train), self._only_classes(test)
        if self.val_size:
            order = torch.randperm(len(train[0]), generator=seeded_generator(self.seed, 1))
            val_idx, train_idx = order[: self.val_size].sort().values, order[self.val_size :].sort().values
            self.splits["val"] = (train[0][val_idx], train[1][val_idx])
            train = (train[0][train_idx], train[1][train_idx])
        if self.train_subset:
            train = (train[0][: self.train_subset], train[1][: self.train_subset])
        if self.test_subset:
            test = (test[0][: self.test_subset], test[1][: self.test_subset])
        self.splits["train"], self.splits["test"] = train, test
        self.splits.setdefault("val", test)
        device = self.data_device(self.on_device)
        if device.type != "cpu":  # each split crosses to the accelerator once, as uint8
            self.splits = {
                name: (images.to(device), targets.to(device)) for name, (images, targets) in self.splits.items()
            }

    def train_dataloader(self) -> TensorBatchLoader:
        # Lightning's overfit_batches means: the same first batches every epoch.
        shuffle = not (self.trainer is not None and self.trainer.overfit_batches)
        return TensorBatchLoader(self.splits["train"], self.batch_size, shuffle=shuffle, seed=self.seed)

    def val_dataloader(self) -> TensorBatchLoader:
        return TensorBatchLoader(self.splits["val"], self.eval_batch_size)

    def test_dataloader(self) -> TensorBatchLoader:
        return TensorBatchLoader(self.splits["test"], self.eval_batch_size)

    def predict_dataloader(self) -> TensorBatchLoader:
        return self.test_dataloader()

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if isinstance(batch, torch.Tensor):  # images alone (prediction, the model summary's example)
            return self.transform(batch)
        images, targets = batch
        return self._training_mix(self.transform(images, self._training_augment(images.device)), targets)

    def _training_augment(self, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """The augmentation of the training batch being transferred, its draws seeded by (seed, epoch,
        batch): Lightning counts the epoch's batches, and restores the count when a run resumes."""
        trainer = self.trainer
        if self.augment is None or trainer is None or not trainer.training:
            return None
        batch = trainer.fit_loop.epoch_loop.batch_progress.current.ready  # this batch's index in the epoch
        generator = self._generators.for_batch(device, self.seed, trainer.current_epoch, batch)
        return lambda images: self.augment(images, generator)

    def _training_mix(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """MixUp or CutMix of the training batch being transferred, after its other changes: its targets
        become class probabilities. Seeded by (seed, epoch, batch), as the other changes are."""
        trainer = self.trainer
        if self.augment is None or not self.augment.mixing or trainer is None or not trainer.training:
            return images, targets
        batch = trainer.fit_loop.epoch_loop.batch_progress.current.ready
        seed = batch_seed(self.seed, trainer.current_epoch, batch, stream=MIX_STREAM)
        return self.augment.mix(images, targets, self.num_classes, seed)

    @property
    def soft_targets(self) -> bool:
        return self.augment is not None and self.augment.mixing

    def augmented_samples(self, n: int = 18) -> tuple[torch.Tensor, list[str]] | None:
        """The book's figure of augmentation: the first training image, then `n - 1` draws of it."""
        if self.augment is None or not self.splits:
            return None
        if self.augment.mixing:  # mixing takes two images: the first n, mixed as one batch, their top class shown
            images, labels = self.splits["train"][0][:n].float().cpu() / 255.0, self.splits["train"][1][:n].cpu()
            images = self.augment(images, torch.Generator().manual_seed(self.seed))
            mixed, shares = self.augment.mix(images, labels, self.num_classes, self.seed)
            top, label = shares.max(dim=1)
            names = self.class_names or tuple(str(i) for i in range(self.num_classes))
            return _grayscale(mixed), [f"{names[int(c)]} {float(p):.2f}" for c, p in zip(label, top)]
        image = self.splits["train"][0][:1].float().cpu() / 255.0
        draws = self.augment(image.expand(n - 1, -1, -1, -1), torch.Generator().manual_seed(self.seed))
        return _grayscale(torch.cat([image, draws])), ["original"] + [f"draw {i}" for i in range(1, n)]

    def train_examples(self) -> int | None:
        if self.train_size is None:
            return self.train_subset
        available = self.train_size - self.val_size
        return min(available, self.train_subset) if self.train_subset else available

    def example_input(self) -> torch.Tensor:
        """One blank image as a loader yields it (uint8, before the device-side transform)."""
        return torch.zeros(1, *self.image_shape, dtype=torch.uint8)

    def sample_images(self, n: int = 18) -> tuple[torch.Tensor, list[str]]:
        """The first `n` training images as floats [n, H, W] and their titles (class names, if the
        targets are class labels)."""
        images, targets = self.splits["train"]
        shown = _grayscale(images[:n].float().cpu() / 255.0)
        if self.class_names and targets.dim() == 1:
            return shown, [self.class_names[int(i)] for i in targets[:n].tolist()]
        return shown, [f"#{i}" for i in range(len(shown))]


def _grayscale(images: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] -> [N, H, W] for the pictures (colour images: their mean over channels)."""
    return images.mean(dim=1) if images.shape[1] != 1 else images[:, 0]


def positive(key: str, value: int | None, allow_none: bool = False) -> None:
    """ConfigError unless `value` is a positive whole number (or None, where allowed)."""
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{key} must be a positive integer, got {value!r}.")
