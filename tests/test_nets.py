"""A checkpoint is data: the net is looked up in d2lexp's registry, and a hostile file runs nothing.

Each hostile config below is first shown to do its harm when given to Hydra's `instantiate`
(a marker file appears), so the tests prove a real attack is stopped, not a harmless one.
"""

from __future__ import annotations

import base64
import contextlib
import pickle
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from d2lexp.checkpoint import load_net
from d2lexp.errors import CheckpointError
from d2lexp.models.lenet import LeNet
from d2lexp.models.vgg import VGG
from d2lexp.nets import NETS, checked_net_config
from tests.helpers.configs import REPO


class WritesMarker:
    """Unpickling this opens (creates) the marker file: arbitrary code, as a real payload would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def hostile_configs(marker: Path) -> dict[str, dict]:
    payload = base64.b64encode(pickle.dumps(WritesMarker(marker))).decode()
    return {
        # torch.load of a pickle, decoded from the config itself: every target is an allowed one
        "chain": {"_target_": "torch.load", "weights_only": False,
                  "f": {"_target_": "io.BytesIO", "_args_": [{"_target_": "base64.b64decode", "_args_": [payload]}]}},
        "stdlib": {"_target_": "builtins.open", "file": str(marker), "mode": "w"},
        "nested": {"_target_": "d2lexp.models.lenet.LeNet", "in_channels": 1,
                   "num_classes": {"_target_": "builtins.len", "_args_": [{"_target_": "builtins.open", "file": str(marker), "mode": "w"}]}},
        "partial": {"_target_": "d2lexp.models.lenet.LeNet", "_partial_": True,
                    "num_classes": {"_target_": "builtins.open", "file": str(marker), "mode": "w"}},
        "args": {"_target_": "d2lexp.models.lenet.LeNet", "_args_": [{"_target_": "builtins.open", "file": str(marker), "mode": "w"}]},
        "not_a_model": {"_target_": "d2lexp.checkpoint.save", "obj": [1], "path": str(marker)},
    }  # fmt: skip


def write_checkpoint(path: Path, model_config: dict) -> Path:
    """A file that loads under torch.load(weights_only=True), with real LeNet weights."""
    state = {f"net.{k}": v for k, v in LeNet().state_dict().items()}
    torch.save({"state_dict": state, "d2lexp_config": {"model": model_config}}, path)
    return path


@pytest.mark.parametrize("kind", list(hostile_configs(Path("x"))))
def test_a_hostile_checkpoint_runs_nothing_and_says_why(tmp_path, kind):
    proof = tmp_path / "proof"
    with contextlib.suppress(Exception):  # the harm is done before any error
        instantiate(OmegaConf.create(hostile_configs(proof)[kind]))  # what loading it used to do
    assert proof.exists(), "the hostile config would not have run code: the test proves nothing"

    marker = tmp_path / "marker"
    path = write_checkpoint(tmp_path / f"{kind}.ckpt", hostile_configs(marker)[kind])
    with pytest.raises(CheckpointError) as refused:
        load_net(path)
    message = str(refused.value)
    assert not marker.exists()  # nothing ran
    assert message.startswith(f"{path} is refused: model") and "\n" not in message
    assert "nothing in it is ever run or imported" in message


def test_the_refusal_names_the_key(tmp_path):
    marker = tmp_path / "marker"
    configs = hostile_configs(marker)
    expected = {"chain": "model._target_ names 'torch.load'", "stdlib": "model._target_ names 'builtins.open'",
                "nested": "model.num_classes holds a config node naming 'builtins.len'",
                "partial": "model._partial_ is an instruction", "args": "model._args_ is an instruction",
                "not_a_model": "model._target_ names 'd2lexp.checkpoint.save'"}  # fmt: skip
    for kind, text in expected.items():
        with pytest.raises(CheckpointError, match=text.replace("(", r"\(")):
            checked_net_config(configs[kind], "some.ckpt")


@pytest.mark.slow  # test_hostile_files.py's crafted vocabulary goes through predict the same way
def test_predict_refuses_a_hostile_checkpoint(tmp_path):
    import subprocess
    import sys

    marker = tmp_path / "marker"
    path = write_checkpoint(tmp_path / "chain.ckpt", hostile_configs(marker)["chain"])
    result = subprocess.run([sys.executable, "-m", "d2lexp.predict", f"ckpt_path={path}"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 1 and f"{path} is refused" in output and "Traceback" not in output
    assert not marker.exists()


def test_plain_settings_of_a_registered_net_load(tmp_path):
    net = LeNet()
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    config = {"_target_": "d2lexp.models.lenet.LeNet", "in_channels": 1, "num_classes": 10}
    torch.save({"state_dict": state, "d2lexp_config": {"model": config}}, tmp_path / "ok.ckpt")
    loaded = load_net(tmp_path / "ok.ckpt")
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(loaded(x), net.eval()(x))


def test_a_net_that_sizes_its_dense_layer_by_a_probe_loads(tmp_path):
    """A VGG builds its blocks twice, once on the meta device to size its dense layer: that probe is
    not the net, and a checkpoint holding exactly the net's weights loads (it was refused as too large)."""
    config = {"arch": [[2, 8], [2, 16]], "input_size": 28, "hidden": 0, "batch_norm": True, "pool_first": True}
    net = VGG(**config)
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    model = {"_target_": "d2lexp.models.vgg.VGG", **config}
    torch.save({"state_dict": state, "d2lexp_config": {"model": model}}, tmp_path / "vgg.ckpt")
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(load_net(tmp_path / "vgg.ckpt")(x), net.eval()(x))
    wider = {**model, "arch": [[2, 8], [2, 32]]}  # more weights than the file holds: still refused
    torch.save({"state_dict": state, "d2lexp_config": {"model": wider}}, tmp_path / "wider.ckpt")
    with pytest.raises(CheckpointError, match="describe a VGG larger than the weights the file holds"):
        load_net(tmp_path / "wider.ckpt")


def test_a_huge_probe_is_stopped_after_a_few_layers(tmp_path, monkeypatch):
    """A probe is held to the file's budget on its own: `arch: [[200000, 8]]` is refused after a few convs
    of the probe (left uncounted, all 200,000 were built first: 90 s per crafted file)."""
    built = []
    monkeypatch.setattr(torch.nn.Conv2d, "reset_parameters", lambda self: built.append(self))
    model = {"_target_": "d2lexp.models.vgg.VGG", "arch": [[200000, 8]], "input_size": 28, "hidden": 0}
    state = {f"net.{k}": v for k, v in LeNet().state_dict().items()}
    torch.save({"state_dict": state, "d2lexp_config": {"model": model}}, tmp_path / "huge.ckpt")
    with pytest.raises(CheckpointError, match="describe a VGG larger than the weights the file holds"):
        load_net(tmp_path / "huge.ckpt")
    assert 0 < len(built) < 100


@pytest.mark.parametrize("name", ["nin", "densenet"])
def test_nets_that_check_their_input_size_by_a_probe_load(tmp_path, name):
    """NiN, GoogLeNet, ResNet and DenseNet probe their shapes on the meta device as they are built:
    their checkpoints were refused as twice their size too."""
    node = OmegaConf.load(REPO / "conf" / "model" / f"{name}.yaml")
    model = {k: v for k, v in OmegaConf.to_container(node).items() if k != "defaults"}
    net = instantiate(model)
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    torch.save({"state_dict": state, "d2lexp_config": {"model": model}}, tmp_path / "net.ckpt")
    x = torch.rand(2, 1, net.input_size, net.input_size)
    assert torch.equal(load_net(tmp_path / "net.ckpt")(x), net.eval()(x))


def test_settings_that_would_build_a_huge_net_are_refused_before_allocating(tmp_path):
    """The net is built on the meta device first: 10^12 hidden units cost nothing to find wrong."""
    config = {"_target_": "d2lexp.models.mlp.MLP", "num_hiddens": 10**12}
    state = {f"net.{k}": v for k, v in LeNet().state_dict().items()}
    torch.save({"state_dict": state, "d2lexp_config": {"model": config}}, tmp_path / "huge.ckpt")
    with pytest.raises(CheckpointError, match="describe a MLP larger than the weights the file holds"):
        load_net(tmp_path / "huge.ckpt")


def test_every_model_option_is_a_registered_net():
    """conf/model is what users train; each option's net can be rebuilt from its checkpoint."""
    targets = set()
    for path in sorted((REPO / "conf" / "model").glob("*.yaml")):
        node = OmegaConf.load(path)
        targets.add((node.get("model") or node)["_target_"])
    assert targets == set(NETS)


def test_a_bytes_payload_is_not_a_plain_value(tmp_path):
    with pytest.raises(CheckpointError, match="model.num_classes holds a bytes"):
        checked_net_config({"_target_": "d2lexp.models.lenet.LeNet", "num_classes": b"\x80"}, "f.ckpt")
