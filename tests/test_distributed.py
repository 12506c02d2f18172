"""Beyond one process, for real: DDP simulated on the CPU (2 processes, gloo), parallel sweeps
with joblib, submitit's local executor, and an Optuna search."""

import json

import pytest
import torch

from d2lexp.checkpoint import load_net
from d2lexp.data.fashion_mnist import FashionMNISTDataModule
from d2lexp.report import collect
from tests.helpers.cli import run_cli

QUICK = ["data.test_subset=1000", "callbacks.progress_bar=null", "callbacks.model_summary=null"]


def test_ddp_sim_shares_the_data_and_reduces_the_metrics(tmp_path, data_dir):
    run_dir = tmp_path / "ddp"
    result = run_cli(
        "trainer=ddp_sim", "experiment=d2l/softmax", "data.train_subset=4000", "data.batch_size=100",
        "trainer.max_epochs=2", *QUICK, f"hydra.run.dir={run_dir}", cwd=tmp_path, data_dir=data_dir,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "done" and record["world_size"] == 2
    # Each of the 2 processes trains its own half of every epoch: 4000 / 2 / 100 = 20 steps an epoch.
    assert record["global_step"] == 2 * 20
    assert (run_dir / "train_ddp_process_1.log").is_file()  # the second process, in the same folder
    assert len(list((run_dir / "tensorboard").glob("events.out.tfevents.*"))) >= 1
    assert not any(p.name.startswith("version_") for p in run_dir.rglob("*"))  # one TensorBoard run
    # The reported test accuracy is the one over the whole test slice, not one process's half:
    net = load_net(run_dir / "checkpoints" / "last.ckpt")
    dm = FashionMNISTDataModule(data_dir=str(data_dir), test_subset=1000, download=False)
    dm.setup()
    images, labels = dm.splits["test"]
    with torch.no_grad():
        accuracy = (net(dm.transform(images)).argmax(1) == labels).float().mean().item()
    assert record["test/acc"] == pytest.approx(accuracy, abs=1e-6)
    assert record["test/acc"] > 0.5


def test_sweeps_refuse_relaunching_ddp(make_cfg, monkeypatch):
    """In a -m sweep, trainer=ddp on one machine would re-run the whole sweep in every process."""
    from d2lexp import build
    from d2lexp.errors import ConfigError

    monkeypatch.setattr("d2lexp.build.in_multirun", lambda: True)  # a job of a sweep
    with pytest.raises(ConfigError) as refused:
        build.trainer(make_cfg("trainer=ddp_sim"), [], [])
    assert (
        "issue #11300" in str(refused.value)
        and "ddp_spawn" in str(refused.value)
        and "one task per GPU" in str(refused.value)
    )
    monkeypatch.setattr("d2lexp.build.in_multirun", lambda: False)  # a single run may
    assert build.trainer(make_cfg("trainer=ddp_sim"), [], []).world_size == 2


@pytest.mark.slow  # SLURM's launcher, run locally: the same launch path as the parallel launcher's tests
def test_submitit_local_executor_runs_a_sweep(tmp_path, data_dir):
    result = run_cli("-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", "experiment=d2l/softmax",
                     "seed=1,2", "trainer.max_epochs=1", "data.train_subset=3000", *QUICK,
                     cwd=tmp_path, data_dir=data_dir)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = next((tmp_path / "outputs" / "multirun").glob("*/*"))
    rows = collect(sweep)
    assert [r["status"] for r in rows] == ["done", "done"]
    assert (sweep / ".submitit").is_dir() and (sweep / "report.md").is_file()
