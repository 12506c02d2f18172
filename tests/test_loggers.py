"""The loggers a run can write to, read back with their own tools."""

from __future__ import annotations

import pytest

from d2lexp.train import train


def test_mlflow_holds_the_runs_metrics_parameters_and_pictures(make_cfg, tmp_path):
    mlflow = pytest.importorskip("mlflow", reason="the mlflow extra: pip install -e '.[mlflow]'")
    store = tmp_path / "store"
    cfg = make_cfg("experiment=d2l/softmax", "logger=mlflow", f"paths.log_dir={store}", "data.train_subset=2000",
                   "data.test_subset=500", "trainer.max_epochs=2", "callbacks.progress_bar=null", quiet=False)  # fmt: skip
    record = train(cfg)
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{store}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("d2lexp").experiment_id])
    assert run.data.metrics["test/acc"] == pytest.approx(record["test/acc"], abs=1e-6)
    assert [m.value for m in client.get_metric_history(run.info.run_id, "train/loss")] == pytest.approx(
        record["history"]["train/loss"], abs=1e-6
    )
    assert float(run.data.params["optimizer.lr"]) == 0.1 and run.data.params["model.class"] == "SoftmaxRegression"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"curves.png", "predictions.png", "confusion.png"} <= artifacts
