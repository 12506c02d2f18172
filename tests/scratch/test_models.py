"""The scratch networks, and the proof that scratch and framework training agree end to end."""

import pytest
import torch

from d2lexp import build
from d2lexp.models.lenet import LeNetBN
from d2lexp.scratch.models import LeNetBNScratch, MLPScratch, SoftmaxRegressionScratch
from d2lexp.train import train


def test_scratch_bn_lenet_has_the_books_shape():
    scratch, framework = LeNetBNScratch(), LeNetBN()
    assert sum(p.numel() for p in scratch.parameters()) == sum(p.numel() for p in framework.parameters()) == 44_878
    X = torch.randn(3, 1, 28, 28)
    shapes = []
    for layers in (scratch, framework):
        x, seen = X, []
        for layer in layers:
            x = layer(x)
            seen.append(tuple(x.shape))
        shapes.append(seen)
    assert shapes[0] == shapes[1]


def test_scratch_classifiers_output_shapes():
    X = torch.rand(4, 1, 28, 28)
    probabilities = SoftmaxRegressionScratch()(X)
    torch.testing.assert_close(probabilities.sum(1), torch.ones(4))
    assert MLPScratch()(X).shape == (4, 10)


def test_softmax_from_scratch_and_with_the_framework_reach_the_same_weights(make_cfg, tmp_path):
    """Same start, same data order: one epoch of softmax(XW + b) + cross_entropy + scratch SGD
    and of nn.Linear + F.cross_entropy + torch.optim.SGD end at the same weights."""
    common = ["data.train_subset=20000", "data.test_subset=1000", "trainer.max_epochs=1", "seed=3"]
    scratch_cfg = make_cfg("experiment=d2l/softmax_scratch", *common, output_dir=tmp_path / "scratch")
    framework_cfg = make_cfg("experiment=d2l/softmax", *common, output_dir=tmp_path / "framework")
    scratch_net, framework_net = build.net(scratch_cfg), build.net(framework_cfg)
    with torch.no_grad():  # the same starting point
        framework_net[1].weight.copy_(scratch_net.W.T)
        framework_net[1].bias.copy_(scratch_net.b)
    start = scratch_net.W.detach().clone()
    scratch_record = train(scratch_cfg, net=scratch_net)
    framework_record = train(framework_cfg, net=framework_net)
    assert not torch.allclose(scratch_net.W, start, atol=1e-3)  # it did learn
    torch.testing.assert_close(scratch_net.W.detach(), framework_net[1].weight.detach().T, atol=1e-5, rtol=0)
    torch.testing.assert_close(scratch_net.b.detach(), framework_net[1].bias.detach(), atol=1e-5, rtol=0)
    assert scratch_record["train/loss"] == pytest.approx(framework_record["train/loss"], abs=1e-5)
    assert scratch_record["test/acc"] == pytest.approx(framework_record["test/acc"], abs=2e-3)
