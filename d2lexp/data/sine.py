"""A noisy sine wave as a time series (d2l ch. 9.1): predict x_t from the tau values before it."""

from __future__ import annotations

import torch

from d2lexp.data.base import DataModule, TimeSeries
from d2lexp.data.loader import TensorBatchLoader, seeded_generator
from d2lexp.errors import ConfigError


class SineDataModule(DataModule):
    """x_t = sin(0.01 t) + N(0, noise^2), t = 1..T; features are windows (x_{t-tau}, ..., x_{t-1}),
    labels x_t. The first `num_train` windows train (shuffled), the rest validate.

    `time_series` lets a callback draw one-step, multi-step and k-step predictions against the data.
    """

    def __init__(
        self, T: int = 1000, tau: int = 4, noise: float = 0.2, num_train: int = 600, batch_size: int = 16, seed: int = 0
    ) -> None:
        super().__init__()
        if not 0 < tau < T or not 0 < num_train < T - tau:
            raise ConfigError(
                f"need 0 < data.tau < data.T and 0 < data.num_train < T - tau; got T={T}, tau={tau}, num_train={num_train}."
            )
        if batch_size <= 0:
            raise ConfigError(f"data.batch_size must be a positive integer, got {batch_size!r}.")
        self.T, self.tau, self.noise, self.num_train, self.batch_size, self.seed = (
            T,
            tau,
            noise,
            num_train,
            batch_size,
            seed,
        )
        self.time = torch.arange(1, T + 1, dtype=torch.float32)
        generator = seeded_generator(seed, 3)
        self.series = torch.sin(0.01 * self.time) + torch.normal(0.0, noise, (T,), generator=generator)
        # features[i] = series[i : i + tau], labels[i] = series[i + tau]
        self.features = torch.stack([self.series[i : T - tau + i] for i in range(tau)], dim=1)
        self.labels = self.series[tau:].reshape(-1, 1)
        self.time_series = TimeSeries(self.time, self.series, self.features, tau, num_train)

    def train_dataloader(self) -> TensorBatchLoader:
        split = (self.features[: self.num_train], self.labels[: self.num_train])
        return TensorBatchLoader(split, self.batch_size, shuffle=True, seed=self.seed)

    def val_dataloader(self) -> TensorBatchLoader:
        return TensorBatchLoader((self.features[self.num_train :], self.labels[self.num_train :]), 256)

    def test_dataloader(self) -> TensorBatchLoader:
        return self.val_dataloader()

    def example_input(self) -> torch.Tensor:
        return torch.zeros(1, self.tau)
