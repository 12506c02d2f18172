"""Network in Network (d2l ch. 8.3): NiN blocks, global average pooling, no dense layers."""

from torch import nn

from d2lexp.models.registry import register_net
from d2lexp.models.shapes import check_input_size


class NiNBlock(nn.Sequential):
    """A convolution followed by two 1x1 convolutions (per-pixel MLPs), each with ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding), nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, kernel_size=1), nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, kernel_size=1), nn.ReLU(),
        )  # fmt: skip


@register_net
class NiN(nn.Sequential):
    """1,992,166 parameters for one input channel and 10 classes (at any resolution)."""

    def __init__(
        self, in_channels: int = 1, num_classes: int = 10, dropout: float = 0.5, input_size: int | None = 224
    ) -> None:
        """`input_size`: the side of the square images it is built for (checked; None: not checked)."""
        super().__init__(
            NiNBlock(in_channels, 96, kernel_size=11, stride=4, padding=0),
            nn.MaxPool2d(3, stride=2),
            NiNBlock(96, 256, kernel_size=5, stride=1, padding=2),
            nn.MaxPool2d(3, stride=2),
            NiNBlock(256, 384, kernel_size=3, stride=1, padding=1),
            nn.MaxPool2d(3, stride=2),
            nn.Dropout(dropout),
            NiNBlock(384, num_classes, kernel_size=3, stride=1, padding=1),  # one channel per class
            nn.AdaptiveAvgPool2d((1, 1)),
            nn.Flatten(),
        )
        self.num_classes, self.input_size = num_classes, input_size
        if input_size is not None:
            check_input_size(
                lambda: NiN(in_channels, num_classes, dropout, None), (in_channels, input_size, input_size), "NiN"
            )
