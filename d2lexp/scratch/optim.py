"""Minibatch stochastic gradient descent by hand (d2l ch. 3.2).

`param -= lr * grad` changes the tensor the model holds, in place; `param = param - lr * grad`
would only rebind a local name to a new tensor, and the model would never learn
(tests/scratch/test_optim.py shows both).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch


def sgd(params: Iterable[torch.Tensor], lr: float, batch_size: int) -> None:
    """The book's update for a loss summed over the minibatch: param -= lr * grad / batch_size."""
    with torch.no_grad():
        for param in params:
            param -= lr * param.grad / batch_size
            param.grad.zero_()


class SGD(torch.optim.Optimizer):
    """The same update as a `torch.optim.Optimizer`, so Lightning can drive it.

    For a loss averaged over the minibatch (as d2lexp's tasks compute it) the step is
    param -= lr * grad: the book's update with the division already done by the mean.
    """

    def __init__(self, params: Iterable[torch.Tensor], lr: float) -> None:
        if lr <= 0:
            raise ValueError(f"learning rate must be positive, got {lr}")
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    param -= group["lr"] * param.grad  # in place: the model's own tensor changes
        return loss
