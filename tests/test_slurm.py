"""d2lexp on a real Slurm cluster: sweeps through the Slurm launcher (d2lexp/slurm.py), jobs
cancelled or requeued, and DDP across a job's Slurm tasks.

The cluster is this machine: `scripts/slurm_local.sh start` (then SLURM_CONF names its config;
the tests also look in $D2LEXP_SLURM_DIR, default /tmp/d2lexp-slurm). Without one these tests
skip, saying why; under CI (the CI variable set) they fail instead. Every job runs this
checkout's code (PYTHONPATH), as real Slurm jobs of the test's own sweep.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from d2lexp.metrics_file import read_metrics
from d2lexp.report import collect
from tests.helpers.configs import REPO, test_config

QUIET = ["callbacks.progress_bar=null", "callbacks.model_summary=null", "callbacks.test_pictures=null"]
TINY = ["experiment=d2l/softmax", "data.train_subset=1000", "data.test_subset=500", "trainer.max_epochs=1"]
# The run the requeue tests stop and resume: 60 steps an epoch, 2 epochs, and a 40 MB checkpoint
# (Adam's two moments beside 3.3 M weights), long enough to write that a test can catch it writing.
REQUEUED = ["experiment=d2l/mlp", "model.num_hiddens=4096", "optimizer=adam", "optimizer.lr=0.001",
            "data.train_subset=6000", "data.test_subset=1000", "data.batch_size=100", "trainer.max_epochs=2",
            "seed=11"]  # fmt: skip
STEPS = 60  # an epoch's
UP = ("idle", "mix", "alloc", "comp")  # a node that takes jobs (comp: one is ending)


def cluster_config() -> Path | None:
    if os.environ.get("SLURM_CONF"):
        return Path(os.environ["SLURM_CONF"])
    started = Path(os.environ.get("D2LEXP_SLURM_DIR", "/tmp/d2lexp-slurm")) / "slurm.conf"
    return started if started.is_file() else None


@pytest.fixture(scope="session")
def slurm(data_dir) -> dict[str, str]:
    """The environment of commands that reach the cluster: its SLURM_CONF, the data, and this
    checkout on PYTHONPATH (Slurm jobs inherit the environment they are submitted from)."""
    config, problem = cluster_config(), None
    env = {**os.environ, "D2LEXP_DATA": str(data_dir), "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}  # fmt: skip
    if shutil.which("sbatch") is None:
        problem = "Slurm is not installed (apt-get install slurm-wlm munge)"
    elif config is None:
        problem = "no Slurm cluster: start one with scripts/slurm_local.sh start"
    else:
        env["SLURM_CONF"] = str(config)
        nodes = subprocess.run(["sinfo", "--noheader", "--format=%t"], env=env, capture_output=True, text=True,
                               timeout=30)  # fmt: skip
        if nodes.returncode != 0 or not set(nodes.stdout.replace("*", "").split()) & set(UP):
            problem = f"the Slurm cluster of {config} has no node up: {(nodes.stderr or nodes.stdout).strip()}"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"CI runs the Slurm tests, but {problem}")
        pytest.skip(problem)
    return env


def slurm_command(env: dict[str, str], *command: str) -> str:
    return subprocess.run(command, env=env, check=True, capture_output=True, text=True, timeout=60).stdout


def job_state(env: dict[str, str], job: str) -> str:
    """The job's state as the controller has it (`RUNNING`, `PENDING`, `COMPLETED`, ...)."""
    listed = slurm_command(env, "squeue", "--noheader", "--array", "--states=all", "--format=%i %T", f"--jobs={job}")
    return dict(line.split() for line in listed.splitlines())[job]


def restarts(env: dict[str, str], job: str) -> int:
    return int(re.search(r"Restarts=(\d+)", slurm_command(env, "scontrol", "show", "job", job)).group(1))


def start_sweep(env: dict[str, str], cwd: Path, *overrides: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "d2lexp", "-m", "hydra/launcher=slurm_cpu", *overrides, *QUIET,
               f"hydra.sweep.dir={cwd / 'sweep'}"]  # fmt: skip
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(sweep: subprocess.Popen, timeout: int = 300) -> str:
    output, _ = sweep.communicate(timeout=timeout)
    return output


def wait_for(what: str, found: Callable[[], object], timeout: float = 180) -> object:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with contextlib.suppress(OSError, ValueError, KeyError):
            if value := found():
                return value
        time.sleep(0.02)
    raise AssertionError(f"waited {timeout} s for {what}")


def second_epoch_started(folder: Path) -> dict:
    """The job's record once its first epoch is recorded (it is into its second)."""
    return wait_for(
        f"{folder} to start its second epoch",
        lambda: (
            (record := json.loads((folder / "metrics.json").read_text())).get("history", {}).get("epoch") == [0]
            and record
        ),
    )


def start_now(env: dict[str, str], job: str) -> None:
    """Lift a pending job's hold. The job may start between the look at its state and this update
    (the scheduler's own pass, an earlier update): then scontrol refuses, and that is no failure."""
    try:
        slurm_command(env, "scontrol", "update", f"JobId={job}", "StartTime=now")
    except subprocess.CalledProcessError:
        if job_state(env, job) == "PENDING":
            raise


def release(env: dict[str, str], job: str) -> None:
    """Start a requeued job now: Slurm holds one for two minutes (its BeginTime) before it may start
    again, as an admin might release it."""
    wait_for(f"job {job} to be requeued", lambda: job_state(env, job) == "PENDING")
    # Not at once: the node revokes the job's old credential once its processes are gone, and a
    # rerun started before that is refused ("Job credential revoked"), which the hold prevents.
    time.sleep(5)
    start_now(env, job)


def assert_the_same_run(folder: Path, reference: tuple[dict, dict]) -> None:
    """The job's record and weights are those of the same run never interrupted, bit for bit, and
    its record is one run's: one history, each epoch once."""
    record, (straight, weights) = read_metrics(folder), reference
    assert record["status"] == "done" and record["history"]["epoch"] == [0, 1]
    assert record["history"]["train/loss"] == straight["history"]["train/loss"]
    for key in ("train/loss", "train/acc", "val/acc", "test/acc", "test/loss"):
        assert record[key] == straight[key], key
    resumed = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert all(torch.equal(resumed[k], weights[k]) for k in weights if k.startswith("net."))
    assert not list(folder.rglob("*.tmp"))  # nothing half-written left behind


def trained_here(cfg) -> dict:
    """The record of `cfg` trained in this process, with one thread as a Slurm job computes with
    slurm_cpu's one core (hydra.launcher.cpus_per_task=1)."""
    from d2lexp.train import train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train(cfg)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def straight(tmp_path_factory, data_dir) -> tuple[dict, dict]:
    """The record and final weights of REQUEUED trained in this process, never interrupted."""
    folder = tmp_path_factory.mktemp("straight") / "run"
    record = trained_here(test_config(folder, data_dir, *REQUEUED))
    return record, torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def test_a_sweep_runs_as_slurm_jobs_and_reports_every_row(slurm, tmp_path, make_cfg):
    """Two jobs of a job array, one with a bad value: it fails as a row, and the other finishes with
    exactly the numbers of the same run in this process."""
    sweep = start_sweep(slurm, tmp_path, *TINY, "optimizer.lr=0.1,-1")
    output = finish(sweep)
    assert sweep.returncode == 1, output[-3000:]  # a job did not finish
    rows = collect(tmp_path / "sweep")
    assert [(r["job"], r["status"]) for r in rows] == [("0", "done"), ("1", "failed")], output[-3000:]
    assert "Invalid learning rate: -1" in rows[1]["reason"]
    jobs = [read_metrics(tmp_path / "sweep" / row["job"])["slurm_job"] for row in rows]
    array = jobs[0].split("_")[0]
    assert jobs == [f"{array}_0", f"{array}_1"]  # the two tasks of one Slurm job array...
    assert [job_state(slurm, job) for job in jobs] == ["COMPLETED", "COMPLETED"]  # ...that Slurm ran to the end
    assert read_metrics(tmp_path / "sweep" / "0")["threads"] == 1  # the one core Slurm gave it
    here = trained_here(make_cfg(*TINY, "optimizer.lr=0.1"))
    for key in ("train/loss", "val/acc", "test/acc"):
        assert rows[0][key] == here[key], key
    report = (tmp_path / "sweep" / "report.md").read_text()
    assert "| 0 | optimizer.lr=0.1 |" in report and "| failed | The optimizer settings are not valid" in report


@pytest.mark.slow  # two jobs at once need the cluster's two cores to themselves (the sweep test is the default one)
def test_a_searchs_workers_are_slurm_jobs_sharing_its_journal(slurm, tmp_path):
    """search.launcher=slurm: each worker a Slurm job, both asking the one study in the search's
    folder (Optuna's journal file, as on a cluster's shared file system) for trials."""
    command = [sys.executable, "-m", "d2lexp.search", "hparams_search=d2l_asha", "search.launcher=slurm",
               "search.workers=2", "search.trials=4", "search.pruner.min_resource=1", "search.slurm.mem_gb=2",
               "experiment=d2l_1/softmax", "data.train_subset=1000", "data.val_size=1000", "data.test_subset=500",
               "trainer.max_epochs=2", *QUIET, f"paths.log_dir={tmp_path / 'outputs'}"]  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, env=slurm, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    (folder,) = (tmp_path / "outputs" / "search").glob("*/*")
    summary = json.loads((folder / "search.json").read_text())
    records = [read_metrics(trial) for trial in sorted((folder / "trials").iterdir())]
    assert len(records) >= 4 and summary["failed"] == 0 and summary["best"]["value"] > 0.5  # it learned
    jobs = {r["slurm_job"] for r in records}
    # Trials in both jobs, each of which ends COMPLETED (a job may still be COMPLETING as the search ends).
    ended = {job: wait_for(f"job {job} to end", lambda j=job: job_state(slurm, j) not in ("RUNNING", "COMPLETING") and
                           job_state(slurm, j), timeout=60) for job in jobs}  # fmt: skip
    assert len(jobs) == 2 and set(ended.values()) == {"COMPLETED"}, ended
    spans = sorted((r["started_at"], r["finished_at"]) for r in records)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:]))  # two at the same time
    assert (folder / "study.journal").is_file() and len(
        [p for p in (folder / ".submitit").iterdir() if p.is_dir()]
    ) == 2


@pytest.mark.slow
def test_a_cancelled_job_is_a_row_that_says_so(slurm, tmp_path):
    sweep = start_sweep(slurm, tmp_path, *TINY, "data.train_subset=20000", "trainer.max_epochs=1,20")
    record = second_epoch_started(tmp_path / "sweep" / "1")
    slurm_command(slurm, "scancel", record["slurm_job"])
    output = finish(sweep)
    assert sweep.returncode == 1, output[-3000:]
    rows = collect(tmp_path / "sweep")
    assert [r["status"] for r in rows] == ["done", "interrupted"], output[-3000:]
    assert rows[1]["reason"] == f"cancelled in Slurm (scancel); Slurm job {record['slurm_job']}, CANCELLED"
    assert job_state(slurm, record["slurm_job"]) == "CANCELLED"
    # The run stopped where its step ended, its state saved: it can be resumed.
    assert torch.load(tmp_path / "sweep" / "1" / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1


@pytest.mark.slow
def test_a_requeued_job_resumes_exactly_in_its_own_folder(slurm, tmp_path, straight):
    """`scontrol requeue` (a preemption takes the same path) in the middle of an epoch: Slurm's SIGTERM
    stops the run where its step ends; the requeued job goes on from there, in its own folder."""
    sweep = start_sweep(slurm, tmp_path, *REQUEUED)
    folder = tmp_path / "sweep" / "0"
    job = second_epoch_started(folder)["slurm_job"]
    slurm_command(slurm, "scontrol", "requeue", job)
    release(slurm, job)
    stopped = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)
    assert stopped["epoch"] == 1 and stopped["global_step"] % STEPS > 0  # saved mid-epoch, as it stopped
    output = finish(sweep)
    assert sweep.returncode == 0, output[-3000:]
    assert restarts(slurm, job) == 1
    assert read_metrics(folder)["resumed_from"] == str(folder / "checkpoints" / "last.ckpt")
    assert_the_same_run(folder, straight)
    # Its own folder and nothing else: no second job folder, no second sweep folder.
    assert sorted(p.name for p in (tmp_path / "sweep").iterdir() if not p.name.startswith(".")) == [
        "0", "multirun.yaml", "report.csv", "report.md", "report.png"]  # fmt: skip
    assert [p.name for p in tmp_path.iterdir()] == ["sweep"]


@pytest.mark.slow
def test_the_time_limit_signal_requeues_and_resumes_exactly(slurm, tmp_path, straight):
    """Slurm's warning before the time limit (USR2, sent here at once with scancel --signal, as
    submitit's own tests send it; under a 50-minute limit submitit takes any such signal for the
    time limit's): submitit requeues the job, and the run stops where its step ends, not where
    the signal found it."""
    sweep = start_sweep(slurm, tmp_path, *REQUEUED, "hydra.launcher.timeout_min=10")
    folder = tmp_path / "sweep" / "0"
    job = second_epoch_started(folder)["slurm_job"]
    slurm_command(slurm, "scancel", "--signal=USR2", job)
    release(slurm, job)
    stopped = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)
    assert stopped["epoch"] == 1 and stopped["global_step"] % STEPS > 0
    log = (folder / "train.log").read_text()
    # submitit's word for the signal, and the requeue (scontrol's answer may be cut short by the
    # requeue's own stop, before submitit says "Requeued job"; d2lexp says it either way).
    assert "this job is timed-out" in log and "Requeued: the run stops at the end of this step" in log
    output = finish(sweep)
    assert sweep.returncode == 0, output[-3000:]
    assert restarts(slurm, job) == 1
    assert_the_same_run(folder, straight)


@pytest.mark.slow
def test_a_job_not_requeued_trains_on_undisturbed(slurm, tmp_path, straight):
    """The time limit's warning to a job that has used up its requeues (max_num_timeout=0, as
    hydra/launcher=slurm had): submitit gives up, and the run trains on, as if never signalled."""
    sweep = start_sweep(slurm, tmp_path, *REQUEUED, "hydra.launcher.max_num_timeout=0",
                        "hydra.launcher.timeout_min=10")  # fmt: skip  # under 50 min: any warning is the time limit's
    folder = tmp_path / "sweep" / "0"
    job = second_epoch_started(folder)["slurm_job"]
    slurm_command(slurm, "scancel", "--signal=USR2", job)
    output = finish(sweep)
    assert sweep.returncode == 0, output[-3000:]
    assert restarts(slurm, job) == 0
    log = (folder / "train.log").read_text()
    assert "not requeued because: timed-out too many times" in log and "the run goes on until the time limit" in log
    assert_the_same_run(folder, straight)


@pytest.mark.slow
def test_a_job_killed_while_writing_its_checkpoint_loses_nothing(slurm, tmp_path, straight):
    """Requeued, and killed while it writes the checkpoint of that moment (as Slurm's SIGKILL would,
    KillWait after its SIGTERM): the file being written is a temporary one, the last checkpoint
    stays whole, and the requeued job goes on from it to exactly the uninterrupted result."""
    sweep = start_sweep(slurm, tmp_path, *REQUEUED)
    folder = tmp_path / "sweep" / "0"
    record = second_epoch_started(folder)
    last = folder / "checkpoints" / "last.ckpt"
    wait_for("the first epoch's checkpoint", lambda: torch.load(last, weights_only=True)["global_step"] == STEPS)
    before = last.read_bytes()
    slurm_command(slurm, "scontrol", "requeue", record["slurm_job"])
    deadline, writing = time.time() + 60, None
    while time.time() < deadline:  # the write takes a fraction of a second: look without pausing
        with contextlib.suppress(FileNotFoundError, StopIteration):
            writing = next(last.parent.glob(".last.ckpt.*.tmp"))  # written under a fresh name beside it
            if writing.stat().st_size > 2**20:  # a megabyte of the 40 written
                break
    os.kill(record["pid"], signal.SIGSTOP)  # caught mid-write, held there...
    assert writing is not None and writing.exists(), "the run wrote its checkpoint too quickly to be caught writing it"
    os.kill(record["pid"], signal.SIGKILL)  # ...and killed there
    with pytest.raises(RuntimeError, match="zip archive"):
        torch.load(writing, weights_only=True)  # it was cut short: not a checkpoint
    cut_short = writing.stat().st_size
    assert last.read_bytes() == before  # the last checkpoint is whole, untouched
    release(slurm, record["slurm_job"])
    output = finish(sweep)
    assert sweep.returncode == 0, output[-3000:]
    assert_the_same_run(folder, straight)  # and the killed write's leftover was removed as the job resumed
    assert cut_short < last.stat().st_size  # a whole checkpoint of this run is larger


@pytest.mark.slow
def test_ddp_across_two_slurm_tasks_equals_ddp_sim(slurm, tmp_path, data_dir, monkeypatch):
    """trainer=slurm_cpu with 2 tasks of one job: Slurm starts both processes (a -m sweep may use
    DDP here: nothing re-runs the command), each trains its shard, the first writes the one run
    folder; the same run as trainer=ddp_sim, whose 2 processes Lightning starts."""
    from tests.helpers.cli import run_cli

    settings = ["experiment=d2l/softmax", "data.train_subset=4000", "data.test_subset=1000", "data.batch_size=100",
                "trainer.max_epochs=2", *QUIET]  # fmt: skip
    sweep = start_sweep(slurm, tmp_path, *settings, "trainer=slurm_cpu", "hydra.launcher.tasks_per_node=2")
    output = finish(sweep)
    assert sweep.returncode == 0, output[-3000:]
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # each process one thread, as each Slurm task (one core each)
    local = run_cli("trainer=ddp_sim", *settings, "hydra.run.dir=ddp_sim", cwd=tmp_path, data_dir=data_dir)
    assert local.returncode == 0, local.stderr[-3000:]

    folder = tmp_path / "sweep" / "0"
    on_slurm, simulated = read_metrics(folder), read_metrics(tmp_path / "ddp_sim")
    assert on_slurm["world_size"] == 2 and on_slurm["global_step"] == 2 * 20  # 4000 / 2 processes / 100
    job = on_slurm["slurm_job"]
    assert sorted(p.name for p in (tmp_path / "sweep" / ".submitit" / job).glob("*_log.out")) == [
        f"{job}_0_log.out", f"{job}_1_log.out"]  # fmt: skip  # Slurm ran both tasks
    # Each process logs to a file of its own, as with ddp_sim: the second one to train_ddp_process_1.log.
    assert "GLOBAL_RANK: 1" in (folder / "train_ddp_process_1.log").read_text()
    assert "GLOBAL_RANK: 1" not in (folder / "train.log").read_text()
    learned = [k for k in simulated["history"] if "loss" in k or "acc" in k]  # not the timings
    assert learned and all(on_slurm["history"][k] == simulated["history"][k] for k in learned)
    for key in ("train/loss", "train/acc", "val/acc", "test/acc", "test/loss"):
        assert on_slurm[key] == simulated[key], key
    weights = [torch.load(f / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
               for f in (folder, tmp_path / "ddp_sim")]  # fmt: skip
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[1] if k.startswith("net."))


@pytest.mark.slow
def test_a_job_at_its_time_limit_is_requeued_until_it_is_done(slurm, tmp_path, straight):
    """A one-minute limit and Slurm's own warning 30 s before it (hydra.launcher.signal_delay_s):
    Slurm signals the job while it trains, submitit requeues it, and so on until its 16 epochs are
    done. One run's record; its first two epochs are those of the run never stopped."""
    # 16 epochs: well past the first signal (30 s in) on a quiet machine too (about 3 s an epoch).
    sweep = start_sweep(slurm, tmp_path, *REQUEUED, "trainer.max_epochs=16", "hydra.launcher.timeout_min=1",
                        "hydra.launcher.signal_delay_s=30")  # fmt: skip
    folder = tmp_path / "sweep" / "0"
    job = wait_for("the job to start", lambda: read_metrics(folder)["slurm_job"], timeout=60)
    deadline, pending_since = time.time() + 400, None
    while sweep.poll() is None and time.time() < deadline:
        if job_state(slurm, job) == "PENDING" and restarts(slurm, job) > 0:
            pending_since = pending_since or time.time()
            if time.time() - pending_since > 5:  # as release() does, once the old credential is revoked
                start_now(slurm, job)
        else:
            pending_since = None
        time.sleep(0.5)
    output = finish(sweep, timeout=10)
    assert sweep.returncode == 0, output[-3000:]
    assert restarts(slurm, job) >= 1
    record = read_metrics(folder)
    assert record["status"] == "done" and record["history"]["epoch"] == list(range(16))
    assert record["history"]["train/loss"][:2] == straight[0]["history"]["train/loss"]
    # submitit's word for the time limit's signal: in the run's log, or in the job's own if Slurm sent
    # it while the job was starting (Slurm may send it up to a minute early: here, at any time).
    logs = [folder / "train.log", *(tmp_path / "sweep" / ".submitit" / job).glob("*_log.out")]
    assert any("this job is timed-out" in log.read_text() for log in logs)
