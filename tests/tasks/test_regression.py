"""Linear regression, by hand and with the framework, and the edge-detection kernel, through the pipeline."""

import pytest

from d2lexp.train import train


@pytest.mark.parametrize("preset", ["d2l/linreg_scratch", "d2l/linreg"])
def test_linear_regression_recovers_w_and_b(make_cfg, preset):
    record = train(make_cfg(f"experiment={preset}"))
    assert record["status"] == "done" and record["epochs"] == 3
    assert record["param/w_error"] < 0.01 and record["param/b_error"] < 0.01, record
    assert record["param/w_hat_0"] == pytest.approx(2.0, abs=0.01)
    assert record["param/w_hat_1"] == pytest.approx(-3.4, abs=0.01)
    assert record["param/b_hat"] == pytest.approx(4.2, abs=0.01)
    assert record["val/loss"] < 1e-3  # noise variance is 1e-4


def test_scratch_data_iter_trains_like_the_tensor_loader(make_cfg, tmp_path):
    scratch = train(make_cfg("experiment=d2l/linreg", "data.loader=scratch", output_dir=tmp_path / "a"))
    tensor = train(make_cfg("experiment=d2l/linreg", "data.loader=tensor", output_dir=tmp_path / "b"))
    assert scratch["param/w_error"] < 0.01 and tensor["param/w_error"] < 0.01


def test_edge_detection_kernel_is_learned(make_cfg):
    record = train(make_cfg("experiment=d2l/edge_detection"))
    assert record["param/w_hat_0"] == pytest.approx(1.0, abs=0.05)
    assert record["param/w_hat_1"] == pytest.approx(-1.0, abs=0.05)
    assert record["history"]["train/loss"][-1] < record["history"]["train/loss"][0]
