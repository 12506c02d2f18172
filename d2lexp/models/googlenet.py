"""GoogLeNet (d2l ch. 8.4): Inception blocks, as the book trains it on 96x96 Fashion-MNIST."""

import torch
from torch import nn

from d2lexp.models.shapes import check_input_size


class Inception(nn.Module):
    """Four parallel paths concatenated on channels: 1x1; 1x1 -> 3x3; 1x1 -> 5x5; 3x3 max pool -> 1x1.

    `c2` and `c3` are (reduction, output) channel pairs; the output has c1 + c2[1] + c3[1] + c4 channels.
    """

    def __init__(
        self, in_channels: int, c1: int, c2: tuple[int, int], c3: tuple[int, int], c4: int, bias: bool = True
    ) -> None:
        super().__init__()
        self.p1 = nn.Sequential(nn.Conv2d(in_channels, c1, 1, bias=bias), nn.ReLU())
        self.p2 = nn.Sequential(
            nn.Conv2d(in_channels, c2[0], 1, bias=bias), nn.ReLU(),
            nn.Conv2d(c2[0], c2[1], 3, padding=1, bias=bias), nn.ReLU(),
        )  # fmt: skip
        self.p3 = nn.Sequential(
            nn.Conv2d(in_channels, c3[0], 1, bias=bias), nn.ReLU(),
            nn.Conv2d(c3[0], c3[1], 5, padding=2, bias=bias), nn.ReLU(),
        )  # fmt: skip
        self.p4 = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1), nn.Conv2d(in_channels, c4, 1, bias=bias), nn.ReLU()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.p1(x), self.p2(x), self.p3(x), self.p4(x)), dim=1)


class GoogLeNet(nn.Sequential):
    """Five stages (b1..b5) and a dense head; 5,977,530 parameters for one channel, 10 classes."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: int | None = 96) -> None:
        """`input_size`: the side of the square images it is built for (checked; None: not checked)."""
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
            Inception(192, 64, (96, 128), (16, 32), 32),
            Inception(256, 128, (128, 192), (32, 96), 64),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        b4 = nn.Sequential(
            Inception(480, 192, (96, 208), (16, 48), 64),
            Inception(512, 160, (112, 224), (24, 64), 64),
            Inception(512, 128, (128, 256), (24, 64), 64),
            Inception(512, 112, (144, 288), (32, 64), 64),
            Inception(528, 256, (160, 320), (32, 128), 128),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        b5 = nn.Sequential(
            Inception(832, 256, (160, 320), (32, 128), 128),
            Inception(832, 384, (192, 384), (48, 128), 128),
            nn.AdaptiveAvgPool2d((1, 1)),
            nn.Flatten(),
        )
        super().__init__(b1, b2, b3, b4, b5, nn.Linear(1024, num_classes))
        self.num_classes, self.input_size = num_classes, input_size
        if input_size is not None:
            check_input_size(
                lambda: GoogLeNet(in_channels, num_classes, None), (in_channels, input_size, input_size), "GoogLeNet"
            )
