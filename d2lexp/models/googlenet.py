"""GoogLeNet (d2l ch. 8.4): Inception blocks, as the book trains it on 96x96 Fashion-MNIST, and
Inception-V3's factorised convolutions of those blocks (`inception="v3"`)."""

import torch
from torch import nn

from d2lexp.models.registry import register_net
from d2lexp.models.shapes import check_input_size

# What a k x k convolution of an Inception block may be replaced by (Inception-V3, Szegedy et al.
# 2016): a 5x5 by two 3x3, or by a 1x7 and a 7x1; a 3x3 by a 1x3 and a 3x1. The first of a pair
# keeps the replaced layer's input channels, the second its output channels, and the width between
# them is the output's (as torchvision's Inception-V3 does).
FACTORISATIONS = {
    "3x3": [(3, 3)], "5x5": [(5, 5)], "7x7": [(7, 7)],
    "3x3+3x3": [(3, 3), (3, 3)], "1x7+7x1": [(1, 7), (7, 1)], "1x3+3x1": [(1, 3), (3, 1)],
}  # fmt: skip

# The blocks of GoogLeNet: v1 as the book builds it; v3 with its 5x5 as two 3x3 and its 3x3 as 1x3, 3x1.
INCEPTION = {"v1": {"three": "3x3", "five": "5x5"}, "v3": {"three": "1x3+3x1", "five": "3x3+3x3"}}


def spatial_conv(in_channels: int, out_channels: int, kernel: str, bias: bool = True) -> list[nn.Module]:
    """A k x k convolution ("5x5"), or its factorisation ("3x3+3x3": two, with a ReLU between),
    keeping the spatial size (padding k // 2 along each side)."""
    if kernel not in FACTORISATIONS:
        raise ValueError(f"kernel must be one of {sorted(FACTORISATIONS)}, got {kernel!r}")
    layers: list[nn.Module] = []
    for i, (h, w) in enumerate(FACTORISATIONS[kernel]):
        if i:
            layers.append(nn.ReLU())
        layers.append(
            nn.Conv2d(
                in_channels if i == 0 else out_channels, out_channels, (h, w), padding=(h // 2, w // 2), bias=bias
            )
        )
    return layers


class Inception(nn.Module):
    """Four parallel paths concatenated on channels: 1x1; 1x1 -> 3x3; 1x1 -> 5x5; 3x3 max pool -> 1x1.

    `c2` and `c3` are (reduction, output) channel pairs; the output has c1 + c2[1] + c3[1] + c4 channels.
    `three` and `five`: the 3x3 and the 5x5 convolution, or a factorisation of each (FACTORISATIONS).
    """

    def __init__(
        self, in_channels: int, c1: int, c2: tuple[int, int], c3: tuple[int, int], c4: int, bias: bool = True,
        three: str = "3x3", five: str = "5x5",
    ) -> None:  # fmt: skip
        super().__init__()
        self.p1 = nn.Sequential(nn.Conv2d(in_channels, c1, 1, bias=bias), nn.ReLU())
        self.p2 = nn.Sequential(
            nn.Conv2d(in_channels, c2[0], 1, bias=bias), nn.ReLU(), *spatial_conv(c2[0], c2[1], three, bias), nn.ReLU()
        )
        self.p3 = nn.Sequential(
            nn.Conv2d(in_channels, c3[0], 1, bias=bias), nn.ReLU(), *spatial_conv(c3[0], c3[1], five, bias), nn.ReLU()
        )
        self.p4 = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1), nn.Conv2d(in_channels, c4, 1, bias=bias), nn.ReLU()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.p1(x), self.p2(x), self.p3(x), self.p4(x)), dim=1)


@register_net
class GoogLeNet(nn.Sequential):
    """Five stages (b1..b5) and a dense head; 5,977,530 parameters for one channel, 10 classes."""

    def __init__(
        self, in_channels: int = 1, num_classes: int = 10, input_size: int | None = 96, inception: str = "v1"
    ) -> None:
        """`input_size`: the side of the square images it is built for (checked; None: not checked).
        `inception`: the blocks' convolutions, "v1" (the book's) or "v3" (factorised: INCEPTION)."""
        if inception not in INCEPTION:
            raise ValueError(f"inception must be one of {sorted(INCEPTION)}, got {inception!r}")

        def block(*channels) -> Inception:
            return Inception(*channels, **INCEPTION[inception])

        b1 = nn.Sequential(
            nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3), nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )  # fmt: skip
        b2 = nn.Sequential(
            nn.Conv2d(64, 64, kernel_size=1), nn.ReLU(),
            nn.Conv2d(64, 192, kernel_size=3, padding=1), nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )  # fmt: skip
        b3 = nn.Sequential(
            block(192, 64, (96, 128), (16, 32), 32),
            block(256, 128, (128, 192), (32, 96), 64),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        b4 = nn.Sequential(
            block(480, 192, (96, 208), (16, 48), 64),
            block(512, 160, (112, 224), (24, 64), 64),
            block(512, 128, (128, 256), (24, 64), 64),
            block(512, 112, (144, 288), (32, 64), 64),
            block(528, 256, (160, 320), (32, 128), 128),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        b5 = nn.Sequential(
            block(832, 256, (160, 320), (32, 128), 128),
            block(832, 384, (192, 384), (48, 128), 128),
            nn.AdaptiveAvgPool2d((1, 1)),
            nn.Flatten(),
        )
        super().__init__(b1, b2, b3, b4, b5, nn.Linear(1024, num_classes))
        self.num_classes, self.input_size = num_classes, input_size
        if input_size is not None:
            check_input_size(
                lambda: GoogLeNet(in_channels, num_classes, None, inception),
                (in_channels, input_size, input_size),
                "GoogLeNet",
            )
