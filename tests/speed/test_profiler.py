"""The Trainer's profiler when none is asked for: Lightning's no-op one, at less cost per hook."""

import lightning.pytorch as pl
import pytest
from lightning.pytorch.profilers import SimpleProfiler

from d2lexp.speed.profiler import NoProfiler
from d2lexp.train import train


class ProfilerOfTheRun(pl.Callback):
    def on_fit_start(self, trainer: pl.Trainer, task: pl.LightningModule) -> None:
        self.profiler = trainer.profiler


def test_no_profiler_hands_out_one_shared_context_that_records_nothing():
    profiler = NoProfiler()
    with profiler.profile("[Callback]Throughput.on_train_batch_end") as action:
        pass
    assert action is None
    assert profiler.profile("a") is profiler.profile("b")
    assert profiler.summary() == ""


@pytest.mark.parametrize(("overrides", "expected"), [((), NoProfiler), (("debug=profiler",), SimpleProfiler)])
def test_a_run_uses_no_profiler_unless_one_is_asked_for(make_cfg, overrides, expected):
    cfg = make_cfg(
        "experiment=d2l/softmax", "data.train_subset=512", "data.test_subset=256", "trainer.max_epochs=1", *overrides
    )
    seen = ProfilerOfTheRun()
    record = train(cfg, callbacks=[seen])
    assert record["status"] == "done", record
    assert type(seen.profiler) is expected
