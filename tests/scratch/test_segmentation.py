"""Transposed convolution, the bilinear kernel and the VOC colour map (d2l 1.0 ch. 14.9-14.11),
against PyTorch's ConvTranspose2d / interpolate and the book's printed examples."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from d2lexp.data.voc import VOC_CLASSES, VOC_COLORMAP, voc_colormap2label, voc_label_indices
from d2lexp.scratch import bilinear_kernel, corr2d, kernel2matrix, trans_conv

X = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
K = torch.tensor([[0.0, 1.0], [2.0, 3.0]])


def test_the_books_transposed_convolutions():
    """14.10.1-14.10.2: the basic operation, then padding 1 and stride 2 (the book shows the last
    two with nn.ConvTranspose2d)."""
    assert torch.equal(trans_conv(X, K), torch.tensor([[0.0, 0.0, 1.0], [0.0, 4.0, 6.0], [4.0, 12.0, 9.0]]))
    assert torch.equal(trans_conv(X, K, padding=1), torch.tensor([[4.0]]))
    strided = torch.tensor([[0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 2.0, 3.0], [0.0, 2.0, 0.0, 3.0], [4.0, 6.0, 6.0, 9.0]])
    assert torch.equal(trans_conv(X, K, stride=2), strided)


@pytest.mark.parametrize(
    "x_shape, k_shape, stride, padding", [((4, 5), (3, 3), 1, 0), ((3, 3), (2, 4), 2, 0), ((5, 4), (4, 4), 2, 1)]
)
def test_trans_conv_matches_conv_transpose2d_in_value_and_gradient(x_shape, k_shape, stride, padding):
    torch.manual_seed(x_shape[0] * 10 + stride)
    x, k = torch.randn(x_shape, requires_grad=True), torch.randn(k_shape, requires_grad=True)
    mine = trans_conv(x, k, stride=stride, padding=padding)
    weights = torch.randn_like(mine)
    (mine * weights).sum().backward()
    my_grads = x.grad.clone(), k.grad.clone()
    x.grad = k.grad = None
    theirs = F.conv_transpose2d(x[None, None], k[None, None], stride=stride, padding=padding)[0, 0]
    (theirs * weights).sum().backward()
    torch.testing.assert_close(mine, theirs)
    torch.testing.assert_close(my_grads, (x.grad, k.grad))


def test_transposed_convolution_is_the_transposed_matrix():
    """14.10.3: the convolution of a 3x3 input by a 2x2 kernel as a 4x9 matrix W; its transpose
    is the transposed convolution."""
    X9, K4 = torch.arange(9.0).reshape(3, 3), torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    W = kernel2matrix(K4)
    printed = torch.tensor(
        [[1.0, 2.0, 0.0, 3.0, 4.0, 0.0, 0.0, 0.0, 0.0],
         [0.0, 1.0, 2.0, 0.0, 3.0, 4.0, 0.0, 0.0, 0.0],
         [0.0, 0.0, 0.0, 1.0, 2.0, 0.0, 3.0, 4.0, 0.0],
         [0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 0.0, 3.0, 4.0]]
    )  # fmt: skip
    assert torch.equal(W, printed)
    Y = corr2d(X9, K4)
    assert torch.equal(Y, torch.tensor([[27.0, 37.0], [57.0, 67.0]]))
    assert torch.equal(Y, (W @ X9.reshape(-1)).reshape(2, 2))
    assert torch.equal(trans_conv(Y, K4), (W.T @ Y.reshape(-1)).reshape(3, 3))
    wide = kernel2matrix(K4, (4, 5))  # any input size: a 3x4 output of 20 inputs
    X20 = torch.randn(4, 5)
    torch.testing.assert_close((wide @ X20.reshape(-1)).reshape(3, 4), corr2d(X20, K4))


def test_bilinear_kernel_values():
    even = bilinear_kernel(2, 2, 4)  # centre between the middle two: 1 - |i - 1.5| / 2
    tent = torch.tensor([0.25, 0.75, 0.75, 0.25])
    assert torch.equal(even[0, 0], torch.outer(tent, tent)) and torch.equal(even[1, 1], even[0, 0])
    assert torch.count_nonzero(even[0, 1]) == 0 and torch.count_nonzero(even[1, 0]) == 0  # channels stay apart
    odd = bilinear_kernel(1, 1, 3)[0, 0]
    assert torch.equal(odd, torch.outer(torch.tensor([0.5, 1.0, 0.5]), torch.tensor([0.5, 1.0, 0.5])))
    assert bilinear_kernel(3, 5, 4).shape == (3, 5, 4, 4) and torch.count_nonzero(bilinear_kernel(3, 5, 4)[:, 3:]) == 0


def test_the_books_bilinear_upsampling_doubles_the_catdog_image():
    """14.11.2: ConvTranspose2d(3, 3, kernel 4, padding 1, stride 2) with the bilinear kernel:
    input image shape torch.Size([561, 728, 3]), output image shape torch.Size([1122, 1456, 3])."""
    conv_trans = nn.ConvTranspose2d(3, 3, kernel_size=4, padding=1, stride=2, bias=False)
    with torch.no_grad():
        conv_trans.weight.copy_(bilinear_kernel(3, 3, 4))
        Y = conv_trans(torch.rand(1, 3, 561, 728))
    assert Y[0].permute(1, 2, 0).shape == torch.Size([1122, 1456, 3])


@pytest.mark.parametrize("scale", [2, 4, 32])
def test_bilinear_kernel_interpolates_as_interpolate_does_inside(scale):
    """Kernel 2s, stride s, padding s/2 (the FCN's 64, 32, 16 at s = 32) is bilinear interpolation,
    except within s/2 of the border, where the transposed convolution sees zeros beyond the edge."""
    torch.manual_seed(scale)
    x = torch.rand(1, 3, 5, 6)
    up = F.conv_transpose2d(x, bilinear_kernel(3, 3, 2 * scale), stride=scale, padding=scale // 2)
    reference = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
    assert up.shape == reference.shape == (1, 3, 5 * scale, 6 * scale)
    m = scale // 2
    torch.testing.assert_close(up[..., m:-m, m:-m], reference[..., m:-m, m:-m])
    assert not torch.allclose(up, reference)  # the border is not: it fades to zero


def test_voc_colour_map():
    assert len(VOC_COLORMAP) == len(VOC_CLASSES) == 21 and len({tuple(c) for c in VOC_COLORMAP}) == 21
    assert VOC_CLASSES[1] == "aeroplane" and VOC_COLORMAP[1] == [128, 0, 0] and VOC_CLASSES[15] == "person"
    table = voc_colormap2label()
    assert table.shape == (256**3,) and table[(128 * 256 + 0) * 256 + 0] == 1
    # A 2x3 label image: background, aeroplane, person, tv/monitor, and the VOC border colour (no class: 0).
    colours = [VOC_COLORMAP[0], VOC_COLORMAP[1], VOC_COLORMAP[15], VOC_COLORMAP[20], [224, 224, 192], VOC_COLORMAP[1]]
    label_image = torch.tensor(colours, dtype=torch.uint8).T.reshape(3, 2, 3)
    assert voc_label_indices(label_image, table).tolist() == [[0, 1, 15], [20, 0, 1]]
