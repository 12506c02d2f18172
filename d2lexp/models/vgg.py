"""VGG: networks built from an architecture given as data (d2l ch. 8.2).

`arch` lists the blocks as (number of 3x3 convs, output channels); each block ends in a
2x2 max pool. The presets below are the classic VGG-11/13/16/19; the book trains VGG-11
with every conv width divided by 4 (`VGG11_NARROW`).
"""

from collections.abc import Sequence

from torch import nn

from d2lexp.models.registry import register_net
from d2lexp.models.shapes import output_numel

VGG11 = ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512))
VGG13 = ((2, 64), (2, 128), (2, 256), (2, 512), (2, 512))
VGG16 = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))
VGG19 = ((2, 64), (2, 128), (4, 256), (4, 512), (4, 512))
VGG11_NARROW = tuple((convs, channels // 4) for convs, channels in VGG11)


class VGGBlock(nn.Sequential):
    """`num_convs` 3x3 convolutions with ReLU, then a 2x2 max pool (the book's `vgg_block`);
    with `batch_norm`, each convolution is batch-normalised before its ReLU (and has no bias,
    which the normalisation would cancel).

    `pool_first` pools right after the first convolution instead, before its normalisation
    (airbench's order): the block's other convolutions, its normalisations and ReLUs run at a
    quarter of the pixels (at 28x28: 0.43 of the MACs, 2.5x the training rate on a 2-core CPU)."""

    def __init__(
        self, num_convs: int, in_channels: int, out_channels: int, batch_norm: bool = False, pool_first: bool = False
    ) -> None:
        layers: list[nn.Module] = []
        for i in range(num_convs):
            channels = in_channels if i == 0 else out_channels
            layers.append(nn.Conv2d(channels, out_channels, 3, padding=1, bias=not batch_norm))
            if pool_first and i == 0:
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            layers += [nn.BatchNorm2d(out_channels), nn.ReLU()] if batch_norm else [nn.ReLU()]
        if not pool_first:
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        super().__init__(*layers)


@register_net
class VGG(nn.Sequential):
    """VGG blocks, then three dense layers with dropout; VGG-11 has 128,806,154 parameters at
    1x224x224 and 10 classes, the book's narrow VGG-11 43,093,322.

    The first dense layer is sized for `input_size` (channels x 7 x 7 at 224). `hidden=0` ends
    the blocks in one linear layer instead (no dense hidden layers, no dropout): with
    `batch_norm` and two narrow blocks at 28x28, the small fast net of `experiment=fast/vgg_bn`.
    """

    def __init__(
        self,
        arch: Sequence[Sequence[int]] = VGG11,
        in_channels: int = 1,
        num_classes: int = 10,
        input_size: int = 224,
        hidden: int = 4096,
        dropout: float = 0.5,
        batch_norm: bool = False,
        pool_first: bool = False,
    ) -> None:
        def blocks() -> list[nn.Module]:
            layers, channels = [], in_channels
            for num_convs, out_channels in arch:
                layers.append(VGGBlock(num_convs, channels, out_channels, batch_norm, pool_first))
                channels = out_channels
            return [*layers, nn.Flatten()]

        flat = output_numel(lambda: nn.Sequential(*blocks()), (in_channels, input_size, input_size))
        if hidden == 0:
            super().__init__(*blocks(), nn.Linear(flat, num_classes))
        else:
            super().__init__(
                *blocks(),
                nn.Linear(flat, hidden), nn.ReLU(), nn.Dropout(dropout),
                nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
                nn.Linear(hidden, num_classes),
            )  # fmt: skip
        self.num_classes, self.input_size = num_classes, input_size
