"""Autoregressive prediction of a noisy sine, with its one-, multi- and k-step forecasts."""

import pytest
import torch
from PIL import Image

from d2lexp.callbacks.sequence import k_step_predictions, multi_step_predictions
from d2lexp.data.sine import SineDataModule
from d2lexp.train import train


def test_sine_data_windows():
    dm = SineDataModule(seed=1)
    assert dm.features.shape == (996, 4) and dm.labels.shape == (996, 1)
    assert torch.equal(dm.features[10], dm.series[10:14]) and dm.labels[10] == dm.series[14]
    residual = dm.series - torch.sin(0.01 * dm.time)
    assert residual.std().item() == pytest.approx(0.2, rel=0.1)
    assert len(dm.train_dataloader()) == 600 // 16 + 1


def test_forecasts_of_a_perfect_model_are_perfect():
    class Next(torch.nn.Module):  # knows the rule x_t = x_{t-1} + 1
        def forward(self, X):
            return X[:, -1:] + 1

    series = torch.arange(20.0)
    assert torch.equal(multi_step_predictions(Next(), series, 4, start=10), series)
    columns = k_step_predictions(Next(), series, 4, max_steps=3)
    assert torch.equal(columns[:, 6], series[6 : 6 + columns.shape[0]])  # 3-step-ahead column


def test_the_books_sequence_experiment(make_cfg, tmp_path):
    record = train(make_cfg("experiment=d2l/sequence"))
    run = tmp_path / "run"
    errors = {
        k: record[f"predict/{k}_mse"] for k in ("one_step", "1_step", "4_step", "16_step", "64_step", "multi_step")
    }
    assert errors["one_step"] < 0.06  # noise variance is 0.04: one-step predictions are near that floor
    assert errors["1_step"] == pytest.approx(errors["one_step"], rel=0.05)
    assert errors["1_step"] < errors["16_step"] < errors["64_step"]  # errors pile up with the horizon
    assert errors["multi_step"] > 2 * errors["one_step"]  # the book's point: feeding predictions back drifts
    for name in ("one_step", "multi_step", "k_step"):
        image = Image.open(run / f"predictions_{name}.png")
        assert image.size[0] > 500
    assert record["val/loss"] < 0.06
