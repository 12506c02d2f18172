"""Linear regression with PyTorch's layer (d2l ch. 3.5)."""

import torch
from torch import nn

from d2lexp.models.registry import register_net


@register_net
class LinearRegression(nn.Module):
    """nn.Linear(num_inputs, 1); `get_w_b` exposes the fitted weights as the book's model does."""

    def __init__(self, num_inputs: int = 2) -> None:
        super().__init__()
        self.net = nn.Linear(num_inputs, 1)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.net(X)

    def get_w_b(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net.weight.detach().flatten(), self.net.bias.detach()
