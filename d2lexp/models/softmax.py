"""Softmax regression (d2l ch. 4.5): one linear layer on flattened pixels.

The softmax itself lives in the loss (cross-entropy on logits), as in the book's
concise implementation, for numerical stability.
"""

from torch import nn

from d2lexp.models.registry import register_net


@register_net
class SoftmaxRegression(nn.Sequential):
    def __init__(self, num_inputs: int = 784, num_classes: int = 10) -> None:
        super().__init__(nn.Flatten(), nn.Linear(num_inputs, num_classes))
        self.num_classes = num_classes
