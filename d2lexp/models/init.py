"""Weight initialisation schemes, each a function to pass to `net.apply` (d2l ch. 6.3).

Each factory returns `init(module)`, which touches the weights of linear and
convolutional layers and leaves everything else (biases included, unless asked)
at PyTorch's defaults, as the book's `init_weights` functions do. A layer of one's own
counts as linear or convolutional when its `weight` parameter has two or more
dimensions (normalisation layers' weights have one). A layer whose starting weights are part
of the architecture (an FCN's bilinear upsampling) sets `fixed_init = True` and is left alone.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

Init = Callable[[nn.Module], None]


def _weighted(module: nn.Module) -> bool:
    weight = getattr(module, "weight", None)
    return (
        isinstance(weight, nn.Parameter)
        and weight.dim() >= 2
        and not isinstance(module, (nn.modules.lazy.LazyModuleMixin, nn.Embedding))
        and not getattr(module, "fixed_init", False)
    )


def normal(std: float = 0.01, mean: float = 0.0, zero_bias: bool = False) -> Init:
    """Weights ~ N(mean, std^2): the book's softmax regression and MLP use std 0.01."""

    def init(module: nn.Module) -> None:
        if _weighted(module):
            nn.init.normal_(module.weight, mean=mean, std=std)
            if zero_bias and getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

    return init


def xavier_uniform(gain: float = 1.0) -> Init:
    """Xavier/Glorot uniform weights: the book's `train_ch6` and `init_cnn`."""

    def init(module: nn.Module) -> None:
        if _weighted(module):
            nn.init.xavier_uniform_(module.weight, gain=gain)

    return init


def constant(value: float = 1.0, bias: float = 0.0) -> Init:
    """Every weight `value`, every bias `bias` (the book's `init_constant`; a lesson in symmetry)."""

    def init(module: nn.Module) -> None:
        if _weighted(module):
            nn.init.constant_(module.weight, value)
            if getattr(module, "bias", None) is not None:
                nn.init.constant_(module.bias, bias)

    return init


def d2l_custom(low: float = -10.0, high: float = 10.0, threshold: float = 5.0) -> Init:
    """The book's custom init: U(low, high), then zero every weight with |w| < threshold."""

    def init(module: nn.Module) -> None:
        if _weighted(module):
            with torch.no_grad():
                nn.init.uniform_(module.weight, low, high)
                module.weight.mul_(module.weight.abs() >= threshold)

    return init


def pytorch_default() -> Init:
    """Keep PyTorch's own initialisation (Kaiming-uniform weights for linear and conv layers)."""

    def init(module: nn.Module) -> None:
        return None

    return init
