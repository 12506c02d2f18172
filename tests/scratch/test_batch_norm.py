import pytest
import torch
import torch.nn.functional as F
from torch import nn

from d2lexp.scratch import BatchNorm


@pytest.mark.parametrize("num_dims, shape", [(4, (8, 6, 5, 5)), (2, (16, 120)), (4, (2, 3, 4, 4))])
def test_batch_norm_matches_torch_in_training_and_evaluation(num_dims, shape):
    torch.manual_seed(shape[1])
    channels = shape[1]
    mine = BatchNorm(channels, num_dims)
    theirs = nn.BatchNorm2d(channels) if num_dims == 4 else nn.BatchNorm1d(channels)
    with torch.no_grad():  # non-trivial affine parameters
        gamma, beta = torch.rand(channels) + 0.5, torch.randn(channels)
        mine.gamma.copy_(gamma.reshape(mine.gamma.shape))
        mine.beta.copy_(beta.reshape(mine.beta.shape))
        theirs.weight.copy_(gamma)
        theirs.bias.copy_(beta)
    for step in range(4):  # a few training steps move the running statistics
        X = (torch.randn(shape) * (step + 1) + step).requires_grad_()
        target = torch.randn(shape)
        outputs, grads = [], []
        for layer in (mine, theirs):
            X.grad = None
            layer.zero_grad()
            out = layer(X)
            F.mse_loss(out, target).backward()
            outputs.append(out)
            grads.append((X.grad.clone(), *(p.grad.flatten() for p in layer.parameters())))
        torch.testing.assert_close(outputs[0], outputs[1])
        torch.testing.assert_close(grads[0], grads[1])
    torch.testing.assert_close(mine.moving_mean.flatten(), theirs.running_mean)
    torch.testing.assert_close(mine.moving_var.flatten(), theirs.running_var)
    mine.eval()
    theirs.eval()
    X = torch.randn(shape)
    torch.testing.assert_close(mine(X), theirs(X))


def test_running_statistics_are_saved_with_the_module():
    layer = BatchNorm(3, num_dims=4)
    layer(torch.randn(4, 3, 2, 2) + 5)
    state = layer.state_dict()
    assert set(state) == {"gamma", "beta", "moving_mean", "moving_var"} and state["moving_mean"].mean() > 0.3


def test_wrong_channel_count_names_the_shapes():
    with pytest.raises(ValueError, match=r"C=6; got input of shape \(2, 5, 4, 4\)"):
        BatchNorm(6, num_dims=4)(torch.randn(2, 5, 4, 4))
