"""The deep-learning-computation toolkit (d2l ch. 6): custom blocks, custom layers, tied parameters.

Each is a real module: `model=mlp_custom` and `model=tied_mlp` train through the pipeline.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from d2lexp.models.registry import register_net


class MySequential(nn.Module):
    """A hand-made nn.Sequential: children are registered in order and called in order."""

    def __init__(self, *modules: nn.Module) -> None:
        super().__init__()
        for idx, module in enumerate(modules):
            self.add_module(str(idx), module)  # registered: parameters, .to(), state_dict see it

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        for module in self.children():
            X = module(X)
        return X

    def __getitem__(self, idx: int) -> nn.Module:
        return list(self.children())[idx]

    def __len__(self) -> int:
        return len(self._modules)


class CenteredLayer(nn.Module):
    """A layer without parameters: subtracts the mean."""

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return X - X.mean()


class MyLinear(nn.Module):
    """A layer with parameters: X @ weight + bias, weight (in_units, units) ~ N(0, std^2).

    Unlike the book's demo it leaves out the ReLU and reads the parameters themselves
    (not `.data`), so gradients reach them and it can be trained.
    """

    def __init__(self, in_units: int, units: int, std: float = 0.01) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(in_units, units) * std)
        self.bias = nn.Parameter(torch.zeros(units))

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return torch.matmul(X, self.weight) + self.bias


class FixedHiddenMLP(nn.Module):
    """A block with its own forward: a constant (untrained) weight, a reused layer, and Python
    control flow (d2l ch. 6.1)."""

    def __init__(self, num_inputs: int = 20, num_hiddens: int = 20) -> None:
        super().__init__()
        self.register_buffer("rand_weight", torch.rand(num_hiddens, num_hiddens))  # constant: not a Parameter
        self.inp = nn.Linear(num_inputs, num_hiddens)
        self.linear = nn.Linear(num_hiddens, num_hiddens)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        X = self.linear(self.inp(X))
        X = F.relu(X @ self.rand_weight + 1)
        X = self.linear(X)  # the same layer again: its parameters are shared
        while X.abs().sum() > 1:
            X /= 2
        return X.sum()


@register_net
def mlp_custom(num_inputs: int = 784, num_hiddens: int = 256, num_classes: int = 10) -> MySequential:
    """The book's MLP assembled from the custom pieces: MySequential of MyLinear layers."""
    net = MySequential(nn.Flatten(), MyLinear(num_inputs, num_hiddens), nn.ReLU(), MyLinear(num_hiddens, num_classes))
    net.num_classes = num_classes
    return net


@register_net
class TiedMLP(nn.Sequential):
    """An MLP whose two middle layers are one layer used twice (d2l ch. 6.2): one weight
    tensor, and its gradient is the sum of both uses' gradients."""

    def __init__(self, num_inputs: int = 784, num_hiddens: int = 256, num_classes: int = 10) -> None:
        shared = nn.Linear(num_hiddens, num_hiddens)
        super().__init__(
            nn.Flatten(), nn.Linear(num_inputs, num_hiddens), nn.ReLU(),
            shared, nn.ReLU(),
            shared, nn.ReLU(),
            nn.Linear(num_hiddens, num_classes),
        )  # fmt: skip
        self.num_classes = num_classes
