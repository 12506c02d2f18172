"""ResNet-18 (d2l ch. 8.6): residual blocks with batch normalisation, trained on 96x96 inputs."""

import torch
import torch.nn.functional as F
from torch import nn

from d2lexp.models.registry import register_net
from d2lexp.models.shapes import check_input_size


class Residual(nn.Module):
    """Two 3x3 conv + BN layers with a skip connection; a 1x1 conv matches shapes when asked."""

    def __init__(self, in_channels: int, out_channels: int, use_1x1conv: bool = False, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, stride=stride)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        self.conv3 = nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride) if use_1x1conv else None
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        if self.conv3 is not None:
            x = self.conv3(x)
        return F.relu(y + x)


def resnet_stage(in_channels: int, out_channels: int, num_residuals: int, first: bool = False) -> nn.Sequential:
    """`num_residuals` blocks; all but the first stage halve the resolution in their first block."""
    blocks = []
    for i in range(num_residuals):
        if i == 0 and not first:
            blocks.append(Residual(in_channels, out_channels, use_1x1conv=True, stride=2))
        else:
            blocks.append(Residual(out_channels, out_channels))
    return nn.Sequential(*blocks)


@register_net
class ResNet(nn.Sequential):
    """The book's ResNet: a 7x7 stem, four stages, global average pooling, a dense head.

    `stages` gives the number of residual blocks per stage ((2, 2, 2, 2) is ResNet-18:
    11,178,378 parameters for one channel and 10 classes). `width` is the channels of the stem
    and the first stage, doubled at each later one (the book's 64; narrower nets train faster).
    """

    def __init__(
        self,
        stages: tuple[int, ...] = (2, 2, 2, 2),
        in_channels: int = 1,
        num_classes: int = 10,
        input_size: int | None = 96,
        width: int = 64,
    ) -> None:
        """`input_size`: the side of the square images it is built for (checked; None: not checked)."""
        layers: list[nn.Module] = [
            nn.Sequential(
                nn.Conv2d(in_channels, width, kernel_size=7, stride=2, padding=3),
                nn.BatchNorm2d(width),
                nn.ReLU(),
                nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            )  # fmt: skip
        ]
        channels = width
        for i, num_residuals in enumerate(stages):
            out_channels = width * 2**i
            layers.append(resnet_stage(channels, out_channels, num_residuals, first=i == 0))
            channels = out_channels
        layers += [nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(channels, num_classes)]
        super().__init__(*layers)
        self.num_classes, self.input_size = num_classes, input_size
        if input_size is not None:
            check_input_size(
                lambda: ResNet(stages, in_channels, num_classes, None, width),
                (in_channels, input_size, input_size),
                "ResNet",
            )
