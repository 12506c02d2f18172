"""Softmax, cross-entropy and accuracy by hand (d2l ch. 4.4)."""

from __future__ import annotations

import torch


def softmax(X: torch.Tensor) -> torch.Tensor:
    """Row-wise exp(X) / sum(exp(X)).

    As in the book, without subtracting the row maximum first: fine for the moderate
    scores of these models, but exp overflows above ~88 in float32. The framework's
    cross-entropy on logits (log-sum-exp) is the stable way; ch. 4.5 explains why.
    """
    X_exp = torch.exp(X)
    partition = X_exp.sum(1, keepdim=True)
    return X_exp / partition


def cross_entropy(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """-log of the probability `y_hat` gives the true class, per example (y_hat: probabilities)."""
    return -torch.log(y_hat[range(len(y_hat)), y])


def accuracy(y_hat: torch.Tensor, y: torch.Tensor) -> float:
    """The number of correct predictions (the book counts; divide by len(y) for a rate)."""
    if len(y_hat.shape) > 1 and y_hat.shape[1] > 1:
        y_hat = y_hat.argmax(axis=1)
    cmp = y_hat.type(y.dtype) == y
    return float(cmp.type(y.dtype).sum())


class Accumulator:
    """Sums over n variables, e.g. (loss, correct, count) over an epoch."""

    def __init__(self, n: int) -> None:
        self.data = [0.0] * n

    def add(self, *args: float) -> None:
        self.data = [a + float(b) for a, b in zip(self.data, args)]

    def reset(self) -> None:
        self.data = [0.0] * len(self.data)

    def __getitem__(self, idx: int) -> float:
        return self.data[idx]
