"""Starting a run from a trained net (d2lexp.finetune): another run's (init=from_run) or torchvision's
weights (init=torchvision), the output layer found without naming it, and learning it faster."""

import pytest
import torch
from torch import nn

from d2lexp import build
from d2lexp.checkpoint import load_net
from d2lexp.errors import CheckpointError, ConfigError
from d2lexp.finetune import OutputLayerLR, class_dependent
from d2lexp.train import train
from d2lexp.trust import settings_from_file

PRETRAIN = ["experiment=d2l/finetune_pretrain", "data.train_subset=3000", "data.batch_size=64", "data.test_subset=500",
            "trainer.max_epochs=1"]  # fmt: skip


@pytest.mark.parametrize(
    "overrides, output",
    [(["model=lenet_bn"], {"15.weight", "15.bias"}),
     (["model=resnet18_tv"], {"fc.weight", "fc.bias"}),
     (["model=fcn_small"], {"final_conv.weight", "final_conv.bias", "transpose_conv.weight", "transpose_conv.bias"}),
     (["model=tiny_ssd"], {f"cls_{i}.{p}" for i in range(5) for p in ("weight", "bias")})],
)  # fmt: skip
def test_the_output_layer_is_what_changes_with_the_class_count(make_cfg, overrides, output):
    assert build.output_layer(make_cfg(*overrides)) == output


def test_a_run_starts_from_another_runs_net_with_a_new_output_layer(make_cfg, tmp_path):
    pretrained = train(make_cfg(*PRETRAIN, output_dir=tmp_path / "pretrained"))
    assert pretrained["status"] == "done" and pretrained["test/acc"] > 0.6  # 5 classes: chance is 0.2
    source = load_net(pretrained["last_checkpoint"]).state_dict()

    cfg = make_cfg("experiment=d2l/finetune", f"init.ckpt_path={tmp_path / 'pretrained'}")
    torch.manual_seed(0)
    net = build.net(cfg)
    for name, tensor in net.state_dict().items():
        if name.startswith("15."):  # the new output layer: Xavier-uniform, not the trained one
            assert not torch.equal(tensor, source[name])
        else:
            assert torch.equal(tensor, source[name]), name
    bound = (6 / (84 + 5)) ** 0.5  # Xavier-uniform's for the 84 -> 5 layer
    new_weight = net.state_dict()["15.weight"]
    assert float(new_weight.abs().max()) <= bound and float(new_weight.std()) > 0.1

    factory = build.optimizer(cfg, net)
    assert isinstance(factory, OutputLayerLR)
    groups = factory(net.parameters()).param_groups
    assert [g["lr"] for g in groups] == [0.1, 1.0]  # the book's: ten times faster for the new layer
    assert {id(p) for p in groups[1]["params"]} == {id(net[15].weight), id(net[15].bias)}

    # The path is the user's to give: a run folder's record of it is never taken from the file.
    taken = settings_from_file([f"init.ckpt_path={tmp_path / 'pretrained'}", "init=from_run"], "overrides.yaml", "conf")
    assert taken.taken == ["init=from_run"] and taken.left_out == [f"init.ckpt_path={tmp_path / 'pretrained'}"]

    kept = build.net(make_cfg("experiment=d2l/finetune", f"init.ckpt_path={tmp_path / 'pretrained'}",
                              "init.new_output=auto"))  # fmt: skip
    assert torch.equal(kept.state_dict()["15.weight"], source["15.weight"])  # five classes both: kept where asked

    finetuned = train(make_cfg("experiment=d2l/finetune", f"init.ckpt_path={tmp_path / 'pretrained'}",
                               "data.test_subset=500", "trainer.max_epochs=2", output_dir=tmp_path / "finetuned"))  # fmt: skip
    assert finetuned["status"] == "done" and finetuned["test/acc"] > 0.5, finetuned["history"]
    # The chapter's comparison: the same 16 steps from scratch (init.ckpt_path=null) stay near chance (0.2).
    # Measured at seeds 0, 1, 2: fine-tuned 0.44, 0.68, 0.85; from scratch 0.20, 0.21, 0.32.
    scratch = train(make_cfg("experiment=d2l/finetune", "init.ckpt_path=null", "data.test_subset=500",
                             "trainer.max_epochs=2", output_dir=tmp_path / "scratch"))  # fmt: skip
    assert finetuned["test/acc"] > scratch["test/acc"] + 0.15, (finetuned["history"], scratch["history"])


def test_starting_points_that_do_not_fit_are_one_paragraph(make_cfg, tmp_path):
    with pytest.raises(ConfigError, match="needs init.ckpt_path"):
        build.net(make_cfg("experiment=d2l/finetune"))
    with pytest.raises(CheckpointError, match="does not exist"):
        build.net(make_cfg("experiment=d2l/finetune", f"init.ckpt_path={tmp_path / 'nowhere'}"))
    net = nn.Linear(3, 2)
    torch.save(net.state_dict(), tmp_path / "linear.pth")
    with pytest.raises(CheckpointError, match="holds another net than the configured one"):
        build.net(make_cfg("model=resnet18_tv", f"init.weights_path={tmp_path / 'linear.pth'}"))
    scratch = build.net(make_cfg("experiment=d2l/finetune", "init.ckpt_path=null"))  # the from-scratch baseline
    assert float(scratch[15].weight.detach().abs().max()) <= (6 / (84 + 5)) ** 0.5


def test_torchvision_weights_from_a_file(make_cfg, tmp_path):
    """init=torchvision with torchvision's ResNet-18 weights saved to a file (here its own random ones:
    nothing is downloaded): every layer but fc is theirs; the grey first convolution is their colour
    one summed over R, G and B; fc is new (10 classes, not 1,000)."""
    import torchvision

    torch.manual_seed(0)
    saved = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(saved, tmp_path / "resnet18.pth")
    cfg = make_cfg("model=resnet18_tv", f"init.weights_path={tmp_path / 'resnet18.pth'}")
    net = build.net(cfg)
    state = net.state_dict()
    assert set(state) == set(saved)
    for name, tensor in state.items():
        if name == "conv1.weight":
            torch.testing.assert_close(tensor, saved[name].sum(dim=1, keepdim=True))
        elif name.startswith("fc."):
            assert tensor.shape[0] == 10
        else:
            assert torch.equal(tensor, saved[name]), name
    assert net(torch.rand(2, 1, 64, 64)).shape == (2, 10)
    assert [g["lr"] for g in build.optimizer(cfg, net)(net.parameters()).param_groups] == [5e-5, 5e-4]


def test_class_dependent_finds_nothing_where_nothing_depends():
    assert class_dependent(lambda k: nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2)), 5) == set()
