"""A run's record as it goes: metrics.json brought up to date each epoch, the book's curves in
the run folder and TensorBoard, the headline metrics shared by every view of a run."""

from __future__ import annotations

import json

import lightning.pytorch as pl
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from d2lexp.record.metrics import METRICS, epoch_line, summary_line
from d2lexp.train import train


class ReadTheRecord(pl.Callback):
    """Reads metrics.json as a user would while the run goes on: at the start of each epoch."""

    def __init__(self, folder):
        self.folder, self.seen = folder, []

    def on_train_epoch_start(self, trainer, pl_module):
        record = json.loads((self.folder / "metrics.json").read_text())
        self.seen.append((record["status"], (record.get("history") or {}).get("epoch", [])))


def test_metrics_json_and_curves_follow_each_epoch(make_cfg, tmp_path):
    reader = ReadTheRecord(tmp_path / "run")
    record = train(
        make_cfg("experiment=d2l/softmax", "data.train_subset=2000", "trainer.max_epochs=3"), callbacks=[reader]
    )
    # Each epoch's start sees the epochs before it (this callback runs before the history's own).
    assert reader.seen == [("running", []), ("running", []), ("running", [0])]
    assert record["history"]["epoch"] == [0, 1, 2] and (tmp_path / "run" / "curves.png").is_file()
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert "curves" in events.Tags()["images"]


def test_every_view_of_a_run_shows_its_headline_metrics():
    headline = [m for m in METRICS if m.summary and not m.line]
    record = {"model": "lenet", "status": "done", "epochs": 10, **{m.key: 0.5 for m in headline}}
    line = summary_line(record)
    assert headline and all(f"{m.label} 0.500" in line for m in headline)
    assert epoch_line(
        {"epoch": 2, "train/loss": 0.52, "val/acc": 0.8, "train/examples_per_second": 9800.0}, 10, 8.1
    ) == ("epoch 3/10: train loss 0.520, val acc 0.800, 9,800 examples/s, 8.1 s")
