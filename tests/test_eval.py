"""`python -m d2lexp.eval`: a checkpoint scored on the test split as its run scored it, with the
run's own settings, into a folder of its own; the run's files untouched."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from d2lexp.metrics_file import read_metrics
from tests.helpers.cli import run_cli
from tests.helpers.folders import digest


def run_eval(*args: str, cwd, data_dir) -> subprocess.CompletedProcess:
    env = {**os.environ, "D2LEXP_DATA": str(data_dir), "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "d2lexp.eval", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def test_eval_scores_a_checkpoint_as_its_run_did_and_touches_nothing(tmp_path, data_dir):
    from d2lexp import run as train_run  # in this process (the command line's run, a process's start the less)

    run = tmp_path / "outputs" / "run"
    trained = train_run("experiment=d2l/softmax", "data.train_subset=3000", "data.test_subset=500", "trainer.max_epochs=2",
                        "callbacks.progress_bar=null", f"hydra.run.dir={run}", f"paths.data_dir={data_dir}")  # fmt: skip
    assert trained.status == "done" and trained.folder == run
    before = digest(run)
    result = run_eval(f"ckpt_path={run}", cwd=tmp_path, data_dir=data_dir)  # nothing else: the run's own settings
    assert result.returncode == 0, result.stderr[-2000:]
    (folder,) = (tmp_path / "outputs" / "eval").glob("*/*")
    scored = json.loads((folder / "eval.json").read_text())
    record = read_metrics(run)
    assert (
        scored["test/acc"] == record["test/acc"] and scored["test/loss"] == record["test/loss"]
    )  # the same checkpoint
    assert scored["checkpoint"] == str(run / "checkpoints" / "last.ckpt") and scored["epochs"] == 2
    lines = [line for line in (result.stdout + result.stderr).splitlines() if "softmax: eval" in line]
    assert len(lines) == 1 and f"test acc {record['test/acc']:.3f}" in lines[0]
    assert all((folder / name).is_file() for name in ("predictions.png", "confusion.png", "misclassified.png"))
    assert digest(run) == before


@pytest.mark.slow  # the language-model path of the same command; the classifier's test above is the fast one
def test_eval_of_a_language_model_gives_perplexity_and_a_sample(tmp_path, data_dir):
    trained = run_cli("experiment=d2l/rnn", "trainer.max_epochs=3", "data.max_tokens=3000", "callbacks.progress_bar=null",
                      "hydra.run.dir=outputs/lm", cwd=tmp_path, data_dir=data_dir)  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-2000:]
    result = run_eval("ckpt_path=outputs/lm", "sample_prefix=the time", cwd=tmp_path, data_dir=data_dir)
    assert result.returncode == 0, result.stderr[-2000:]
    (folder,) = (tmp_path / "outputs" / "eval").glob("*/*")
    scored = json.loads((folder / "eval.json").read_text())
    record = read_metrics(tmp_path / "outputs" / "lm")
    assert scored["test/ppl"] == record["test/ppl"] and 1 < scored["test/ppl"] < 28  # below the vocabulary's size
    assert scored["sample"].startswith("the time") and len(scored["sample"]) == len("the time") + 50


def test_eval_without_a_checkpoint_says_what_to_give(tmp_path):
    result = run_eval(cwd=tmp_path, data_dir=tmp_path)
    assert result.returncode == 1 and "Which checkpoint?" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
