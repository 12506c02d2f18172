"""The autoregressive MLP of d2l ch. 9.1: x_t from the tau values before it."""

from torch import nn

from d2lexp.models.registry import register_net


@register_net
class AutoregressiveMLP(nn.Sequential):
    """tau -> num_hiddens -> 1 with ReLU."""

    def __init__(self, tau: int = 4, num_hiddens: int = 10) -> None:
        super().__init__(nn.Linear(tau, num_hiddens), nn.ReLU(), nn.Linear(num_hiddens, 1))
        self.tau = tau
