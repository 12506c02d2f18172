import pytest
import torch
import torch.nn.functional as F
from torch import nn

from d2lexp.scratch import (
    Conv2D,
    Pool2D,
    corr2d,
    corr2d_batched,
    corr2d_multi_in,
    corr2d_multi_in_out,
    pool2d,
    pool2d_batched,
)


def test_the_books_example():
    X = torch.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]])
    K = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    assert torch.equal(corr2d(X, K), torch.tensor([[19.0, 25.0], [37.0, 43.0]]))
    assert torch.equal(pool2d(X, (2, 2)), torch.tensor([[4.0, 5.0], [7.0, 8.0]]))
    assert torch.equal(pool2d(X, (2, 2), "avg"), torch.tensor([[2.0, 3.0], [5.0, 6.0]]))


@pytest.mark.parametrize("x_shape, k_shape", [((6, 8), (1, 2)), ((5, 5), (3, 3)), ((7, 4), (2, 4))])
def test_corr2d_matches_conv2d_in_value_and_gradient(x_shape, k_shape):
    torch.manual_seed(x_shape[0])
    X, K = torch.randn(x_shape, requires_grad=True), torch.randn(k_shape, requires_grad=True)
    out = corr2d(X, K)
    out.pow(2).sum().backward()
    mine = X.grad.clone(), K.grad.clone()
    X.grad = K.grad = None
    ref = F.conv2d(X[None, None], K[None, None])[0, 0]
    ref.pow(2).sum().backward()
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(mine, (X.grad, K.grad))


def test_multi_channel_versions_match_conv2d():
    torch.manual_seed(0)
    X, K = torch.randn(3, 6, 5), torch.randn(4, 3, 2, 2)
    torch.testing.assert_close(corr2d_multi_in(X, K[0]), F.conv2d(X[None], K[:1])[0, 0])
    torch.testing.assert_close(corr2d_multi_in_out(X, K), F.conv2d(X[None], K)[0])
    batch = torch.randn(5, 3, 9, 7)
    torch.testing.assert_close(corr2d_batched(batch, K), F.conv2d(batch, K))
    torch.testing.assert_close(corr2d_batched(batch, K, stride=2), F.conv2d(batch, K, stride=2))


@pytest.mark.parametrize("padding, stride", [(0, 1), (2, 1), (1, 2)])
def test_conv2d_layer_matches_nn_conv2d(padding, stride):
    torch.manual_seed(padding * 10 + stride)
    mine, theirs = Conv2D(3, 6, 5, padding=padding, stride=stride), nn.Conv2d(3, 6, 5, padding=padding, stride=stride)
    with torch.no_grad():
        theirs.weight.copy_(mine.weight)
        theirs.bias.copy_(mine.bias.uniform_(-1, 1))
    X = torch.randn(4, 3, 12, 12, requires_grad=True)
    target = torch.randn_like(theirs(X))
    grads = []
    for layer in (mine, theirs):
        X.grad = None
        F.mse_loss(layer(X), target).backward()
        grads.append((X.grad.clone(), layer.weight.grad, layer.bias.grad))
    torch.testing.assert_close(mine(X), theirs(X))
    torch.testing.assert_close(grads[0], grads[1])


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("size, stride, padding", [(2, None, 0), (3, 1, 1), (3, 2, 1)])
def test_pooling_matches_torch(mode, size, stride, padding):
    torch.manual_seed(size)
    X = torch.randn(2, 3, 8, 8, requires_grad=True)
    torch_pool = F.max_pool2d if mode == "max" else F.avg_pool2d
    out = Pool2D(size, stride, padding, mode)(X)
    out.pow(2).sum().backward()
    mine = X.grad.clone()
    X.grad = None
    ref = torch_pool(X, size, stride=stride, padding=padding)
    ref.pow(2).sum().backward()
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(mine, X.grad)
    single = X.detach()[0, 0]
    ref1 = torch_pool(single[None, None], size, stride=1)[0, 0]
    torch.testing.assert_close(pool2d(single, (size, size), mode), ref1)
    torch.testing.assert_close(pool2d_batched(X.detach(), size, 1, 0, mode)[0, 0], ref1)


def test_shape_mismatches_name_both_shapes():
    with pytest.raises(ValueError, match=r"expects input \(N, 3, H, W\); got input of shape \(2, 1, 8, 8\)"):
        Conv2D(3, 4, 3)(torch.randn(2, 1, 8, 8))
    with pytest.raises(ValueError, match=r"got input \(2, 2\) and kernel \(3, 3\)"):
        corr2d(torch.randn(2, 2), torch.randn(3, 3))
    with pytest.raises(ValueError, match=r"got input \(3, 6, 5\) and kernel \(2, 2, 2\)"):
        corr2d_multi_in(torch.randn(3, 6, 5), torch.randn(2, 2, 2))
