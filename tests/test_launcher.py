"""`hydra/launcher=parallel`: jobs side by side, each in its own process; one that is killed (as
the out-of-memory killer kills) leaves the others to finish, and the report lists every job."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from d2lexp.launcher import Slot
from d2lexp.report import collect
from d2lexp.train import train
from tests.helpers.cli import run_cli

PARALLEL = ["hydra/launcher=parallel", "hydra.launcher.jobs_per_device=2", "hydra.launcher.devices=cpu"]
QUICK = ["experiment=d2l/softmax", "data.train_subset=20000", "data.test_subset=1000", "callbacks.progress_bar=null",
         "callbacks.model_summary=null"]  # fmt: skip


@pytest.mark.slow  # the job that cannot be built (below) is a row of its own the same way, in less time
def test_a_killed_job_is_a_crashed_row_and_the_others_finish(tmp_path, data_dir):
    env = {**os.environ, "D2LEXP_DATA": str(data_dir), "PYTHONUNBUFFERED": "1"}
    sweep = tmp_path / "sweep"
    # Job 1 would train long; it is killed while job 0 trains beside it.
    process = subprocess.Popen(
        [sys.executable, "-m", "d2lexp", "-m", *PARALLEL, *QUICK, "trainer.max_epochs=3,200", f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    records, deadline = [{}, {}], time.time() + 240
    while any(r.get("status") != "running" for r in records) and time.time() < deadline:  # both jobs training
        time.sleep(0.05)
        with contextlib.suppress(OSError, ValueError):
            records = [json.loads((sweep / job / "metrics.json").read_text()) for job in ("0", "1")]
    assert all(r.get("status") == "running" for r in records), "jobs 0 and 1 never ran side by side"
    killed_at = time.time()
    os.kill(records[1]["pid"], signal.SIGKILL)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 1, output[-3000:]  # a job did not finish: the sweep says so
    rows = collect(sweep)
    assert [r["status"] for r in rows] == ["done", "crashed"]
    assert rows[1]["reason"].startswith("its process was killed by SIGKILL") and "out-of-memory" in rows[1]["reason"]
    assert rows[0]["epochs"] == 3 and rows[0]["test/acc"] > 0.6
    report = (sweep / "report.md").read_text()
    assert "1 of 2 jobs done" in report and "| crashed | its process was killed by SIGKILL" in report
    assert "job 1 (crashed: its process was killed by SIGKILL" in output and "Traceback" not in output
    assert rows[0]["started_at"] < killed_at < rows[0]["finished_at"]  # job 0 was training when job 1 was killed


def test_jobs_that_never_ran_have_rows(tmp_path):
    """A job still pending when the sweep ended (the sweep was stopped before it began) says so."""
    from d2lexp.metrics_file import write_metrics

    write_metrics(tmp_path / "0", {"status": "done", "model": "lenet"})
    write_metrics(tmp_path / "1", {"status": "pending", "job": 1, "overrides": ["seed=2"]})
    rows = collect(tmp_path)
    assert [r["status"] for r in rows] == ["done", "not run"] and "before this job started" in rows[1]["reason"]


@pytest.mark.slow  # the killed-job test runs jobs side by side too; this one adds their order and exact numbers
def test_jobs_run_side_by_side_longest_first_with_their_share_of_threads(tmp_path, data_dir, make_cfg):
    """Two jobs, two at a time on a CPU: the longest (the MLP, by MACs x examples x epochs)
    starts first, the two overlap in time, each computes with its share of the CPU's threads, every
    record is complete, and each job's numbers are those it gets when run alone (one at a time,
    with the same threads)."""
    jobs = ["experiment=d2l/softmax,d2l/mlp", "data.train_subset=6000", "data.test_subset=1000",
            "trainer.max_epochs=2", "callbacks.model_summary=null"]  # fmt: skip
    side_by_side = tmp_path / "side_by_side"
    result = run_cli("-m", *PARALLEL, "hydra.launcher.threads_per_job=1", *jobs,
                     f"hydra.sweep.dir={side_by_side}", cwd=tmp_path, data_dir=data_dir, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = collect(side_by_side)
    assert [r["status"] for r in rows] == ["done"] * 2 and all(r["threads"] == 1 for r in rows)
    assert all(
        r["epochs"] == 2 and r["test/acc"] > 0.5 and r["history"]["epoch"] == [0, 1] for r in rows
    )  # chance: 0.1
    launched = [line.split(" : ")[1] for line in (result.stdout + result.stderr).splitlines() if "\t#" in line]
    assert launched[0].startswith("experiment=d2l/mlp") and len(launched) == 2  # the longest first
    overlapping = [
        (a, b) for a in rows for b in rows if a is not b and a["started_at"] < b["started_at"] < a["finished_at"]
    ]
    assert overlapping, [(r["job"], r["started_at"], r["finished_at"]) for r in rows]
    report = (side_by_side / "report.md").read_text()
    assert "2 of 2 jobs done" in report and "from the first job's start to the last one's end" in report

    # The same jobs alone, one at a time in this process, with the same one thread each.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for row in rows:
            alone = train(make_cfg(*row["overrides"].split(), output_dir=tmp_path / "alone" / row["job"]))
            for key in ("train/loss", "train/acc", "test/acc", "test/loss"):
                assert row[key] == alone[key], (row["job"], key)  # the same seeded numbers, exactly
    finally:
        torch.set_num_threads(threads)


def test_slots_share_the_cpu_among_the_jobs_that_run_at_once():
    from d2lexp.launcher import slots

    cores = os.cpu_count() or 1
    assert slots("cpu", 2, None) == [Slot(None, max(1, cores // 2))] * 2
    assert slots([0, 1], 2, 3) == [Slot(0, 3), Slot(1, 3), Slot(0, 3), Slot(1, 3)]  # round the GPUs


def _wait_for(condition, seconds: float = 240) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        with contextlib.suppress(OSError, ValueError, KeyError):
            if condition():
                return True
        time.sleep(0.05)
    return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not open(f"/proc/{pid}/stat").read().split(") ", 1)[1].startswith("Z")


def _sweep(tmp_path, data_dir, *overrides: str) -> tuple[subprocess.Popen, object]:
    env = {**os.environ, "D2LEXP_DATA": str(data_dir), "PYTHONUNBUFFERED": "1"}
    sweep = tmp_path / "sweep"
    process = subprocess.Popen(
        [sys.executable, "-m", "d2lexp", "-m", *PARALLEL, *QUICK, *overrides, f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    return process, sweep


@pytest.mark.slow  # three processes on two cores (25 s): CI runs it after the suite (.ci/run)
def test_a_job_that_cannot_be_built_fails_alone_and_a_stopped_sweep_stops_its_jobs(tmp_path, data_dir):
    """Job 0's net cannot be built: a failed row, while job 1 runs. Then the sweep's own process is
    sent SIGTERM (a scheduler's time limit): job 1 stops as a terminated run does, the report is
    written, and the command ends with SIGTERM's exit code."""
    process, sweep = _sweep(tmp_path, data_dir, "~experiment", "model=mlp", "model.num_hiddens=-1,64",
                            "trainer.max_epochs=200")  # fmt: skip
    job = lambda n: json.loads((sweep / str(n) / "metrics.json").read_text())  # noqa: E731
    assert _wait_for(lambda: job(0)["status"] == "failed" and len(job(1)["history"]["epoch"]) >= 1), process.stdout
    pid = job(1)["pid"]
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=180)
    assert process.returncode == 143, output[-3000:]
    assert not _alive(pid), "the job outlived its sweep"
    rows = collect(sweep)
    assert [r["status"] for r in rows] == ["failed", "interrupted"]
    assert "The model settings are not valid" in rows[0]["reason"] and "SIGTERM" in rows[1]["reason"]
    assert (sweep / "1" / "checkpoints" / "last.ckpt").is_file()  # job 1 can be resumed where it stopped
    assert "1 of 2" not in (sweep / "report.md").read_text() and "| interrupted |" in (sweep / "report.md").read_text()
    assert "Traceback" not in output


@pytest.mark.slow
def test_jobs_end_when_their_sweep_is_killed_outright(tmp_path, data_dir):
    """SIGKILL gives the sweep's process no chance to stop its jobs: the kernel sends each a SIGTERM."""
    process, sweep = _sweep(tmp_path, data_dir, "seed=1,2", "trainer.max_epochs=200")
    job = lambda n: json.loads((sweep / str(n) / "metrics.json").read_text())  # noqa: E731
    assert _wait_for(lambda: all(len(job(n)["history"]["epoch"]) >= 1 for n in (0, 1)))
    pids = [job(n)["pid"] for n in (0, 1)]
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    assert _wait_for(lambda: not any(_alive(pid) for pid in pids), 60), "jobs outlived their killed sweep"
    assert all(job(n)["status"] == "interrupted" and "SIGTERM" in job(n)["error"] for n in (0, 1))
