"""Synthetic data the book makes up: a noisy linear function (ch. 3) and an image with
known vertical edges (ch. 7.2). The true parameters are known, so a task can report how
close the learned ones come."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from d2lexp.data.base import DataModule, TrueParameters
from d2lexp.data.loader import EpochSampler, ResumableLoader, TensorBatchLoader, epoch_generator, seeded_generator
from d2lexp.errors import ConfigError
from d2lexp.scratch.conv import corr2d
from d2lexp.scratch.linear_regression import data_iter, synthetic_data


class ScratchDataIter(ResumableLoader):
    """The book's hand-written `data_iter` as a loader: a fresh shuffle each epoch, seeded by
    (seed, epoch) through the same `sampler.set_epoch` hook Lightning calls on every loader."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor, batch_size: int, seed: int) -> None:
        super().__init__(EpochSampler(len(labels), shuffle=True, seed=seed))
        self.features, self.labels, self.batch_size = features, labels, batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.labels) / self.batch_size)

    def _batches(self, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = epoch_generator(self.sampler.seed, self.sampler.epoch)
        return itertools.islice(
            data_iter(self.batch_size, self.features, self.labels, generator=generator), start, None
        )


class SyntheticRegressionDataModule(DataModule):
    """y = Xw + b + noise (d2l ch. 3.1): `num_train` examples to fit and `num_val` fresh ones
    to validate on, from a generator seeded by `seed`.

    `loader="scratch"` batches with the book's hand-written `data_iter`; `"tensor"` with
    d2lexp's `TensorBatchLoader`. Both shuffle each epoch by (seed, epoch).
    """

    def __init__(
        self,
        w: Sequence[float] = (2.0, -3.4),
        b: float = 4.2,
        num_train: int = 1000,
        num_val: int = 1000,
        noise: float = 0.01,
        batch_size: int = 10,
        loader: str = "tensor",
        seed: int = 0,
    ) -> None:
        super().__init__()
        for key, value in (("data.num_train", num_train), ("data.batch_size", batch_size)):
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{key} must be a positive integer, got {value!r}.")
        if loader not in ("tensor", "scratch"):
            raise ConfigError(f"data.loader must be 'tensor' or 'scratch', got {loader!r}.")
        self.true_parameters = TrueParameters(torch.tensor(list(w), dtype=torch.float32), float(b))
        self.num_train, self.num_val, self.noise = num_train, num_val, noise
        self.batch_size, self.loader, self.seed = batch_size, loader, seed
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        X, y = synthetic_data(
            self.true_parameters.w,
            self.true_parameters.b,
            self.num_train + self.num_val,
            self.noise,
            generator=seeded_generator(self.seed, 2),
        )
        self.splits["train"] = (X[: self.num_train], y[: self.num_train])
        self.splits["val"] = (X[self.num_train :], y[self.num_train :]) if self.num_val else self.splits["train"]

    def train_dataloader(self) -> Any:
        features, labels = self.splits["train"]
        if self.loader == "scratch":
            return ScratchDataIter(features, labels, self.batch_size, self.seed)
        return TensorBatchLoader((features, labels), self.batch_size, shuffle=True, seed=self.seed)

    def val_dataloader(self) -> TensorBatchLoader:
        return TensorBatchLoader(self.splits["val"], max(self.batch_size, 1000))

    def test_dataloader(self) -> TensorBatchLoader:
        return self.val_dataloader()

    def example_input(self) -> torch.Tensor:
        return torch.zeros(1, len(self.true_parameters.w))


def edge_image(height: int = 6, width: int = 8) -> torch.Tensor:
    """The book's image: ones with a black vertical stripe (columns 2..5 set to zero)."""
    X = torch.ones((height, width))
    X[:, 2:6] = 0
    return X


class EdgeDetectionDataModule(DataModule):
    """One image and its vertical-edge map, Y = corr2d(X, [[1, -1]]) (d2l ch. 7.2): learning
    a 1x2 kernel from them should find [1, -1] again (`true_parameters`)."""

    def __init__(self, kernel: Sequence[float] = (1.0, -1.0), height: int = 6, width: int = 8) -> None:
        super().__init__()
        kernel = torch.tensor(list(kernel), dtype=torch.float32)
        self.true_parameters = TrueParameters(kernel)
        X = edge_image(height, width)
        Y = corr2d(X, kernel.reshape(1, -1))
        self.example = (X.reshape(1, 1, height, width), Y.reshape(1, 1, height, width - len(kernel) + 1))

    def train_dataloader(self) -> TensorBatchLoader:
        return TensorBatchLoader(self.example, batch_size=1)

    def val_dataloader(self) -> TensorBatchLoader:
        return TensorBatchLoader(self.example, batch_size=1)

    def test_dataloader(self) -> TensorBatchLoader:
        return self.val_dataloader()

    def example_input(self) -> torch.Tensor:
        return self.example[0]
