"""A fully convolutional network for semantic segmentation (d2l 1.0 ch. 14.11).

A classifier's convolutional body (d2lexp's ResNet without its global pooling and dense head,
as the book takes torchvision's ResNet-18), a 1x1 convolution to one channel per class, and a
transposed convolution that scales the class maps back up by the body's downsampling factor
s: kernel 2s, stride s, padding s/2 (the book's 64, 32, 16 for ResNet-18), starting as
bilinear interpolation. Every pixel of an (N, C, H, W) input gets class scores: (N, classes, H, W).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from d2lexp.models.registry import register_net
from d2lexp.models.resnet import ResNet
from d2lexp.scratch.segmentation import bilinear_kernel

# The book's classifier ends, in order, in these layers; its convolutional body is what precedes them.
_HEAD_LAYERS = (nn.Linear, nn.Flatten, nn.Dropout, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def conv_body(classifier: nn.Sequential) -> nn.Sequential:
    """A sequential classifier less its trailing head (dense layers, flattening, global pooling):
    the book's `list(pretrained_net.children())[:-2]`, for any of d2lexp's sequential CNNs."""
    layers = list(classifier)
    while layers and isinstance(layers[-1], _HEAD_LAYERS):
        layers.pop()
    if not layers:
        raise ValueError("conv_body: the classifier has no convolutional layers before its head")
    return nn.Sequential(*layers)


class BilinearUpsample(nn.ConvTranspose2d):
    """A transposed convolution that scales each of `channels` maps up `factor` times, starting
    as bilinear interpolation (weights `bilinear_kernel`, bias 0) and learnable from there."""

    fixed_init = True  # its weights are what make it upsample: a weight init (conf/init) leaves them be

    def __init__(self, channels: int, factor: int) -> None:
        if factor < 2 or factor % 2:
            raise ValueError(
                f"BilinearUpsample needs an even factor of at least 2 (kernel 2f, padding f/2); got {factor}"
            )
        super().__init__(channels, channels, kernel_size=2 * factor, stride=factor, padding=factor // 2)

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.weight.copy_(bilinear_kernel(self.in_channels, self.out_channels, self.kernel_size[0]))
            if self.bias is not None:
                self.bias.zero_()  # the book leaves PyTorch's small random bias; 0 makes it exactly bilinear


@register_net
class FCN(nn.Module):
    """Body, 1x1 class convolution, bilinear transposed convolution.

    By default the body is the book's ResNet-18 (`stages` (2, 2, 2, 2), `width` 64: 32x
    downsampling, 512 channels); `stages` and `width` make it smaller (stages (1, 1, 1), width
    16: 16x, 64 channels, for 64x64 canvases on a CPU). `backbone` takes any other sequential
    d2lexp classifier instead (its head is dropped). Inputs' height and width must be multiples
    of the body's downsampling factor (`self.downsampling`).
    """

    def __init__(
        self,
        num_classes: int = 21,
        in_channels: int = 3,
        stages: tuple[int, ...] = (2, 2, 2, 2),
        width: int = 64,
        backbone: nn.Sequential | None = None,
    ) -> None:
        super().__init__()
        if backbone is None:
            backbone = ResNet(tuple(stages), in_channels, num_classes=1, input_size=None, width=width)
        self.body = conv_body(backbone)
        first_conv = next((m for m in self.body.modules() if isinstance(m, nn.Conv2d)), None)
        if first_conv is None:
            raise ValueError("FCN: the backbone has no convolution")
        self.in_channels, self.num_classes = first_conv.in_channels, num_classes
        self.downsampling, body_channels = self._measure_body()
        self.final_conv = nn.Conv2d(body_channels, num_classes, kernel_size=1)
        self.transpose_conv = BilinearUpsample(num_classes, self.downsampling)

    def _measure_body(self) -> tuple[int, int]:
        """The body's downsampling factor and output channels: one 1024x1024 input through it on the
        meta device (shapes only, no compute, the real weights and statistics untouched)."""
        side = 1024
        on_meta = {name: torch.empty_like(t, device="meta") for name, t in (*self.body.named_parameters(),
                                                                             *self.body.named_buffers())}  # fmt: skip
        X = torch.empty(1, self.in_channels, side, side, device="meta")
        _, channels, out_h, out_w = torch.func.functional_call(self.body, on_meta, (X,)).shape
        if out_h != out_w or out_h == 0 or side % out_h:
            raise ValueError(
                f"FCN: the backbone maps {side}x{side} inputs to {out_h}x{out_w}, not a whole factor smaller"
            )
        return side // out_h, channels

    def forward(self, X: Tensor) -> Tensor:
        s = self.downsampling
        if X.dim() != 4 or X.shape[1] != self.in_channels or X.shape[2] % s or X.shape[3] % s:
            raise ValueError(
                f"FCN expects input (N, {self.in_channels}, H, W) with H and W multiples of {s} (its downsampling); "
                f"got input of shape {tuple(X.shape)}"
            )
        return self.transpose_conv(self.final_conv(self.body(X)))
