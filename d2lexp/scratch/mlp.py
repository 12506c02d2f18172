"""The activation and the regulariser of the book's MLPs, by hand (d2l ch. 5.1, 5.6)."""

from __future__ import annotations

import torch


def relu(X: torch.Tensor) -> torch.Tensor:
    """max(X, 0), element-wise."""
    a = torch.zeros_like(X)
    return torch.max(X, a)


def dropout_layer(X: torch.Tensor, dropout: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero each element with probability `dropout`, scale the survivors by 1 / (1 - dropout)
    so the expectation is unchanged."""
    if not 0 <= dropout <= 1:
        raise ValueError(f"dropout must be in [0, 1], got {dropout}")
    if dropout == 1:
        return torch.zeros_like(X)
    mask = (torch.rand(X.shape, generator=generator, device=X.device) > dropout).float()
    return mask * X / (1.0 - dropout)
