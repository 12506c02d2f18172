"""DenseNet (d2l ch. 8.7): dense blocks concatenate every conv's output; transition blocks
halve channels and resolution. Trained on 96x96 inputs."""

import torch
from torch import nn

from d2lexp.models.registry import register_net
from d2lexp.models.shapes import check_input_size


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """BN -> ReLU -> 3x3 conv, the book's pre-activation unit."""
    return nn.Sequential(
        nn.BatchNorm2d(in_channels), nn.ReLU(), nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
    )


class DenseBlock(nn.Module):
    """`num_convs` conv blocks; each sees the concatenation of the input and all earlier outputs."""

    def __init__(self, num_convs: int, in_channels: int, growth_rate: int) -> None:
        super().__init__()
        self.net = nn.Sequential(*(conv_block(in_channels + i * growth_rate, growth_rate) for i in range(num_convs)))
        self.out_channels = in_channels + num_convs * growth_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.net:
            x = torch.cat((x, block(x)), dim=1)
        return x


class TransitionBlock(nn.Sequential):
    """BN -> ReLU -> 1x1 conv -> 2x2 average pool: fewer channels, half the resolution."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.BatchNorm2d(in_channels), nn.ReLU(),
            nn.Conv2d(in_channels, out_channels, kernel_size=1),
            nn.AvgPool2d(kernel_size=2, stride=2),
        )  # fmt: skip


@register_net
class DenseNet(nn.Sequential):
    """Stem, dense blocks separated by transitions that halve the channels, BN-ReLU-pool head.

    The book's configuration (64 stem channels, growth 32, four blocks of four convs) has
    758,226 parameters for one channel and 10 classes.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        stem_channels: int = 64,
        growth_rate: int = 32,
        convs_per_block: tuple[int, ...] = (4, 4, 4, 4),
        input_size: int | None = 96,
    ) -> None:
        """`input_size`: the side of the square images it is built for (checked; None: not checked)."""
        layers: list[nn.Module] = [
            nn.Sequential(
                nn.Conv2d(in_channels, stem_channels, kernel_size=7, stride=2, padding=3),
                nn.BatchNorm2d(stem_channels),
                nn.ReLU(),
                nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            )  # fmt: skip
        ]
        channels = stem_channels
        for i, num_convs in enumerate(convs_per_block):
            block = DenseBlock(num_convs, channels, growth_rate)
            layers.append(block)
            channels = block.out_channels
            if i != len(convs_per_block) - 1:
                layers.append(TransitionBlock(channels, channels // 2))
                channels //= 2
        layers += [
            nn.BatchNorm2d(channels), nn.ReLU(),
            nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(),
            nn.Linear(channels, num_classes),
        ]  # fmt: skip
        super().__init__(*layers)
        self.num_classes, self.input_size = num_classes, input_size
        if input_size is not None:
            check_input_size(
                lambda: DenseNet(in_channels, num_classes, stem_channels, growth_rate, convs_per_block, None),
                (in_channels, input_size, input_size), "DenseNet",
            )  # fmt: skip
