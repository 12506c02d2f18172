"""What d2lexp's data modules declare to the tasks and callbacks that use them.

Every data module is a `DataModule`: it gives `example_input()`, and says what else it has in
typed attributes that are None (or False) where it has nothing of the kind. A task or callback
reads these; it never probes for attributes by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import lightning.pytorch as pl
import torch

if TYPE_CHECKING:
    from d2lexp.data.text import Vocab


@dataclass(frozen=True)
class TrueParameters:
    """The parameters synthetic data was made with, for a task to report how close a fit came."""

    w: torch.Tensor
    b: float | None = None


@dataclass(frozen=True)
class TimeSeries:
    """A series the windows are cut from (d2l ch. 9.1): x_t at `time`, its windows of `tau` values
    (`features`), and how many windows train."""

    time: torch.Tensor
    values: torch.Tensor
    features: torch.Tensor
    tau: int
    num_train: int


class DataModule(pl.LightningDataModule):
    """A Lightning data module with d2lexp's declared capabilities."""

    # Whether it can augment its training images (d2lexp.data.augment): image data sets can.
    augmentable: bool = False
    # What a batch's items are, for throughput: "examples" (its first dimension) or "tokens" (every element).
    item_unit: str = "examples"
    # What a batch's targets are: "labels" (a class per example), "boxes" ([K, 5] rows of class and
    # corners per image, -1 rows padding: detection), "masks" (a class per pixel: segmentation); None: other.
    target_kind: str | None = None
    # Classification: how many classes the labels hold, and their names (detection: the objects'
    # classes, background not counted; segmentation: the pixels', background first).
    num_classes: int | None = None
    class_names: tuple[str, ...] | None = None
    # Classification: whether training batches carry class probabilities [B, classes] (mixup, cutmix), not labels.
    soft_targets: bool = False
    # Language modelling: the vocabulary, and whether a minibatch continues the one before it.
    vocab: Vocab | None = None
    sequential: bool = False
    # Synthetic regression: the parameters the data was made with.
    true_parameters: TrueParameters | None = None
    # Time series: the whole series, for drawing predictions against it.
    time_series: TimeSeries | None = None

    def example_input(self) -> torch.Tensor:
        """One input as a loader yields it (before `on_after_batch_transfer`), for the model
        summary, MACs and shape checks; no data is read to make it."""
        raise NotImplementedError

    def model_input(self) -> torch.Tensor:
        """One input as the model receives it: `example_input` after the device-side transform."""
        return self.on_after_batch_transfer(self.example_input(), 0)

    def augmented_samples(self, n: int) -> tuple[torch.Tensor, list[str]] | None:
        """One training image under `n` draws of the data's augmentation [n, H, W], and titles; None
        where the data is not augmented."""
        return None

    def train_examples(self) -> int | None:
        """How many training examples an epoch has, known without reading the data (a sweep's
        launcher weighs jobs by it); None where it is not known."""
        return None

    def sample_images(self, n: int) -> tuple[torch.Tensor, list[str]] | None:
        """The first `n` training images as floats [n, H, W] in [0, 1] and their labels, if any."""
        return None

    def data_device(self, on_device: bool | str = "auto") -> torch.device:
        """Where to keep the data's tensors: the accelerator the trainer runs on (`on_device`
        "auto": a GPU or MPS device; True: any device), else the CPU. A whole split held on the
        GPU (as uint8) makes every batch a gather there: no host-to-device copy per step."""
        if self.trainer is None or not on_device:
            return torch.device("cpu")
        device = self.trainer.strategy.root_device
        return device if (on_device is True or device.type in ("cuda", "mps")) else torch.device("cpu")
