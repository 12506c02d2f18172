"""The deep-learning-computation toolkit: blocks, layers, parameters, init, tying, saving and loading."""

import copy
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from d2lexp import build
from d2lexp.checkpoint import load, load_net, save
from d2lexp.errors import CheckpointError
from d2lexp.inspect import format_parameters
from d2lexp.models.blocks import CenteredLayer, FixedHiddenMLP, MyLinear, MySequential, TiedMLP, mlp_custom
from d2lexp.train import train


def test_my_sequential_behaves_like_nn_sequential():
    layers = [nn.Linear(20, 256), nn.ReLU(), nn.Linear(256, 10)]
    mine, theirs = MySequential(*layers), nn.Sequential(*layers)
    X = torch.rand(2, 20)
    torch.testing.assert_close(mine(X), theirs(X))
    assert [n for n, _ in mine.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert mine.state_dict().keys() == theirs.state_dict().keys()


def test_custom_layers():
    centered = CenteredLayer()(torch.tensor([1.0, 2, 3, 4, 5]))
    assert torch.equal(centered, torch.tensor([-2.0, -1, 0, 1, 2]))
    layer = MyLinear(5, 3)
    assert [n for n, _ in layer.named_parameters()] == ["weight", "bias"]
    X = torch.rand(2, 5, requires_grad=True)
    layer(X).sum().backward()
    torch.testing.assert_close(layer.weight.grad, X.detach().sum(0, keepdim=True).T.expand(5, 3))
    net = nn.Sequential(nn.Linear(8, 128), CenteredLayer())
    assert abs(net(torch.rand(4, 8)).mean().item()) < 1e-6


def test_block_with_its_own_forward():
    net = FixedHiddenMLP()
    assert net(torch.rand(2, 20)).dim() == 0
    assert "rand_weight" not in dict(net.named_parameters())  # a constant, not trained


def test_tied_layers_share_one_tensor_and_sum_their_gradients():
    torch.manual_seed(0)
    net = TiedMLP(num_inputs=6, num_hiddens=4, num_classes=3)
    assert net[3] is net[5] and net[3].weight is net[5].weight
    assert sum(p.numel() for p in net.parameters()) == (6 * 4 + 4) + (4 * 4 + 4) + (4 * 3 + 3)
    with torch.no_grad():
        net[3].weight[0, 0] = 100.0
    assert net[5].weight[0, 0] == 100.0  # one tensor
    # The gradient of the shared weight equals the sum over both uses (an untied copy shows each).
    untied = copy.deepcopy(net)
    untied[5] = copy.deepcopy(net[3])  # same values, its own tensor
    assert untied[3] is not untied[5]
    X = torch.rand(5, 6)
    net(X).sum().backward()
    untied(X).sum().backward()
    torch.testing.assert_close(net[3].weight.grad, untied[3].weight.grad + untied[5].weight.grad)


def test_parameter_listing_by_name():
    table = format_parameters(TiedMLP(num_inputs=6, num_hiddens=4, num_classes=3))
    assert re.search(r"1\.weight +\| 4x6 ", table) and re.search(r"3\.weight +\| 4x4 ", table)
    assert "5.weight" not in table  # tied: one tensor, listed once
    assert [n for n, _ in mlp_custom().named_parameters()] == ["1.weight", "1.bias", "3.weight", "3.bias"]


@pytest.mark.parametrize("option, check", [
    ("constant", lambda w: torch.all(w == 1.0)),
    ("normal", lambda w: abs(w.std().item() - 0.01) < 0.002),
    ("d2l_custom", lambda w: torch.all((w == 0) | (w.abs() >= 5))),
])  # fmt: skip
def test_init_from_config_reaches_custom_layers(make_cfg, option, check):
    net = build.net(make_cfg("~experiment", "model=mlp_custom", f"init={option}"))
    assert check(net[1].weight.detach())


def test_save_and_load_tensors_dicts_and_state_dicts(tmp_path):
    x = torch.arange(4.0)
    save(x, tmp_path / "x.pt")
    assert torch.equal(load(tmp_path / "x.pt"), x)
    tensors = {"x": x, "y": torch.zeros(4)}
    save(tensors, tmp_path / "d.pt")
    assert all(torch.equal(load(tmp_path / "d.pt")[k], v) for k, v in tensors.items())
    net = mlp_custom(num_inputs=20)
    save(net.state_dict(), tmp_path / "mlp.params")
    clone = mlp_custom(num_inputs=20)
    clone.load_state_dict(load(tmp_path / "mlp.params"))
    X = torch.randn(2, 20)
    torch.testing.assert_close(clone(X), net(X))
    (tmp_path / "bad.pt").write_bytes(b"not a tensor file")
    with pytest.raises(CheckpointError, match="bad.pt cannot be read"):
        load(tmp_path / "bad.pt")


def test_a_checkpoint_loads_into_a_bare_module(make_cfg, tmp_path):
    cfg = make_cfg(
        "~experiment", "model=tied_mlp", "data.train_subset=2000", "data.test_subset=500", "trainer.max_epochs=1"
    )
    train(cfg)
    net = load_net(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert isinstance(net, TiedMLP) and not net.training
    assert net[3] is net[5]  # tying survives: it is in the architecture, not the file
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    torch.testing.assert_close(net[1].weight, checkpoint["state_dict"]["net.1.weight"])
    X = torch.rand(3, 1, 28, 28)
    assert net(X).shape == (3, 10) and torch.isfinite(F.softmax(net(X), 1)).all()


def test_custom_models_train_through_the_pipeline(make_cfg):
    record = train(make_cfg("~experiment", "model=mlp_custom", "init=normal", "data.train_subset=5000", "data.test_subset=1000",
                            "trainer.max_epochs=2"))  # fmt: skip
    assert record["test/acc"] > 0.5
