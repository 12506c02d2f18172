"""LeNet-5 as the book builds it (d2l ch. 7.6), and its batch-normalised variant (ch. 8.5)."""

from torch import nn

from d2lexp.models.registry import register_net


@register_net
class LeNet(nn.Sequential):
    """Two conv/pool stages and three dense layers; 61,706 parameters for 1x28x28 input, 10 classes."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10) -> None:
        super().__init__(
            nn.Conv2d(in_channels, 6, kernel_size=5, padding=2), nn.Sigmoid(),
            nn.AvgPool2d(kernel_size=2, stride=2),
            nn.Conv2d(6, 16, kernel_size=5), nn.Sigmoid(),
            nn.AvgPool2d(kernel_size=2, stride=2),
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120), nn.Sigmoid(),
            nn.Linear(120, 84), nn.Sigmoid(),
            nn.Linear(84, num_classes),
        )  # fmt: skip
        self.num_classes = num_classes


@register_net
class LeNetBN(nn.Sequential):
    """The book's LeNet with batch normalisation after every conv and dense layer but the last
    (no padding in the first conv, as in ch. 8.5); 44,878 parameters for 1x28x28, 10 classes."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10) -> None:
        super().__init__(
            nn.Conv2d(in_channels, 6, kernel_size=5), nn.BatchNorm2d(6), nn.Sigmoid(),
            nn.AvgPool2d(kernel_size=2, stride=2),
            nn.Conv2d(6, 16, kernel_size=5), nn.BatchNorm2d(16), nn.Sigmoid(),
            nn.AvgPool2d(kernel_size=2, stride=2),
            nn.Flatten(),
            nn.Linear(16 * 4 * 4, 120), nn.BatchNorm1d(120), nn.Sigmoid(),
            nn.Linear(120, 84), nn.BatchNorm1d(84), nn.Sigmoid(),
            nn.Linear(84, num_classes),
        )  # fmt: skip
        self.num_classes = num_classes
