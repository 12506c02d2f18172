"""A real sweep from the command line, and the comparison it leaves in the sweep folder."""

import csv
import subprocess
import sys

import pytest
from PIL import Image

from d2lexp.metrics_file import write_metrics
from d2lexp.record.metrics import collapse
from d2lexp.report import collect, markdown_table, summary, write_report
from tests.helpers.cli import run_cli

QUICK = ["data.train_subset=3000", "data.test_subset=1000", "trainer.max_epochs=2", "callbacks.progress_bar=null"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, data_dir):
    """`python -m d2lexp -m experiment=d2l/softmax,d2l/lenet_bn data.batch_size=128,-1`: four jobs, two of them bad."""
    cwd = tmp_path_factory.mktemp("sweep")
    result = run_cli("-m", "experiment=d2l/softmax,d2l/lenet_bn", "data.batch_size=128,-1", *QUICK,
                     cwd=cwd, data_dir=data_dir)  # fmt: skip
    (sweep_dir,) = (cwd / "outputs" / "multirun").glob("*/*")
    return result, sweep_dir


def test_a_failed_job_does_not_stop_the_sweep(sweep):
    result, sweep_dir = sweep
    assert result.returncode == 1  # the sweep says some job failed...
    rows = collect(sweep_dir)
    assert [r["status"] for r in rows] == ["done", "failed", "done", "failed"]  # ...after running them all
    assert "data.batch_size must be a positive integer" in rows[1]["error"]


def test_markdown_and_csv_tables(sweep):
    _, sweep_dir = sweep
    md = (sweep_dir / "report.md").read_text()
    assert "2 of 4 jobs done" in md and md.count("| done |") == 2 and md.count("| failed |") == 2
    assert (
        "| experiment=d2l/lenet\\_bn data.batch\\_size=128 | lenet\\_bn | 44,878 | 281,640 |" in md
    )  # Markdown-escaped
    with (sweep_dir / "report.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["model"] for r in rows if r["status"] == "done"] == ["softmax", "lenet_bn"]
    done = [r for r in rows if r["status"] == "done"]
    assert all(float(r["test/acc"]) > 0.3 and int(r["epochs"]) == 2 and float(r["fit_seconds"]) > 0 for r in done)
    assert all(0 < float(r["first_step_seconds"]) < float(r["fit_seconds"]) for r in done)
    fit_in_total = sum(float(r["fit_seconds"]) for r in done)  # the failed jobs never fitted
    assert f"2 of 4 jobs done; fit time in total {fit_in_total:.1f} s, wall time " in md
    assert int(done[0]["params"]) == 7_850 and int(done[0]["macs_per_example"]) == 7_840
    assert md.startswith("# Sweep") and markdown_table(collect(sweep_dir)) in md


def test_png_has_both_panels(sweep):
    _, sweep_dir = sweep
    image = Image.open(sweep_dir / "report.png")
    assert image.size[0] > 1000 and image.size[1] > 400
    pixels = image.convert("RGB").getcolors(1_000_000)
    assert len(pixels) > 50  # curves, points and text, not a blank canvas


def test_each_job_has_its_tensorboard_run(sweep):
    _, sweep_dir = sweep
    for job in ("0", "2"):
        assert list((sweep_dir / job / "tensorboard").glob("events.out.tfevents.*"))


def test_the_summary_names_the_jobs_that_collapsed(tmp_path):
    """A job whose validation accuracy ended under half its best (NiN's job 3 of an H200 chapter
    run: 0.550 after its third epoch, then chance) is named above the table; one that only
    wavered is not."""
    history = {"epoch": [0, 1, 2, 3], "val/acc": [0.105, 0.454, 0.550, 0.100]}
    nin = {"status": "done", "model": "nin", "val/acc": 0.100, "val/acc_best": 0.550, "history": history}
    lenet = {"status": "done", "model": "lenet", "val/acc": 0.79, "val/acc_best": 0.81}
    for folder, record in (("0", nin), ("1", lenet)):  # as a run records them
        write_metrics(tmp_path / folder, {**record, "collapsed": collapse(record)})
    rows = collect(tmp_path)
    assert rows[0]["collapsed"] == {"best": 0.550, "best_epoch": 2, "final": 0.100} and rows[1]["collapsed"] is None
    assert summary(rows).endswith(
        "Collapsed (validation accuracy at the end under half its best): job 0 (0.550 -> 0.100)."
    )


def test_unreadable_jobs_are_rows_that_say_so_and_the_report_is_still_written(tmp_path):
    """Valid JSON of the wrong shape, values of the wrong type, broken overrides, and fields that would
    break a Markdown table: each job is one row, and the report is written."""
    write_metrics(tmp_path / "0", {"status": "done", "model": "lenet", "test/acc": 0.8, "fit_seconds": 10.0})
    for job, text in (("1", "[]"), ("2", "null"), ("3", "{not json")):
        (tmp_path / job).mkdir()
        (tmp_path / job / "metrics.json").write_text(text)
    write_metrics(tmp_path / "4", {"status": "done", "model": ["lenet"], "fit_seconds": "abc", "params": "many",
                                   "test/acc": True, "history": [1, 2], "val/acc": "x", "val/acc_best": 0.9})  # fmt: skip
    write_metrics(
        tmp_path / "5", {"status": "failed", "model": "a|b", "error": "first line | with a pipe\nsecond line"}
    )
    (tmp_path / "5" / ".hydra").mkdir()
    (tmp_path / "5" / ".hydra" / "overrides.yaml").write_text("- seed=1\n- [unclosed")
    rows = collect(tmp_path)
    assert [r["status"] for r in rows] == ["done", "unreadable", "unreadable", "unreadable", "done", "failed"]
    assert "holds list, not a run's record" in rows[1]["reason"] and "holds NoneType" in rows[2]["reason"]
    assert "metrics.json cannot be read" in rows[3]["reason"]
    assert rows[4].get("fit_seconds") is None and rows[4].get("params") is None and rows[4]["history"] == {}
    assert rows[5]["reason"].startswith("first line | with a pipe; unreadable .hydra/overrides.yaml")
    paths = write_report(tmp_path, rows)
    table = [line for line in paths["md"].read_text().splitlines() if line.startswith("| ")]
    assert len(table) == 1 + len(rows)  # the header and one line per job: nothing broke a row
    assert "a\\|b" in table[6] and "first line \\| with a pipe" in table[6] and "second line" not in table[6]
    assert "2 of 6 jobs done; fit time in total 10.0 s." in paths["md"].read_text()  # no times to span
    assert Image.open(paths["png"]).size[0] > 1000


def test_a_single_runs_folder_is_refused_and_left_alone(tmp_path):
    write_metrics(tmp_path / "run", {"status": "done", "model": "lenet"})
    (tmp_path / "run" / ".hydra").mkdir()
    (tmp_path / "run" / "checkpoints").mkdir()
    before = sorted(p.name for p in (tmp_path / "run").iterdir())
    result = subprocess.run(
        [sys.executable, "-m", "d2lexp.report", str(tmp_path / "run")], capture_output=True, text=True
    )
    assert result.returncode == 1 and "is a single run's folder, not a sweep's" in result.stderr
    assert "Traceback" not in result.stderr and sorted(p.name for p in (tmp_path / "run").iterdir()) == before
    empty = tmp_path / "empty"
    empty.mkdir()
    result = subprocess.run([sys.executable, "-m", "d2lexp.report", str(empty)], capture_output=True, text=True)
    assert result.returncode == 1 and "holds no jobs of a sweep" in result.stderr and not list(empty.iterdir())


def test_detectors_and_segmenters_are_compared_by_their_own_scores(tmp_path):
    """A sweep of a classifier, a detector and a segmenter (their records as runs write them): the
    table has a column for each one's headline (test acc, test mAP@0.5 and mAP, test mIoU and pixel
    accuracy, and all-background's), and the picture draws each by its own score."""
    from d2lexp.report import score_of

    epochs = {"epoch": [0, 1]}
    records = {
        "0": {"model": "lenet", "test/acc": 0.81, "history": {**epochs, "val/acc": [0.7, 0.81]}},
        "1": {"model": "tiny_ssd", "test/map_50": 0.492, "test/map": 0.299, "test/class_err_background": 0.01,
              "history": {**epochs, "val/map_50": [0.04, 0.09]}},
        "2": {"model": "fcn_small", "test/miou": 0.555, "test/pixel_acc": 0.926, "test/miou_background": 0.075,
              "history": {**epochs, "val/miou": [0.37, 0.42]}},
    }  # fmt: skip
    for job, record in records.items():
        write_metrics(tmp_path / job, {"status": "done", "macs_per_example": 1000 * (int(job) + 1), **record})
    rows = collect(tmp_path)
    assert [score_of(r)[2] for r in rows] == ["accuracy", "mAP@0.5", "mean IoU"]
    paths = write_report(tmp_path, rows)
    header, *table = [line for line in paths["md"].read_text().splitlines() if line.startswith("| ")]
    titles = [t.strip() for t in header.strip("|").split("|")]
    cells = [dict(zip(titles, (c.strip() for c in line.strip("|").split("|")))) for line in table]
    assert cells[0]["test acc"] == "0.8100" and cells[0]["test mAP@0.5"] == ""
    assert cells[1]["test mAP@0.5"] == "0.4920" and cells[1]["test mAP"] == "0.2990"
    assert cells[2]["test mIoU"] == "0.5550" and cells[2]["mIoU all background"] == "0.0750"
    assert Image.open(paths["png"]).size[0] > 1000
