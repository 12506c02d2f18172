"""The FCN (d2l 1.0 ch. 14.11): the book's shapes, its upsampling layer, and that it upsamples bilinearly."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from d2lexp import build
from d2lexp.models.densenet import DenseNet
from d2lexp.models.fcn import FCN, BilinearUpsample, conv_body
from d2lexp.models.resnet import ResNet
from d2lexp.scratch import bilinear_kernel

# The book's ResNet-18 (1 channel, 10 classes: 11,178,378, tests/models/test_cnn_zoo.py) less its dense
# head (512 * 10 + 10), with a 3-channel stem (2 * 64 * 7 * 7 more), then the 1x1 conv to 21 classes
# and the 21-channel transposed conv of kernel 64.
BOOK_FCN_PARAMS = 11_178_378 - 5_130 + 6_272 + (512 * 21 + 21) + (21 * 21 * 64 * 64 + 21)


def test_the_books_fcn_shapes_and_layers():
    """14.11.1: the body maps a 320x480 image to torch.Size([1, 512, 10, 15]); kernel 64, stride 32,
    padding 16 bring the 21 class maps back to 320x480."""
    with torch.device("meta"):
        net = FCN()
        X = torch.rand(size=(1, 3, 320, 480))
        assert net.body(X).shape == torch.Size([1, 512, 10, 15])
        assert net(X).shape == (1, 21, 320, 480)
    assert net.downsampling == 32
    up = net.transpose_conv
    assert (up.kernel_size, up.stride, up.padding) == ((64, 64), (32, 32), (16, 16))
    assert (net.final_conv.in_channels, net.final_conv.out_channels, net.final_conv.kernel_size) == (512, 21, (1, 1))
    assert sum(p.numel() for p in net.parameters()) == BOOK_FCN_PARAMS == 12_996_650


def test_the_transposed_conv_starts_as_the_bilinear_kernel_whatever_the_init_group_says(make_cfg):
    net = FCN(num_classes=5, in_channels=1, stages=(1, 1), width=8)
    assert torch.equal(net.transpose_conv.weight, bilinear_kernel(5, 5, 16)) and net.downsampling == 8
    assert torch.count_nonzero(net.transpose_conv.bias) == 0
    built = build.net(make_cfg("~experiment", "model=fcn_small", "init=normal"))  # N(0, 0.01^2) weights...
    assert torch.equal(built.transpose_conv.weight, bilinear_kernel(11, 11, 32))  # ...but not the upsampling's
    assert float(built.final_conv.weight.detach().std()) == pytest.approx(0.01, rel=0.2)


def test_identity_body_and_classifier_upsample_as_bilinear_interpolation():
    """With a body that only averages 8x8 blocks and an identity 1x1 conv, the FCN is bilinear
    upsampling of the block averages: F.interpolate's, away from the border (4 pixels, half a stride)."""
    body = nn.Conv2d(3, 3, kernel_size=1)
    with torch.no_grad():
        body.weight.copy_(torch.eye(3).reshape(3, 3, 1, 1))
        body.bias.zero_()
    net = FCN(num_classes=3, backbone=nn.Sequential(body, nn.AvgPool2d(8)))
    with torch.no_grad():
        net.final_conv.weight.copy_(torch.eye(3).reshape(3, 3, 1, 1))
        net.final_conv.bias.zero_()
    assert net.downsampling == 8
    X = torch.rand(2, 3, 48, 64)
    expected = F.interpolate(F.avg_pool2d(X, 8), scale_factor=8, mode="bilinear", align_corners=False)
    out = net(X)
    assert out.shape == X.shape
    torch.testing.assert_close(out[..., 4:-4, 4:-4], expected[..., 4:-4, 4:-4])
    assert not torch.allclose(out, expected)  # at the border the transposed conv sees zeros beyond the edge


def test_a_resnet_fcn_upsamples_its_class_maps_bilinearly():
    torch.manual_seed(0)
    net = FCN(num_classes=4, in_channels=1, stages=(1, 1, 1), width=8).eval()
    X = torch.rand(2, 1, 64, 96)
    with torch.no_grad():
        coarse = net.final_conv(net.body(X))  # (2, 4, 4, 6): 16x smaller
        expected = F.interpolate(coarse, scale_factor=16, mode="bilinear", align_corners=False)
        torch.testing.assert_close(net(X)[..., 8:-8, 8:-8], expected[..., 8:-8, 8:-8])


def test_the_body_is_the_classifier_less_its_head():
    resnet = ResNet((2, 2, 2, 2), in_channels=3, input_size=None)
    body = conv_body(resnet)
    assert len(body) == len(resnet) - 3 and all(a is b for a, b in zip(body, resnet))  # no pooling, flatten, dense
    densenet_fcn = FCN(num_classes=2, backbone=DenseNet(in_channels=1, input_size=None))
    assert densenet_fcn.in_channels == 1 and densenet_fcn.downsampling == 32
    assert isinstance(densenet_fcn.body[-1], nn.ReLU)  # DenseNet's body ends in BN + ReLU
    with torch.device("meta"):
        assert FCN(num_classes=2, backbone=DenseNet(in_channels=1, input_size=None))(torch.rand(1, 1, 64, 96)).shape == (
            1, 2, 64, 96,
        )  # fmt: skip


def test_the_small_fcn_trains_on_canvases():
    """The CPU variant: 64x64 grey canvases, 11 classes; a few steps of per-pixel cross-entropy
    fit one batch (half the canvas one class, a square another)."""
    torch.manual_seed(1)
    net = FCN(num_classes=11, in_channels=1, stages=(1, 1, 1), width=16)
    assert net.downsampling == 16 and sum(p.numel() for p in net.parameters()) == 202_518
    X = torch.rand(4, 1, 64, 64)
    Y = torch.zeros(4, 64, 64, dtype=torch.long)
    Y[:, 16:48, 16:48] = torch.arange(1, 5).reshape(4, 1, 1)
    X[(Y > 0).unsqueeze(1)] += 1.0  # the objects are brighter than the background
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for _ in range(8):
        optimizer.zero_grad()
        loss = F.cross_entropy(net(X), Y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_inputs_must_be_multiples_of_the_downsampling():
    net = FCN(num_classes=3, in_channels=1, stages=(1, 1), width=8)
    with pytest.raises(
        ValueError, match=r"H and W multiples of 8 \(its downsampling\); got input of shape \(1, 1, 30, 32\)"
    ):
        net(torch.rand(1, 1, 30, 32))
    with pytest.raises(ValueError, match="even factor of at least 2"):
        BilinearUpsample(3, 3)
