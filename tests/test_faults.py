"""Runs that go wrong lose nothing: a killed run resumes exactly, a diverging run stops
clearly, bad files and unwritable folders are refused with one paragraph."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from d2lexp.errors import D2lexpError, RunInterrupted, TrainingDiverged
from d2lexp.metrics_file import read_metrics
from d2lexp.train import train
from tests.helpers.cli import run_cli
from tests.helpers.folders import digest

TINY = ["experiment=d2l/softmax", "data.train_subset=1000", "data.test_subset=500", "trainer.max_epochs=1",
        "callbacks.progress_bar=null"]  # fmt: skip
RUN = ["experiment=d2l/lenet", "optimizer=adam", "optimizer.lr=0.01", "data.train_subset=6000", "data.test_subset=1000",
       "data.batch_size=100", "trainer.max_epochs=2", "callbacks.progress_bar=null", "callbacks.model_summary=null",
       "seed=11"]  # fmt: skip
EVERY_5_STEPS = [
    "callbacks.resume_checkpoint.train_time_interval=null",
    "callbacks.resume_checkpoint.every_n_train_steps=5",
]


def uninterrupted(tmp_path_factory, data_dir, *overrides: str) -> tuple[dict, dict]:
    """The record and final weights of a run never stopped, with the tests' RUN settings, trained in this
    process: a command-line run with the same settings gives the same numbers, bit for bit."""
    from tests.helpers.configs import test_config

    folder = tmp_path_factory.mktemp("straight") / "run"
    cfg = test_config(folder, data_dir, *(o for o in RUN if not o.startswith("callbacks.")), *overrides)
    record = train(cfg)
    return record, torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory, data_dir):
    return uninterrupted(tmp_path_factory, data_dir)


def test_a_killed_run_resumes_to_exactly_the_uninterrupted_result(tmp_path, data_dir, straight):
    env = {**os.environ, "D2LEXP_DATA": str(data_dir), "PYTHONUNBUFFERED": "1"}
    killed = tmp_path / "outputs" / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "d2lexp", *RUN, *EVERY_5_STEPS, f"hydra.run.dir={killed}"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    last = killed / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while time.time() < deadline:  # kill it in the middle of the second epoch
        if last.exists():
            try:
                step = torch.load(last, weights_only=True)["global_step"]
            except Exception:  # being written
                step = 0
            if 60 < step < 120 and step % 60:
                break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert json.loads((killed / "metrics.json").read_text())["status"] == "running"  # it never got to finish
    checkpoint = torch.load(last, weights_only=True)
    assert checkpoint["epoch"] == 1 and checkpoint["global_step"] % 60 > 0  # mid-epoch

    before = digest(killed)
    resumed = run_cli(
        *RUN, *EVERY_5_STEPS, "ckpt_path=last", "hydra.run.dir=outputs/resumed", cwd=tmp_path, data_dir=data_dir
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, (b, weights_b) = read_metrics(tmp_path / "outputs" / "resumed"), straight
    assert a["resumed_from"] == str(last)
    assert digest(killed) == before  # resuming read the killed run's folder and wrote nothing there
    for key in ("train/loss", "train/acc", "val/acc", "val/acc_best", "test/acc", "test/loss"):
        assert a[key] == b[key], key  # exactly: same data order, weights, optimizer, metric sums
    weights_a = torch.load(tmp_path / "outputs/resumed/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_b if k.startswith("net."))


def test_a_diverging_run_stops_with_a_clear_status(make_cfg, tmp_path):
    cfg = make_cfg("experiment=d2l/mlp", "optimizer.lr=1e9", "data.train_subset=2000", "trainer.max_epochs=5",
                   "trainer.log_every_n_steps=2")  # fmt: skip
    with pytest.raises(TrainingDiverged, match="mlp diverged: the training loss became nan .* Lower optimizer.lr"):
        train(cfg)
    record = read_metrics(tmp_path / "run")
    assert record["status"] == "diverged" and record["epochs"] < 5 and "test/acc" not in record


def test_a_diverging_job_shows_in_the_sweep_report(make_cfg, tmp_path):
    """A sweep's jobs as their runs leave them: one done, one diverged; the report says which."""
    from d2lexp.report import collect, markdown_table

    train(make_cfg("experiment=d2l/mlp", "data.train_subset=1000", "trainer.max_epochs=1", output_dir=tmp_path / "0"))
    with pytest.raises(TrainingDiverged):
        train(make_cfg("experiment=d2l/mlp", "optimizer.lr=1e9", "data.train_subset=1000", "trainer.max_epochs=2",
                       "trainer.log_every_n_steps=1", output_dir=tmp_path / "1"))  # fmt: skip
    rows = collect(tmp_path)
    assert [r["status"] for r in rows] == ["done", "diverged"] and "training loss became nan" in rows[1]["reason"]
    table = markdown_table(rows)
    assert "| done |" in table and "| diverged | the training loss became nan" in table


def test_a_terminated_run_is_recorded_as_interrupted(make_cfg, tmp_path):
    """SIGTERM (a time limit, `timeout`, `kill`) reaches Lightning's loop as SIGTERMException."""
    import lightning.pytorch as pl
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    class Terminate(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if batch_idx == 3:
                raise SIGTERMException(1)

    with pytest.raises(RunInterrupted, match="Resume it where it stopped with ckpt_path=") as stopped:
        train(make_cfg("experiment=d2l/softmax", "data.train_subset=2000"), callbacks=[Terminate()])
    assert stopped.value.exit_code == 143
    record = read_metrics(tmp_path / "run")
    assert record["status"] == "interrupted" and "SIGTERM" in record["error"]


@pytest.fixture(scope="module")
def earlier_run(tmp_path_factory, data_dir):
    """A finished run whose files must come out of every failure below untouched."""
    from tests.helpers.configs import test_config

    folder = tmp_path_factory.mktemp("earlier") / "run"
    train(test_config(folder, data_dir, *(o for o in TINY if not o.startswith("callbacks."))))
    return folder, digest(folder)


def same_second_as(folder):
    """The override that makes a run want `folder`'s very name, through the claim every auto-named
    run goes through: as a run started in the same second as `folder`'s would."""
    return f"hydra.run.dir=${{new_run_folder:{folder}}}"


def test_a_truncated_checkpoint_is_refused_and_nothing_is_lost(tmp_path, data_dir, earlier_run):
    folder, before = earlier_run
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes((folder / "checkpoints" / "last.ckpt").read_bytes()[:5000])
    result = run_cli(
        "experiment=d2l/softmax", f"ckpt_path={broken}", same_second_as(folder), cwd=tmp_path, data_dir=data_dir
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "cannot be read as a checkpoint" in output and "Traceback" not in output
    assert digest(folder) == before
    assert not list(folder.parent.glob(f"{folder.name}_*"))  # refused before a folder of its own was made


def test_a_truncated_data_file_is_refused(tmp_path, data_dir, earlier_run):
    folder, before = earlier_run
    raw = tmp_path / "data" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        (raw / name).write_bytes((data_dir / "FashionMNIST" / "raw" / name).read_bytes())
    (raw / "t10k-labels-idx1-ubyte").write_bytes((raw / "t10k-labels-idx1-ubyte").read_bytes()[:4000])
    result = run_cli("experiment=d2l/softmax", f"paths.data_dir={tmp_path / 'data'}", "data.download=false",
                     same_second_as(folder), cwd=tmp_path)  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "t10k-labels-idx1-ubyte is corrupt or truncated" in output
    assert "Traceback" not in output and digest(folder) == before


def test_a_read_only_output_folder_is_refused_before_anything_runs(tmp_path, data_dir, earlier_run):
    folder, before = earlier_run
    read_only = "/sys/d2lexp-outputs"  # sysfs: read-only even for root
    try:
        os.mkdir(read_only)
        os.rmdir(read_only)
        pytest.skip("/sys is writable here; no read-only folder to test with")
    except OSError:
        pass
    result = run_cli("experiment=d2l/softmax", f"paths.log_dir={read_only}", cwd=tmp_path, data_dir=data_dir)
    output = result.stdout + result.stderr
    assert result.returncode == 1 and f"Cannot write to {read_only}" in output and "paths.log_dir=" in output
    assert "Traceback" not in output and digest(folder) == before


@pytest.fixture
def small_disk(tmp_path):
    """A 1.3 MB file system of its own: the real full-disk path, through the real torch.save."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1300k", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"mounting a small tmpfs needs root ({mounted.stderr.decode().strip()})")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def paragraphs(output: str) -> list[str]:
    return [line for line in output.splitlines() if "[ERROR]" in line]


def test_a_full_disk_ends_in_one_paragraph_and_keeps_every_earlier_result(small_disk, tmp_path, data_dir):
    from tests.helpers.configs import test_config

    train(test_config(small_disk / "earlier", data_dir, *(o for o in TINY if not o.startswith("callbacks."))))
    before = digest(small_disk / "earlier")
    # An MLP's checkpoints (0.8 MB each) fill the disk at its second best epoch.
    result = run_cli("experiment=d2l/mlp", "data.train_subset=2000", "data.test_subset=500", "trainer.max_epochs=4",
                     "callbacks.progress_bar=null", "hydra.run.dir=full", cwd=small_disk, data_dir=data_dir)  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "Traceback" not in output
    (message,) = paragraphs(output)
    run = small_disk / "full"
    assert f"its folder {run} no longer takes writes" in message and "No space left on device" in message
    assert f"resume from it with ckpt_path={run}" in message
    record = read_metrics(run)
    assert record["status"] == "failed" and "No space left on device" in record["error"]
    assert not list(small_disk.rglob("*.tmp"))  # no half-written leftovers
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)  # the last good one, whole
    assert checkpoint["epoch"] == 0 and "net.1.weight" in checkpoint["state_dict"]
    assert digest(small_disk / "earlier") == before


@pytest.mark.slow  # a write that fails mid-run: the full disk (above) takes the same path
def test_a_folder_made_read_only_mid_run_ends_in_one_paragraph(tmp_path, data_dir):
    run = tmp_path / "run"
    env = {**os.environ, "D2LEXP_DATA": str(data_dir), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "d2lexp", "experiment=d2l/mlp", "data.train_subset=30000", "data.test_subset=500",
         "trainer.max_epochs=20", "callbacks.progress_bar=null", f"hydra.run.dir={run}"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    last, deadline = run / "checkpoints" / "last.ckpt", time.time() + 240
    while not last.exists() and time.time() < deadline:
        time.sleep(0.05)
    # As root, permissions do not stop writes: a read-only bind mount over the folder does.
    bound = subprocess.run(["mount", "--bind", str(run), str(run)], capture_output=True)
    if bound.returncode != 0:
        process.kill()
        pytest.skip(f"making a folder read-only under a running process needs root ({bound.stderr.decode().strip()})")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(run)], check=True, capture_output=True)
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 1 and "Traceback" not in output, output[-3000:]
        (message,) = paragraphs(output)
        assert f"its folder {run} no longer takes writes" in message and "Read-only file system" in message
        assert "metrics.json could not be updated either (it still says running)" in message
        assert read_metrics(run)["status"] == "running"  # as the message says
        assert torch.load(last, weights_only=True)["state_dict"]  # the last good checkpoint, whole
    finally:
        subprocess.run(["umount", "-l", str(run)], capture_output=True)


@pytest.mark.parametrize("override", ["data.batch_size=abc", "optimizer.momentum=abc", "trainer.max_epochs=abc"])
def test_wrong_types_are_refused_while_composing(override):
    from hydra.errors import ConfigCompositionException

    from tests.helpers.configs import compose_config

    with pytest.raises(ConfigCompositionException) as refused:
        compose_config(["experiment=d2l/lenet", override])
    assert override.split("=")[0].split(".")[-1] in str(refused.value.__cause__)


@pytest.mark.parametrize(
    "override, message",
    [
        ("optimizer.lr=-0.1", "The optimizer settings are not valid: Invalid learning rate: -0.1"),
        ("data.batch_size=-1", "data.batch_size must be a positive integer, got -1"),
        ("data.val_size=-5", "data.val_size must be in [0, 60000), got -5"),
        ("optimizer.momentum=-0.5", "The optimizer settings are not valid: Invalid momentum value: -0.5"),
        ("speed.compile=fast", "speed.compile='fast' is not a compile setting"),
    ],
)
def test_out_of_range_values_fail_before_the_data_is_read(make_cfg, override, message, tmp_path):
    cfg = make_cfg("experiment=d2l/lenet", override, "paths.data_dir=/nonexistent")
    with pytest.raises(D2lexpError) as err:
        train(cfg)
    assert message in str(err.value)


@pytest.mark.slow  # the diverged status is the sweep report's test above, in less time
def test_a_loss_that_explodes_while_finite_is_diverged(tmp_path, data_dir):
    """The book's LeNet at lr 1e6: the loss stays finite (1.6e7) at chance accuracy, which is not "done"."""
    result = run_cli("experiment=d2l/lenet", "optimizer.lr=1e6", "data.train_subset=5000", "data.test_subset=500",
                     "trainer.max_epochs=3", "callbacks.progress_bar=null", "hydra.run.dir=run",
                     cwd=tmp_path, data_dir=data_dir)  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "Traceback" not in output
    assert "lenet diverged: the mean training loss of the epoch" in output and "more than 10 times" in output
    record = read_metrics(tmp_path / "run")
    assert record["status"] == "diverged" and record["epochs"] == 1 and record["train/loss"] > 1e3


def test_metrics_json_is_strict_json_and_names_what_was_not_finite(tmp_path):
    from d2lexp.metrics_file import write_metrics

    write_metrics(tmp_path, {"status": "diverged", "train/loss": float("inf"),
                             "history": {"val/loss": [1.0, float("nan")]}, "non_finite": "stale"})  # fmt: skip
    text = (tmp_path / "metrics.json").read_text()
    assert "Infinity" not in text and "NaN" not in text
    record = json.loads(text, parse_constant=lambda c: pytest.fail(f"not strict JSON: {c}"))
    assert record["train/loss"] is None and record["history"]["val/loss"] == [1.0, None]
    assert record["non_finite"] == {"train/loss": "inf", "history.val/loss[1]": "nan"}


def test_ckpt_path_last_resumes_only_a_run_with_the_same_settings(tmp_path, data_dir, make_cfg):
    """The newest run is an MLP's: resuming "last" for softmax regression takes the older softmax run;
    with no softmax run at all, it is refused, naming the newest run and how it differs. (The runs
    are recorded as Hydra records them: their composed config in .hydra/config.yaml.)"""
    from omegaconf import OmegaConf

    from d2lexp.checkpoint import defining_settings, find_checkpoint
    from d2lexp.errors import CheckpointError

    def run(name: str, *overrides: str):
        cfg = make_cfg(*overrides, "data.train_subset=1000", "data.test_subset=500", "trainer.max_epochs=1",
                       output_dir=tmp_path / "outputs" / name)  # fmt: skip
        train(cfg)
        (tmp_path / "outputs" / name / ".hydra").mkdir()
        OmegaConf.save(cfg, tmp_path / "outputs" / name / ".hydra" / "config.yaml")  # as Hydra saves it: unresolved
        return cfg

    softmax = run("softmax", "experiment=d2l/softmax")
    run("mlp", "experiment=d2l/mlp")  # the newest
    before = digest(tmp_path / "outputs")

    def settings(cfg):
        return defining_settings(OmegaConf.to_container(cfg, resolve=False))

    found = find_checkpoint("last", tmp_path / "outputs", settings=settings(softmax))
    assert found == (tmp_path / "outputs" / "softmax" / "checkpoints" / "last.ckpt").resolve()
    other = make_cfg("experiment=d2l/softmax", "optimizer.lr=0.5", "data.train_subset=1000", "data.test_subset=500")
    with pytest.raises(CheckpointError) as refused:
        find_checkpoint("last", tmp_path / "outputs", settings=settings(other))
    message = str(refused.value)
    assert "no run under" in message and "was trained with this run's settings" in message
    assert f"The newest, {tmp_path / 'outputs' / 'mlp'}, differs (model._target_: 'd2lexp.models.mlp.MLP'" in message
    assert "optimizer.lr: 0.1 there, 0.5 here" in message
    assert digest(tmp_path / "outputs") == before  # looking changed nothing


@pytest.mark.parametrize(
    "preset, group, added, changed",
    [
        ("d2l/lenet", "task", ["label_smoothing", "test_time_flip"], "task.label_smoothing=0.1"),
        ("d2l/rnn", "data", ["pipeline", "num_train", "num_val"], "data.pipeline=d2l_1"),
    ],
)
def test_settings_added_later_match_runs_made_before_them_at_their_neutral_values(
    make_cfg, preset, group, added, changed
):
    """A run recorded before augmentation, label smoothing, test-time flips and the d2l_1 text
    pipeline existed has the settings of today's run that leaves them at their constructors' defaults
    (one rule, derived from the constructors: nothing lists the settings added later)."""
    from omegaconf import OmegaConf

    from d2lexp.checkpoint import defining_settings, setting_differences

    def settings(*overrides: str) -> dict:
        return defining_settings(OmegaConf.to_container(make_cfg(f"experiment={preset}", *overrides), resolve=False))

    today = settings()
    recorded = {k: v for k, v in today.items() if not k.startswith("augment.")}
    recorded = {k: v for k, v in recorded.items() if not any(k == f"{group}.{a}" for a in added)}
    assert setting_differences(recorded, today) == []
    assert setting_differences(recorded, settings(changed)) == [changed.split("=")[0]]
    assert setting_differences(recorded, settings("augment=flip_crop")) == ["augment.crop_padding", "augment.flip"]


def test_no_epoch_limit_is_said_at_the_start(make_cfg, caplog, tmp_path):
    cfg = make_cfg("experiment=d2l/softmax", "trainer.max_epochs=-1", "trainer.max_steps=3", "data.train_subset=512")
    train(cfg)
    assert "no epoch limit" not in caplog.text  # max_steps ends it
    cfg = make_cfg("experiment=d2l/softmax", "trainer.max_epochs=-1", "data.train_subset=512", "debug=fdr",
                   output_dir=tmp_path / "unlimited")  # fmt: skip
    train(cfg)
    assert "trainer.max_epochs=-1: no epoch limit. This run trains until it is stopped" in caplog.text


def test_a_best_checkpoint_deleted_during_the_run_is_not_recorded(make_cfg, tmp_path):
    import lightning.pytorch as pl

    from d2lexp.speed.checkpoints import BackgroundCheckpointIO

    class DeleteTheBest(pl.Callback):
        def on_train_end(self, trainer, pl_module):
            if isinstance(trainer.strategy.checkpoint_io, BackgroundCheckpointIO):
                trainer.strategy.checkpoint_io.wait()  # the files are written before they are deleted
            for path in (tmp_path / "run" / "checkpoints").glob("epoch*.ckpt"):
                path.unlink()

    record = train(make_cfg("experiment=d2l/softmax", "data.train_subset=1000", "trainer.max_epochs=2"),
                   callbacks=[DeleteTheBest()])  # fmt: skip
    assert record["best_checkpoint"] is None and record["last_checkpoint"].endswith("last.ckpt")


@pytest.mark.slow  # a SIGTERM's resume: the SIGKILL resume below and the Slurm requeue tests take the same path
def test_sigterm_saves_a_last_checkpoint_and_auto_finishes_exactly(tmp_path, tmp_path_factory, data_dir):
    """A scheduler's SIGTERM (a time limit, a preemption) mid-epoch: the run saves the state of
    that moment and says `interrupted`; the same command again (a requeued job, ckpt_path=auto)
    goes on in the same folder and ends with the numbers of a run never stopped."""
    env = {**os.environ, "D2LEXP_DATA": str(data_dir), "PYTHONUNBUFFERED": "1"}
    job = tmp_path / "outputs" / "job"
    longer = [*RUN, "data.train_subset=20000"]  # 200 steps an epoch: time to stop it inside the second
    command = [sys.executable, "-m", "d2lexp", *longer, "hydra.run.dir=outputs/job", "ckpt_path=auto"]
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:  # into the second epoch: the first one's history is recorded
        with contextlib.suppress(OSError, ValueError):
            if json.loads((job / "metrics.json").read_text()).get("history", {}).get("epoch") == [0]:
                break
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 143  # as a shell reports a run ended by SIGTERM
    record = read_metrics(job)
    assert record["status"] == "interrupted" and "SIGTERM" in record["error"]
    saved = torch.load(job / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["epoch"] == 1 and saved["global_step"] % 200 > 0  # the moment it stopped, mid-epoch

    again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    a, (b, _) = read_metrics(job), uninterrupted(tmp_path_factory, data_dir, "data.train_subset=20000")
    assert a["status"] == "done" and a["history"]["epoch"] == [0, 1]
    for key in ("train/loss", "train/acc", "val/acc", "test/acc", "test/loss"):
        assert a[key] == b[key], key
