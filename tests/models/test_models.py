import pytest
import torch
from torch import nn

from d2lexp.models import init
from d2lexp.models.lenet import LeNet
from d2lexp.models.mlp import MLP
from d2lexp.models.softmax import SoftmaxRegression


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize(
    "net, params",
    [(SoftmaxRegression(), 784 * 10 + 10), (MLP(), 784 * 256 + 256 + 256 * 10 + 10), (LeNet(), 61_706)],
)
def test_parameter_counts_and_output_shape(net, params):
    assert n_params(net) == params
    assert net(torch.rand(3, 1, 28, 28)).shape == (3, 10)


def test_lenet_shapes_follow_the_book():
    shapes = []
    x = torch.rand(1, 1, 28, 28)
    for layer in LeNet():
        x = layer(x)
        shapes.append(tuple(x.shape))
    assert shapes[0] == (1, 6, 28, 28) and shapes[2] == (1, 6, 14, 14)
    assert shapes[3] == (1, 16, 10, 10) and shapes[5] == (1, 16, 5, 5) and shapes[6] == (1, 400)


def test_normal_init_sets_weight_statistics():
    torch.manual_seed(0)
    net = MLP(num_hiddens=512)
    net.apply(init.normal(std=0.01))
    w = net[1].weight
    assert w.mean().abs() < 1e-3 and w.std().item() == pytest.approx(0.01, rel=0.02)


def test_xavier_uniform_bound():
    net = LeNet()
    net.apply(init.xavier_uniform())
    w = net[7].weight  # Linear(400, 120)
    bound = (6 / (400 + 120)) ** 0.5
    assert w.abs().max() <= bound and w.abs().max() > 0.95 * bound


def test_constant_and_custom_init():
    net = MLP()
    net.apply(init.constant(value=1.0, bias=0.0))
    assert torch.all(net[1].weight == 1) and torch.all(net[1].bias == 0)
    net.apply(init.d2l_custom())
    w = net[1].weight
    assert torch.all((w == 0) | (w.abs() >= 5)) and (w == 0).float().mean().item() == pytest.approx(0.5, abs=0.02)


def test_pytorch_default_leaves_weights_alone():
    net = LeNet()
    before = [p.clone() for p in net.parameters()]
    net.apply(init.pytorch_default())
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
