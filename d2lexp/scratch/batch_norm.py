"""Batch normalisation by hand (d2l ch. 8.5), with running statistics."""

from __future__ import annotations

import torch
from torch import nn


def batch_norm(
    X: torch.Tensor,
    gamma: torch.Tensor,
    beta: torch.Tensor,
    moving_mean: torch.Tensor,
    moving_var: torch.Tensor,
    eps: float,
    momentum: float,
    training: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Normalise by the minibatch's statistics in training, by the running ones in evaluation.

    Returns (Y, new moving_mean, new moving_var). The running variance is updated with the
    unbiased minibatch variance, as PyTorch's BatchNorm does (the book uses the biased one);
    the normalisation itself uses the biased variance in both.
    """
    if not training:
        X_hat = (X - moving_mean) / torch.sqrt(moving_var + eps)
    else:
        dims = (0,) if X.dim() == 2 else (0, 2, 3)
        mean = X.mean(dim=dims, keepdim=True)
        var = ((X - mean) ** 2).mean(dim=dims, keepdim=True)
        X_hat = (X - mean) / torch.sqrt(var + eps)
        n = X.numel() / X.shape[1]
        with torch.no_grad():
            moving_mean = (1.0 - momentum) * moving_mean + momentum * mean
            moving_var = (1.0 - momentum) * moving_var + momentum * var * n / max(n - 1, 1)
    Y = gamma * X_hat + beta
    return Y, moving_mean, moving_var


class BatchNorm(nn.Module):
    """A batch-norm layer for dense (num_dims=2: (N, C)) or conv (num_dims=4: (N, C, H, W)) outputs.

    gamma and beta are learned; the running mean and variance are buffers, so they are
    saved in checkpoints and follow the module to its device.
    """

    def __init__(self, num_features: int, num_dims: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        if num_dims not in (2, 4):
            raise ValueError(f"num_dims must be 2 (dense) or 4 (conv), got {num_dims}")
        shape = (1, num_features) if num_dims == 2 else (1, num_features, 1, 1)
        self.num_features, self.num_dims, self.eps, self.momentum = num_features, num_dims, eps, momentum
        self.gamma = nn.Parameter(torch.ones(shape))
        self.beta = nn.Parameter(torch.zeros(shape))
        self.register_buffer("moving_mean", torch.zeros(shape))
        self.register_buffer("moving_var", torch.ones(shape))

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        if X.dim() != self.num_dims or X.shape[1] != self.num_features:
            expected = "(N, C)" if self.num_dims == 2 else "(N, C, H, W)"
            raise ValueError(
                f"BatchNorm({self.num_features}, num_dims={self.num_dims}) expects input {expected} with "
                f"C={self.num_features}; got input of shape {tuple(X.shape)}"
            )
        Y, self.moving_mean, self.moving_var = batch_norm(
            X, self.gamma, self.beta, self.moving_mean, self.moving_var, self.eps, self.momentum, self.training
        )
        return Y
