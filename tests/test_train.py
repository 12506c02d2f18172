"""End-to-end runs of the real pipeline on real Fashion-MNIST (small slices, few epochs)."""

import json
import threading
import time

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import RichProgressBar
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from d2lexp.callbacks.run_config import CONFIG_KEY
from d2lexp.checkpoint import load_net
from d2lexp.errors import CheckpointError
from d2lexp.metrics_file import read_metrics
from d2lexp.train import train
from tests.helpers.configs import test_config

QUICK = ["data.train_subset=10000", "data.test_subset=2000", "trainer.max_epochs=2"]


def events(run_dir) -> EventAccumulator:
    accumulator = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    return accumulator


@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory, data_dir):
    """One short real LeNet run, shared by the tests that inspect what a run leaves behind."""
    out = tmp_path_factory.mktemp("lenet")
    cfg = test_config(
        out, data_dir, "~experiment", "model=lenet", "optimizer=adam", "optimizer.lr=0.01", "data.batch_size=128",
        "trainer.log_every_n_steps=10", *QUICK,
    )  # fmt: skip
    return out, train(cfg)


@pytest.mark.parametrize(
    "overrides, min_acc",
    [
        (["experiment=d2l/softmax"], 0.65),  # the book's settings, on a slice
        (["experiment=d2l/mlp"], 0.5),
        (["model=lenet"], None),  # checked by the lenet_run fixture below
    ],
    ids=["softmax", "mlp", "lenet"],
)
def test_each_model_learns_on_real_data(make_cfg, lenet_run, overrides, min_acc):
    if min_acc is None:
        record = lenet_run[1]
        min_acc = 0.5
    else:
        record = train(make_cfg(*overrides, *QUICK))
    assert record["status"] == "done" and record["epochs"] == 2
    assert record["test/acc"] > min_acc, record  # chance is 0.1
    assert record["train/loss"] < 2.0


class KillHiddenUnits(pl.Callback):
    """From the second epoch, every hidden ReLU of the MLP is dead (its bias far below any input),
    as NiN's class-score ReLUs die when it collapses: the net's output is then its last layer's
    bias, the same for every image, and no gradient reaches the hidden layer again."""

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == 1:
            hidden = next(m for m in pl_module.net.modules() if isinstance(m, torch.nn.Linear))
            with torch.no_grad():
                hidden.bias.fill_(-1e4)


def test_a_run_that_collapses_says_so_and_keeps_its_best_weights(make_cfg, caplog):
    record = train(make_cfg("experiment=d2l/mlp", *QUICK), callbacks=[KillHiddenUnits()])
    assert record["status"] == "done"
    collapsed = record["collapsed"]
    assert collapsed["best_epoch"] == 0 and collapsed["best"] > 0.5 and collapsed["final"] < 0.2, (
        collapsed
    )  # chance: 0.1
    assert record["test/acc"] < 0.2  # the test pass, as the book's, uses the final weights
    assert "the training collapsed" in caplog.text and record["best_checkpoint"] in caplog.text
    best = torch.load(record["best_checkpoint"], map_location="cpu", weights_only=True)
    assert best["epoch"] == 0  # the weights of the epoch that scored best are not lost


def test_metrics_json_records_the_run(lenet_run):
    out, record = lenet_run
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == read_metrics(out)
    for key in ("train/loss", "train/acc", "val/acc", "test/acc", "fit_seconds", "train_examples_per_second"):
        assert isinstance(saved[key], float) and saved[key] > 0, key
    assert saved["params"] == 61_706 and saved["model"] == "lenet" and saved["status"] == "done"
    assert saved["val/acc"] == pytest.approx(saved["test/acc"])  # validation is the test split by default
    assert saved["val/acc_best"] >= saved["val/acc"] - 1e-9
    assert saved["collapsed"] is None  # it learned, and kept what it learned
    assert saved["fit_seconds"] > saved["train_seconds"] + saved["validation_seconds"]  # the rest: setup, checkpoints
    assert saved["train_seconds"] > saved["first_step_seconds"] > 0 and saved["validation_seconds"] > 0
    assert saved["startup_seconds"] > 0


def test_tensorboard_holds_scalars_image_and_hparams(lenet_run):
    out, record = lenet_run
    acc = events(out)
    scalars = set(acc.Tags()["scalars"])
    expected = {
        "train/loss",
        "train/acc",
        "val/loss",
        "val/acc",
        "test/acc",
        "train/loss_step",
        "train/examples_per_second",
    }
    assert expected <= scalars
    assert len(acc.Scalars("train/loss")) == 2 and len(acc.Scalars("val/acc")) == 2
    assert len(acc.Scalars("train/loss_step")) >= 10  # every 10 of 158 steps
    assert acc.Scalars("test/acc")[-1].value == pytest.approx(record["test/acc"], abs=1e-6)
    image = acc.Images("data/samples")[0]
    assert image.width > 500 and image.height > 100
    assert "data/classes/text_summary" in acc.Tags()["tensors"]
    hparams = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(hparams["_hparams_/session_start_info"])
    params = start.session_start_info.hparams
    assert params["choice.model"].string_value == "lenet" or params["model.class"].string_value == "LeNet"
    assert params["optimizer.lr"].number_value == pytest.approx(0.01)
    experiment = plugin_data_pb2.HParamsPluginData.FromString(hparams["_hparams_/experiment"])
    metric_tags = {m.name.tag for m in experiment.experiment.metric_infos}
    assert {"hparams/test_acc", "hparams/val_acc_best", "hparams/train_loss"} <= metric_tags
    assert acc.Scalars("hparams/test_acc")[-1].value == pytest.approx(record["test/acc"], abs=1e-6)


def test_checkpoints_load_with_weights_only(lenet_run):
    out, record = lenet_run
    assert (out / "checkpoints" / "last.ckpt").is_file() and record["best_checkpoint"].endswith(".ckpt")
    checkpoint = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["epoch"] == 1 and "net.0.weight" in checkpoint["state_dict"]
    # last.ckpt is the newest state whether or not the last epoch was the best
    assert record["last_checkpoint"] == str(out / "checkpoints" / "last.ckpt")
    assert checkpoint["global_step"] == record["global_step"]
    assert checkpoint[CONFIG_KEY]["model"]["_target_"] == "d2lexp.models.lenet.LeNet"


def test_seeded_runs_repeat_exactly_on_cpu(make_cfg, tmp_path):
    settings = ["experiment=d2l/mlp", "data.train_subset=4000", "data.test_subset=1000", "trainer.max_epochs=2"]
    first = train(make_cfg(*settings, "seed=5", output_dir=tmp_path / "a"))
    second = train(make_cfg(*settings, "seed=5", output_dir=tmp_path / "b"))
    other = train(make_cfg(*settings, "seed=6", output_dir=tmp_path / "c"))
    for key in ("train/loss", "train/acc", "test/acc", "test/loss"):
        assert first[key] == second[key], key
    assert first["train/loss"] != other["train/loss"]
    weights_a = torch.load(tmp_path / "a/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    weights_b = torch.load(tmp_path / "b/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)


def test_resume_continues_where_it_stopped(make_cfg, tmp_path):
    settings = ["experiment=d2l/softmax", "data.train_subset=3000", "data.test_subset=1000"]
    straight = train(make_cfg(*settings, "trainer.max_epochs=3", output_dir=tmp_path / "straight"))
    train(make_cfg(*settings, "trainer.max_epochs=2", output_dir=tmp_path / "first"))
    resumed = train(
        make_cfg(
            *settings, "trainer.max_epochs=3", f"ckpt_path={tmp_path / 'first/checkpoints/last.ckpt'}",
            output_dir=tmp_path / "resumed",
        )
    )  # fmt: skip
    assert resumed["epochs"] == 3
    # Only the third epoch ran after resuming, and it was the same epoch an uninterrupted run trains:
    assert len(events(tmp_path / "resumed").Scalars("train/loss")) == 1
    for key in ("train/loss", "train/acc", "test/acc"):
        assert resumed[key] == pytest.approx(straight[key], abs=1e-6), key
    assert resumed["val/acc_best"] == pytest.approx(straight["val/acc_best"], abs=1e-6)


def test_a_checkpoint_of_an_older_version_says_so_and_its_net_still_loads(make_cfg, tmp_path):
    """Checkpoints written before RunningMean hold MeanMetric's and MulticlassAccuracy's states
    under other names: such a run cannot go on exactly where it stopped, which one paragraph says;
    its net still loads (load_net, eval)."""
    settings = ["experiment=d2l/softmax", "data.train_subset=3000", "data.test_subset=1000"]
    train(make_cfg(*settings, "trainer.max_epochs=1", output_dir=tmp_path / "first"))
    checkpoint = torch.load(tmp_path / "first/checkpoints/last.ckpt", weights_only=True)
    state = checkpoint["state_dict"]
    state["train_loss.mean_value"] = state.pop("train_loss.total")  # MeanMetric: sum and weight
    state["train_loss.weight"] = state.pop("train_loss.count").float()
    right, count = state.pop("train_acc.total").long(), state.pop("train_acc.count")  # MulticlassAccuracy
    wrong = count - right
    state |= {"train_acc.tp": right, "train_acc.fn": wrong, "train_acc.fp": wrong, "train_acc.tn": 9 * count + right}
    torch.save(checkpoint, tmp_path / "old.ckpt")
    resume = f"ckpt_path={tmp_path / 'old.ckpt'}"
    with pytest.raises(CheckpointError, match="as another version of d2lexp kept it, so the run cannot go on exactly"):
        train(make_cfg(*settings, "trainer.max_epochs=2", resume, output_dir=tmp_path / "resumed"))
    net = load_net(tmp_path / "old.ckpt")
    assert torch.equal(net.state_dict()["1.weight"], state["net.1.weight"])


def test_resuming_a_different_model_is_refused(make_cfg, lenet_run, tmp_path):
    out, _ = lenet_run
    cfg = make_cfg("~experiment", "model=mlp", f"ckpt_path={out / 'checkpoints/last.ckpt'}", *QUICK)
    with pytest.raises(CheckpointError, match="holds the weights of a smaller net than the configured model"):
        train(cfg)  # refused before the larger net was built for real
    assert read_metrics(tmp_path / "run")["status"] == "failed"


@pytest.mark.parametrize(
    "overrides, bar",
    [([], True), (["callbacks.progress_bar=null"], False), (["trainer.enable_progress_bar=false"], False)],
    ids=["default", "progress_bar=null", "enable_progress_bar=false"],
)
def test_a_progress_bar_only_where_one_is_configured(make_cfg, overrides, bar):
    """`callbacks.progress_bar=null` means no bar: not Lightning's own, whose thread redraws it 100
    times a second and takes the GIL from the training loop. `trainer.enable_progress_bar=false`
    drops the configured bar instead of failing on it."""
    seen = {}

    class Probe(pl.Callback):
        def on_train_batch_end(self, trainer, *args):
            seen["bar"] = trainer.progress_bar_callback
            seen["redraw_threads"] = [t for t in threading.enumerate() if type(t).__name__.endswith("RefreshThread")]

    cfg = make_cfg("experiment=d2l/softmax", "data.train_subset=512", "trainer.max_epochs=1", "test=false",
                   "callbacks.model_summary=null", *overrides, quiet=False)  # fmt: skip
    assert train(cfg, callbacks=[Probe()])["status"] == "done"
    if bar:
        assert isinstance(seen["bar"], RichProgressBar) and seen["bar"].refresh_rate <= 2  # redraws a second
    else:
        assert seen["bar"] is None and not seen["redraw_threads"]


def test_each_run_of_a_process_times_its_own_startup(make_cfg, tmp_path):
    """A sweep's later jobs (and a benchmark's later presets) run in the same process: their
    start-up is counted from their own start, not from the process's."""
    quick = ["experiment=d2l/softmax", "data.train_subset=512", "trainer.max_epochs=1", "test=false"]
    train(make_cfg(*quick, output_dir=tmp_path / "first"))
    started = time.time()
    second = train(make_cfg(*quick, output_dir=tmp_path / "second"))
    assert 0 < second["startup_seconds"] < time.time() - started
