"""torchvision's ResNets as d2lexp nets (d2l 1.0 ch. 14.2 fine-tunes torchvision's ImageNet ResNet-18):
the same layers under the same names as `torchvision.models.resnet18()`, so torchvision's trained
weights load into it by name (init=torchvision: d2lexp.finetune), and a sequential classifier,
so the FCN can take its body (d2lexp.models.fcn.conv_body)."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from d2lexp.models.registry import register_net

DEPTHS = {18: "resnet18", 34: "resnet34", 50: "resnet50"}


@register_net
class TorchvisionResNet(nn.Sequential):
    """torchvision's ResNet-`depth` (18, 34 or 50) for `num_classes` classes; `in_channels` 1 gives it
    a grey first convolution (init=torchvision sums ImageNet's colour kernels into it). Its layers
    are torchvision's, in torchvision's order and with its names (conv1, bn1, ..., fc)."""

    def __init__(self, depth: int = 18, num_classes: int = 10, in_channels: int = 1) -> None:
        import torchvision

        if depth not in DEPTHS:
            raise ValueError(f"TorchvisionResNet has depth 18, 34 or 50; got {depth}")
        net = getattr(torchvision.models, DEPTHS[depth])(weights=None, num_classes=num_classes)
        if in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        names = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool")
        super().__init__(
            OrderedDict([*((n, getattr(net, n)) for n in names), ("flatten", nn.Flatten()), ("fc", net.fc)])
        )
        self.num_classes = num_classes
        self.torchvision_weights = f"ResNet{depth}_Weights"  # the class of torchvision's trained weights for it
