"""Linear regression by hand (d2l ch. 3.2): data, model, loss."""

from __future__ import annotations

from collections.abc import Iterator

import torch


def synthetic_data(
    w: torch.Tensor, b: float, num_examples: int, noise: float = 0.01, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """y = Xw + b + noise, with X ~ N(0, 1) and noise ~ N(0, noise^2); y has shape (n, 1)."""
    X = torch.normal(0, 1, (num_examples, len(w)), generator=generator)
    y = torch.matmul(X, w) + b
    y += torch.normal(0, noise, y.shape, generator=generator)
    return X, y.reshape((-1, 1))


def data_iter(
    batch_size: int, features: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled minibatches, the book's way: a random permutation, then consecutive slices of it."""
    num_examples = len(features)
    indices = torch.randperm(num_examples, generator=generator)
    for i in range(0, num_examples, batch_size):
        batch_indices = indices[i : i + batch_size]
        yield features[batch_indices], labels[batch_indices]


def linreg(X: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The linear model Xw + b."""
    return torch.matmul(X, w) + b


def squared_loss(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(y_hat - y)^2 / 2 per example; the 1/2 makes the gradient y_hat - y."""
    return (y_hat - y.reshape(y_hat.shape)) ** 2 / 2
