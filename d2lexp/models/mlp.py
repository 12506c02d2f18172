"""The multilayer perceptron of d2l ch. 5.2: 784-256-10 with ReLU."""

from torch import nn

from d2lexp.models.registry import register_net


@register_net
class MLP(nn.Sequential):
    def __init__(
        self,
        num_inputs: int = 784,
        num_hiddens: int = 256,
        num_classes: int = 10,
        dropout: float = 0.0,
    ) -> None:
        layers: list[nn.Module] = [nn.Flatten(), nn.Linear(num_inputs, num_hiddens), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(num_hiddens, num_classes))
        super().__init__(*layers)
        self.num_classes = num_classes
