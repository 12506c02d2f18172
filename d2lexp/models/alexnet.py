"""AlexNet as the book adapts it to Fashion-MNIST (d2l ch. 8.1): one input channel, inputs
resized to 224x224, ReLU, max pooling and dropout."""

from torch import nn

from d2lexp.models.registry import register_net
from d2lexp.models.shapes import output_numel


@register_net
class AlexNet(nn.Sequential):
    """Five conv layers, three dense; 46,764,746 parameters for 1x224x224 input, 10 classes.

    The first dense layer is sized for `input_size` (6,400 inputs at 224).
    """

    def __init__(
        self, in_channels: int = 1, num_classes: int = 10, input_size: int = 224, dropout: float = 0.5
    ) -> None:
        def features() -> list[nn.Module]:
            return [
                nn.Conv2d(in_channels, 96, kernel_size=11, stride=4, padding=1), nn.ReLU(),
                nn.MaxPool2d(kernel_size=3, stride=2),
                nn.Conv2d(96, 256, kernel_size=5, padding=2), nn.ReLU(),
                nn.MaxPool2d(kernel_size=3, stride=2),
                nn.Conv2d(256, 384, kernel_size=3, padding=1), nn.ReLU(),
                nn.Conv2d(384, 384, kernel_size=3, padding=1), nn.ReLU(),
                nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(),
                nn.MaxPool2d(kernel_size=3, stride=2),
                nn.Flatten(),
            ]  # fmt: skip

        flat = output_numel(lambda: nn.Sequential(*features()), (in_channels, input_size, input_size))
        super().__init__(
            *features(),
            nn.Linear(flat, 4096), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )  # fmt: skip
        self.num_classes, self.input_size = num_classes, input_size
