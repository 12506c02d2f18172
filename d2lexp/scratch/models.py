"""Networks built only from the hand-written pieces, to train beside their framework twins."""

from __future__ import annotations

import math

import torch
from torch import nn

from d2lexp.models.registry import register_net
from d2lexp.scratch.batch_norm import BatchNorm
from d2lexp.scratch.classification import softmax
from d2lexp.scratch.conv import Conv2D, Pool2D
from d2lexp.scratch.linear_regression import linreg
from d2lexp.scratch.mlp import dropout_layer, relu


@register_net
class LinearRegressionScratch(nn.Module):
    """linreg(X, w, b) with w ~ N(0, sigma^2), b = 0 (d2l ch. 3.4)."""

    def __init__(self, num_inputs: int = 2, sigma: float = 0.01) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.normal(0, sigma, (num_inputs, 1)))
        self.b = nn.Parameter(torch.zeros(1))

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return linreg(X, self.w, self.b)

    def get_w_b(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.w.detach().flatten(), self.b.detach()


class Linear(nn.Module):
    """A dense layer built on `linreg`: weight (in, out), Xavier-uniform; bias zero."""

    def __init__(self, num_inputs: int, num_outputs: int) -> None:
        super().__init__()
        bound = math.sqrt(6.0 / (num_inputs + num_outputs))
        self.weight = nn.Parameter(torch.empty(num_inputs, num_outputs).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(num_outputs))

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return linreg(X, self.weight, self.bias)


@register_net
class SoftmaxRegressionScratch(nn.Module):
    """softmax(XW + b) on flattened images (d2l ch. 4.4): it outputs probabilities, to be
    paired with the hand-written `cross_entropy`."""

    def __init__(self, num_inputs: int = 784, num_classes: int = 10, sigma: float = 0.01) -> None:
        super().__init__()
        self.num_inputs, self.num_classes = num_inputs, num_classes
        self.W = nn.Parameter(torch.normal(0, sigma, size=(num_inputs, num_classes)))
        self.b = nn.Parameter(torch.zeros(num_classes))

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return softmax(linreg(X.reshape((-1, self.num_inputs)), self.W, self.b))


@register_net
class MLPScratch(nn.Module):
    """One hidden ReLU layer by hand (d2l ch. 5.2), optional dropout (ch. 5.6); outputs logits."""

    def __init__(
        self,
        num_inputs: int = 784,
        num_hiddens: int = 256,
        num_classes: int = 10,
        sigma: float = 0.01,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_inputs, self.num_classes, self.dropout = num_inputs, num_classes, dropout
        self.W1 = nn.Parameter(torch.randn(num_inputs, num_hiddens) * sigma)
        self.b1 = nn.Parameter(torch.zeros(num_hiddens))
        self.W2 = nn.Parameter(torch.randn(num_hiddens, num_classes) * sigma)
        self.b2 = nn.Parameter(torch.zeros(num_classes))

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        H = relu(linreg(X.reshape((-1, self.num_inputs)), self.W1, self.b1))
        if self.training and self.dropout > 0:
            H = dropout_layer(H, self.dropout)
        return linreg(H, self.W2, self.b2)


@register_net
class LeNetBNScratch(nn.Sequential):
    """The book's batch-normalised LeNet (ch. 8.5) with hand-written conv, pooling, batch
    norm and dense layers; the same shapes and 44,878 parameters as `LeNetBN`."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10) -> None:
        super().__init__(
            Conv2D(in_channels, 6, kernel_size=5), BatchNorm(6, num_dims=4), nn.Sigmoid(),
            Pool2D(2, stride=2, mode="avg"),
            Conv2D(6, 16, kernel_size=5), BatchNorm(16, num_dims=4), nn.Sigmoid(),
            Pool2D(2, stride=2, mode="avg"),
            nn.Flatten(),
            Linear(16 * 4 * 4, 120), BatchNorm(120, num_dims=2), nn.Sigmoid(),
            Linear(120, 84), BatchNorm(84, num_dims=2), nn.Sigmoid(),
            Linear(84, num_classes),
        )  # fmt: skip
        self.num_classes = num_classes
