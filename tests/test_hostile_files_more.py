"""More files from outside, as an attacker (or bad luck) makes them: the doors test_hostile_files.py
and test_trust.py do not name. Each test states a promise of the README's "Sharing checkpoints and
runs: what d2lexp trusts" and a crafted file that breaks it on the code these tests were written
against (the attack branch's base, 03c38a9).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from d2lexp.errors import CheckpointError, D2lexpError
from d2lexp.train import train
from tests import test_hostile_files as hostile
from tests.helpers.cli import run_cli
from tests.test_hostile_files import TINY, copy_run, rewrite_checkpoint, tree_digest

# The fixtures of test_hostile_files: a user's files outside any run, and a real finished run.
victim = hostile.victim
finished = hostile.finished

ESC = "\x1b"


def resume_refused(finished, tmp_path, make_cfg, change, *overrides: str) -> str:
    """Resume a copy of the finished run whose checkpoint `change` altered: one paragraph
    (a D2lexpError), not an exception of Python's, torch's or Lightning's."""
    run = copy_run(finished, tmp_path)
    rewrite_checkpoint(run / "checkpoints" / "last.ckpt", change)
    with pytest.raises(D2lexpError) as refused:
        train(make_cfg(*TINY, "trainer.max_epochs=2", *overrides, f"ckpt_path={run}", output_dir=run))
    assert "\n" not in str(refused.value)
    return str(refused.value)


# ------------------------------------------------------------------------------------------------
# Nothing outside the run's own folder is written because a file said so


@pytest.mark.parametrize("name", [".run.lock", pytest.param("train.log", marks=pytest.mark.slow)])
def test_a_hard_link_in_a_shared_run_folder_is_not_written_through(tmp_path, data_dir, finished, victim, name):
    """A hard link is not a symbolic link: `check_no_links` lets it through, and resuming in the
    folder truncates (.run.lock) or appends to (train.log) the file it shares its inode with."""
    run = copy_run(finished, tmp_path)
    if (run / name).exists():
        (run / name).unlink()
    os.link(victim / "sub" / "deeper" / ".bashrc", run / name)
    result = run_cli(f"ckpt_path={run}", "trainer.max_epochs=2", "callbacks.progress_bar=null",
                     cwd=tmp_path, data_dir=data_dir)  # fmt: skip
    assert "Traceback" not in result.stderr
    # the victim fixture checks, byte for byte, that ~/.bashrc's stand-in is as it was


def test_a_shared_sweep_folder_cannot_send_hydras_writes_outside(tmp_path, data_dir, victim):
    """A sweep folder given back to `-m hydra.sweep.dir=...` whose job folder holds `.hydra -> elsewhere`:
    Hydra writes config.yaml, hydra.yaml and overrides.yaml through the link before d2lexp looks."""
    sweep = tmp_path / "shared_sweep"
    (sweep / "0").mkdir(parents=True)
    (sweep / "0" / ".hydra").symlink_to(victim / "sub")
    before = tree_digest(victim)
    run_cli("-m", f"hydra.sweep.dir={sweep}", *TINY, "callbacks.progress_bar=null", "seed=1",
            cwd=tmp_path, data_dir=data_dir)  # fmt: skip
    assert tree_digest(victim) == before


def test_a_run_folder_that_is_a_link_is_not_resumed_through(tmp_path, data_dir, finished):
    """`ckpt_path=<a link to another run's folder>`: the run trains and writes into the link's target
    (its checkpoints, train.log, .hydra/resume_1), then ends in a traceback, its record never written."""
    other = copy_run(finished, tmp_path / "mine")
    before = tree_digest(other)
    (tmp_path / "shared").mkdir()
    link = tmp_path / "shared" / "run"
    link.symlink_to(other)
    result = run_cli(f"ckpt_path={link}", "trainer.max_epochs=2", "callbacks.progress_bar=null",
                     cwd=tmp_path, data_dir=data_dir)  # fmt: skip
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert tree_digest(other) == before  # refused: nothing written into the link's target


# ------------------------------------------------------------------------------------------------
# A file sets a run's defining settings only, as bounded values that build a run


def test_a_file_cannot_remove_a_group_or_choose_devices_and_processes():
    from d2lexp.config import CONF_DIR
    from d2lexp.trust import UntrustedFileError, settings_from_file

    for override in ("~trainer", "~data", "~task", "trainer=ddp_sim", "trainer=slurm", "trainer=gpu"):
        try:
            taken = settings_from_file([override], "overrides.yaml", CONF_DIR).taken
        except UntrustedFileError:
            continue
        assert override not in taken, override


def test_overrides_that_take_minutes_to_parse_are_refused_at_once(tmp_path):
    """Hydra's override parser is quadratic in a list's length: a few hundred KB of recorded
    overrides kept `d2lexp.eval` busy for more than five minutes."""
    import time

    from d2lexp.config import CONF_DIR
    from d2lexp.trust import UntrustedFileError, settings_from_file

    overrides = [f"model.x{i}=[{','.join(['1'] * 9990)}]" for i in range(3)]
    start = time.perf_counter()
    with contextlib.suppress(UntrustedFileError):
        settings_from_file(overrides, "last.ckpt", CONF_DIR)
    assert time.perf_counter() - start < 3


@pytest.mark.slow  # a process bounded in memory (10 s): CI runs it after the suite (.ci/run)
def test_a_sparse_checkpoint_cannot_take_gigabytes(tmp_path):
    """A checkpoint of 1 GiB of zeros that is a hole on disk (a few KB; tar --sparse ships it in
    under 1 KB): load_net reads all of it into memory before refusing it."""
    source = tmp_path / "hole.bin"
    with open(source, "wb") as f:
        f.truncate(1 << 30)

    class Sparse:  # turns the zeros torch.save writes into holes
        def __init__(self, file):
            self.file = file

        def write(self, data):
            data = memoryview(data).cast("B")
            if data.nbytes >= 1 << 20:  # the tensor's data: zeros, read from a hole
                self.file.seek(data.nbytes, 1)
            else:
                self.file.write(data)
            return data.nbytes

        def flush(self):
            self.file.flush()

    path = tmp_path / "sparse.ckpt"
    tensor = torch.from_file(str(source), shared=True, size=(1 << 30) // 4, dtype=torch.float32)
    with open(path, "wb") as f:
        torch.save({"state_dict": {"net.weight": tensor}}, Sparse(f))
        f.truncate()
    del tensor
    source.unlink()
    assert os.stat(path).st_blocks * 512 < 1 << 20
    probe = textwrap.dedent(f"""
        import json, re, time
        from pathlib import Path
        from d2lexp.checkpoint import load_net
        from d2lexp.errors import D2lexpError
        # This process's own high-water mark (ru_maxrss would carry the parent's over the fork).
        def peak(): return int(re.search(r"VmHWM:\\s+(\\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024
        baseline, start = peak(), time.perf_counter()
        try:
            load_net({str(path)!r})
        except D2lexpError:
            pass
        print(json.dumps([peak() - baseline, time.perf_counter() - start]))
    """)
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    grown, seconds = json.loads(result.stdout.strip().splitlines()[-1])
    assert grown < 300 and seconds < 5, (grown, seconds)


# ------------------------------------------------------------------------------------------------
# Every refusal is one paragraph: resuming


def _adam_state(checkpoint, **per_parameter):
    from torch import nn

    shapes = [v.shape for k, v in checkpoint["state_dict"].items() if k.startswith("net.")]
    groups = torch.optim.Adam([nn.Parameter(torch.zeros(s)) for s in shapes]).state_dict()["param_groups"]
    state = {i: {"step": torch.tensor(4.0), "exp_avg": torch.zeros(s), "exp_avg_sq": torch.zeros(s)}
             for i, s in enumerate(shapes)}  # fmt: skip
    state[0].update(per_parameter)
    for key in [k for k, v in per_parameter.items() if v is None]:
        del state[0][key]
    checkpoint["optimizer_states"] = [{"state": state, "param_groups": groups}]


@pytest.mark.parametrize(
    "change, overrides",
    [
        (lambda c: c["d2lexp_history"]["pending"].update(epoch=float("nan")), ()),
        (lambda c: c["d2lexp_history"]["pending"].update(epoch=float("inf")), ()),
        (lambda c: c["state_dict"].update({5: torch.zeros(1)}), ()),
        (lambda c: c["state_dict"].update({"train_loss.mean_value": torch.zeros(()), "train_loss.weight": "x"}), ()),
        (lambda c: _adam_state(c, exp_avg=torch.tensor(0.0)), ("optimizer=adam",)),
        (lambda c: _adam_state(c, exp_avg=None), ("optimizer=adam",)),
        (lambda c: c["callbacks"].update({"EarlyStopping{'monitor': 'val/acc', 'mode': 'max'}": {
            "wait_count": 0, "stopped_epoch": 0, "best_score": "high", "patience": 3}}), ("callbacks=early_stopping",)),
    ],
    ids=["history-epoch-nan", "history-epoch-inf", "int-key", "legacy-metric-string", "adam-scalar-moment",
         "adam-missing-moment", "early-stopping-string-score"],
)  # fmt: skip
def test_a_resume_refuses_state_that_would_crash_it(tmp_path, finished, make_cfg, change, overrides):
    resume_refused(finished, tmp_path, make_cfg, change, *overrides)


def test_a_history_cannot_crash_the_record_or_make_it_unreadable(tmp_path, finished, make_cfg):
    """Throughputs whose reciprocals sum to zero divided by zero; a pending epoch of 1e300 made a
    metrics.json of a 301-digit number, which d2lexp's own reader then refuses."""
    from d2lexp.metrics_file import read_metrics

    def zero_sum(c):
        rows = [{"epoch": 0, "train/examples_per_second": r, "seconds": 1.0} for r in (5.0, 1.0)]
        c["d2lexp_history"].update(epochs=rows)
        c["d2lexp_history"]["pending"]["train/examples_per_second"] = -1.0

    for change in (zero_sum, lambda c: c["d2lexp_history"]["pending"].update(epoch=1e300)):
        run = copy_run(finished, tmp_path / change.__name__.strip("<>"))
        rewrite_checkpoint(run / "checkpoints" / "last.ckpt", change)
        with contextlib.suppress(D2lexpError):
            train(make_cfg(*TINY, f"ckpt_path={run}", output_dir=run))
        record = read_metrics(run)
        assert isinstance(record, dict) and record.get("status") in ("done", "failed")


@pytest.mark.parametrize(
    "extra",
    # Each a process resuming a run: one in the default suite, the others slow.
    ["~trainer", *(pytest.param(x, marks=pytest.mark.slow) for x in (
        "objective.metric=bogus", "trainer.precision=64", "trainer=slurm", "trainer.max_time='9999999999:00:00:00'"))],
)  # fmt: skip
def test_settings_a_run_folder_records_resume_or_end_in_one_paragraph(tmp_path, data_dir, finished, extra):
    run = copy_run(finished, tmp_path)
    with open(run / ".hydra" / "overrides.yaml", "a") as f:
        f.write(f"- {json.dumps(extra)}\n")
    result = run_cli(
        f"ckpt_path={run}", "trainer.max_epochs=2", "callbacks.progress_bar=null", cwd=tmp_path, data_dir=data_dir
    )
    assert "Traceback" not in result.stderr and "Error executing job" not in result.stderr, result.stderr[-2000:]


# ------------------------------------------------------------------------------------------------
# Every refusal is one paragraph: eval, the report, ckpt_path=last


def run_eval(*args: str, cwd: Path, data_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "D2LEXP_DATA": str(data_dir)}
    return subprocess.run([sys.executable, "-m", "d2lexp.eval", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


@pytest.mark.slow  # the resume's history check is tested in the default suite
def test_eval_of_a_checkpoint_with_an_odd_epoch_is_one_paragraph(tmp_path, data_dir, finished):
    run = copy_run(finished, tmp_path)
    rewrite_checkpoint(run / "checkpoints" / "last.ckpt", lambda c: c.update(epoch="x"))
    result = run_eval(f"ckpt_path={run}", cwd=tmp_path, data_dir=data_dir)
    assert "Traceback" not in result.stderr, result.stderr[-2000:]


@pytest.mark.slow  # predict and export share the check, tested in-process
def test_eval_with_data_settings_that_do_not_fit_the_net_is_one_paragraph(tmp_path, data_dir, finished):
    run = copy_run(finished, tmp_path)
    with open(run / ".hydra" / "overrides.yaml", "a") as f:
        f.write("- data.resize=32\n")
    result = run_eval(f"ckpt_path={run}", cwd=tmp_path, data_dir=data_dir)
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-2000:]


def _job(sweep: Path, name: str, record: dict, overrides: list[str]) -> Path:
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    (job / "metrics.json").write_text(json.dumps(record))
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {json.dumps(o)}\n" for o in overrides))
    return job


@pytest.mark.parametrize(
    "record",
    [
        {"status": "done", "val/acc": 0.1, "val/acc_best": 0.9, "history": {"epoch": [0], "val/acc": ["0.95"]}},
        {"status": "done", "model": "$\\foo{$", "test/acc": 0.5, "macs_per_example": 100},
        {"status": "$\\foo{$"},
    ],
    ids=["string-accuracy", "mathtext-model", "mathtext-status"],
)
def test_the_report_shows_any_job_record_as_a_row(tmp_path, record):
    from d2lexp.report import main

    sweep = tmp_path / "sweep"
    _job(sweep, "0", record, ["model=lenet"])
    _job(sweep, "1", {"status": "done", "model": "x", "test/acc": 0.5, "macs_per_example": 10}, ["model=mlp"])
    main([str(sweep)])
    assert (sweep / "report.png").is_file()


def test_the_report_of_a_job_whose_record_is_a_fifo_ends(tmp_path):
    sweep = tmp_path / "sweep"
    _job(sweep, "1", {"status": "done", "model": "x"}, ["model=mlp"])
    (sweep / "0" / ".hydra").mkdir(parents=True)
    os.mkfifo(sweep / "0" / "metrics.json")
    try:
        result = subprocess.run([sys.executable, "-m", "d2lexp.report", str(sweep)], capture_output=True, text=True,
                                timeout=60)  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail("the report waited forever on a FIFO named metrics.json")
    assert "Traceback" not in result.stderr


def test_last_with_a_fifo_for_a_config_ends(tmp_path, finished):
    runs = tmp_path / "outputs"
    run = copy_run(finished, runs)
    (run / ".hydra" / "config.yaml").unlink(missing_ok=True)
    os.mkfifo(run / ".hydra" / "config.yaml")
    probe = f"""
from d2lexp.checkpoint import find_checkpoint
from d2lexp.errors import D2lexpError
try:
    find_checkpoint("last", {str(runs)!r}, settings={{"seed": 1}})
except D2lexpError:
    pass
"""
    try:
        subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("ckpt_path=last waited forever on a FIFO named config.yaml")


def test_last_with_a_huge_hexadecimal_number_is_one_paragraph(tmp_path, finished):
    from d2lexp.checkpoint import find_checkpoint

    runs = tmp_path / "outputs"
    run = copy_run(finished, runs)
    (run / ".hydra").mkdir(exist_ok=True)
    (run / ".hydra" / "config.yaml").write_text("seed: 0x" + "f" * 4000 + "\n")
    with pytest.raises(CheckpointError):
        find_checkpoint("last", runs, settings={"seed": 42})


def test_a_crafted_idx_label_file_is_one_paragraph(tmp_path):
    from d2lexp.data.fashion_mnist import load_split
    from d2lexp.errors import DataError

    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte").write_bytes(
        bytes([0, 0, 8, 3]) + (2).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + bytes(2 * 784)
    )
    labels = torch.tensor([3.0, math.nan]).numpy().astype(">f4").tobytes()
    (raw / "train-labels-idx1-ubyte").write_bytes(bytes([0, 0, 0x0D, 1]) + (2).to_bytes(4, "big") + labels)
    with pytest.raises(DataError):
        load_split(raw, "train")


# ------------------------------------------------------------------------------------------------
# Text from files is shown, never obeyed


@pytest.mark.slow  # escaping is tested in the default suite (a crafted vocabulary, log lines)
def test_a_run_folder_name_found_by_last_is_printed_escaped(tmp_path, data_dir, finished):
    """Lightning's own messages ("Restored all states from the checkpoint at <path>") are formatted
    before d2lexp's filter sees them: the filter escapes a record's arguments only."""
    folder, _ = finished
    run = tmp_path / "outputs" / "2026-01-01" / f"x{ESC}]0;PWNED\x07{ESC}[2J"
    shutil.copytree(folder, run, ignore=shutil.ignore_patterns(".run.lock"))
    import yaml
    from omegaconf import OmegaConf

    from tests.helpers.configs import compose_config

    overrides = [*TINY, "trainer.max_epochs=2", "callbacks.progress_bar=null"]
    cfg = compose_config([f"paths.data_dir={data_dir}", *overrides])  # the run's settings, as its .hydra records them
    (run / ".hydra").mkdir(exist_ok=True)
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(OmegaConf.to_container(cfg, resolve=False)))
    result = run_cli(*overrides, "ckpt_path=last", cwd=tmp_path, data_dir=data_dir)
    assert "Restor" in result.stdout + result.stderr, (result.stdout + result.stderr)[-2000:]
    assert ESC not in result.stdout + result.stderr
    for log in (tmp_path / "outputs").glob("*/*/train.log"):
        assert ESC not in log.read_text()
