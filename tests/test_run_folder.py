"""No run writes into a folder another run owns: runs and sweeps started at the same instant,
an explicit folder naming an earlier run, and a run resumed in its own folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from d2lexp.run_folder import LOCK_FILE, OutputError, claim
from tests.helpers.folders import digest

TINY = ["experiment=d2l/softmax", "data.train_subset=1000", "data.test_subset=500", "trainer.max_epochs=1",
        "callbacks.progress_bar=null", "callbacks.model_summary=null"]  # fmt: skip
# The folder name every run of a second gets, given outright: the same name, the same claim as `${now:...}`.
SAME_NAME = "hydra.run.dir=${new_run_folder:outputs/12-00-00}"


def start(*args: str, cwd: Path, data_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "D2LEXP_DATA": str(data_dir), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "d2lexp", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip


def finish(process: subprocess.Popen) -> tuple[int, str]:
    output, _ = process.communicate(timeout=300)
    return process.returncode, output


def assert_one_runs_records(folder: Path, seed: int, claimed: bool = True) -> None:
    """Everything in `folder` is one run's: its config, its record, its log, its checkpoint."""
    record = json.loads((folder / "metrics.json").read_text())
    assert record["status"] == "done" and record["seed"] == seed and record["output_dir"].endswith(folder.name)
    assert yaml.safe_load((folder / ".hydra" / "config.yaml").read_text())["seed"] == seed
    assert f"seed={seed}" in (folder / ".hydra" / "overrides.yaml").read_text()
    log = (folder / "train.log").read_text()
    assert log.count("softmax: done") == 1 and str(folder) in log
    assert len(list((folder / "tensorboard").glob("events.out.tfevents.*"))) >= 1
    assert (folder / "checkpoints" / "last.ckpt").is_file()
    if claimed:  # a sweep's jobs live in the folder their sweep claimed
        assert json.loads((folder / LOCK_FILE).read_text())["argv"][-1] == f"seed={seed}"


@pytest.mark.slow  # two runs at once (13 s): CI runs it after the suite (.ci/run); a live run's folder refused is tested below
def test_two_runs_started_at_the_same_instant_keep_their_own_records(tmp_path, data_dir):
    runs = [start(*TINY, SAME_NAME, f"seed={seed}", cwd=tmp_path, data_dir=data_dir) for seed in (1, 2)]
    for process in runs:
        code, output = finish(process)
        assert code == 0, output[-2000:]
    folders = sorted((tmp_path / "outputs").iterdir())
    assert [f.name for f in folders] == ["12-00-00", "12-00-00_2"]
    seeds = {json.loads((f / "metrics.json").read_text())["seed"]: f for f in folders}
    assert set(seeds) == {1, 2}
    for seed, folder in seeds.items():
        assert_one_runs_records(folder, seed)


@pytest.mark.slow  # two sweeps at one instant: their folders claimed as two runs' (above)
def test_two_sweeps_started_at_the_same_instant_keep_their_own_jobs(tmp_path, data_dir):
    sweeps = [
        start("-m", *TINY, f"seed={a},{b}", "hydra.sweep.dir=${new_run_folder:outputs/multirun/12-00-00}",
              cwd=tmp_path, data_dir=data_dir)
        for a, b in ((1, 2), (3, 4))
    ]  # fmt: skip
    for process in sweeps:
        code, output = finish(process)
        assert code == 0, output[-2000:]
    folders = sorted((tmp_path / "outputs" / "multirun").iterdir())
    assert [f.name for f in folders] == ["12-00-00", "12-00-00_2"]
    seen = set()
    for folder in folders:
        jobs = sorted(p for p in folder.iterdir() if p.is_dir() and p.name.isdigit())
        seeds = [json.loads((job / "metrics.json").read_text())["seed"] for job in jobs]
        assert len(jobs) == 2 and seeds in ([1, 2], [3, 4])
        for job, seed in zip(jobs, seeds):
            assert_one_runs_records(job, seed, claimed=False)
        report = (folder / "report.md").read_text()
        assert "2 of 2 jobs done" in report and all(f"seed={s}" in report for s in seeds)
        seen.update(seeds)
    assert seen == {1, 2, 3, 4}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, data_dir) -> Path:
    """A run that finished in outputs/earlier (trained in this process: its folder holds its record and checkpoints)."""
    from d2lexp.train import train
    from tests.helpers.configs import test_config

    folder = tmp_path_factory.mktemp("finished") / "outputs" / "earlier"
    train(test_config(folder, data_dir, *(o for o in TINY if not o.startswith("callbacks.")), "seed=1"))
    return folder


def test_an_explicit_folder_of_an_earlier_run_is_refused_and_left_as_it_was(finished_run, data_dir):
    before = digest(finished_run)
    code, output = finish(start(*TINY, "seed=2", f"hydra.run.dir={finished_run}", cwd=finished_run.parent.parent,
                                data_dir=data_dir))  # fmt: skip
    assert code == 1 and f"{finished_run} is the folder of another run" in output and "Traceback" not in output
    assert digest(finished_run) == before


def test_a_folder_held_by_a_live_run_is_refused_even_to_a_resume(tmp_path):
    folder = tmp_path / "live"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from d2lexp.run_folder import claim; claim({str(folder)!r}, suffix_on_collision=False); "
         "print('held', flush=True); input()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputError, match="is the folder of another run that is still running"):
            claim(folder, suffix_on_collision=False, resuming=True)
        assert claim(folder, suffix_on_collision=True) == tmp_path / "live_2"
    finally:
        holder.communicate("\n", timeout=30)
    assert claim(folder, suffix_on_collision=False, resuming=True) == folder  # its process is gone: resumable


def test_a_write_killed_midway_leaves_nothing_once_its_run_is_resumed(tmp_path):
    """A process killed while writing a file of its run (SIGKILL: no handler runs) leaves the
    temporary it wrote into; the run's next process, resuming in the folder, removes it, and
    nothing else."""
    folder = tmp_path / "run"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "last.ckpt").write_bytes(b"the previous checkpoint")
    (folder / "notes.tmp").write_text("a user's file")
    writer = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from d2lexp.run_folder import claim; from d2lexp.files import write_atomic\n"
         f"claim({str(folder)!r}, suffix_on_collision=False, resuming=True)\n"
         "def write(file):\n    file.write(b'x' * 2**20); file.flush(); print('writing', flush=True); sys.stdin.read()\n"
         f"write_atomic({str(folder / 'checkpoints' / 'last.ckpt')!r}, write)"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert writer.stdout.readline().strip() == "writing"
    finally:
        writer.kill()
        writer.wait(timeout=30)
    [leftover] = (folder / "checkpoints").glob(".last.ckpt.*.tmp")
    assert leftover.stat().st_size == 2**20
    assert claim(folder, suffix_on_collision=False, resuming=True) == folder
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) == [
        LOCK_FILE, "checkpoints", "checkpoints/last.ckpt", "notes.tmp"]  # fmt: skip
    assert (folder / "checkpoints" / "last.ckpt").read_bytes() == b"the previous checkpoint"
