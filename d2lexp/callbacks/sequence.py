"""After a time-series model trains: its one-step, multi-step and k-step predictions
against the data (d2l ch. 9.1), as PNG plots in the run folder, in TensorBoard, and as
errors in the run record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from d2lexp import files
from d2lexp.callbacks.base import RecordingCallback, tensorboard_writer
from d2lexp.data.base import DataModule
from d2lexp.plotting import save_figure


@torch.no_grad()
def one_step_predictions(net: torch.nn.Module, features: torch.Tensor) -> torch.Tensor:
    """x_t predicted from the true x_{t-tau..t-1}, for every window."""
    return net(features).flatten()


@torch.no_grad()
def multi_step_predictions(net: torch.nn.Module, series: torch.Tensor, tau: int, start: int) -> torch.Tensor:
    """From `start` on, every x_t is predicted from earlier *predictions* (the book's
    multistep forecast); before it, the observations are used."""
    values = series.clone()
    for t in range(start, len(series)):
        values[t] = net(values[t - tau : t].reshape(1, -1)).flatten()[0]
    return values


@torch.no_grad()
def k_step_predictions(net: torch.nn.Module, series: torch.Tensor, tau: int, max_steps: int) -> torch.Tensor:
    """Column tau + k - 1 holds the k-step-ahead predictions: each column is predicted from
    the tau columns before it (observations first, then predictions)."""
    rows = len(series) - tau - max_steps + 1
    columns = torch.zeros(rows, tau + max_steps)
    for i in range(tau):
        columns[:, i] = series[i : i + rows]
    for i in range(tau, tau + max_steps):
        columns[:, i] = net(columns[:, i - tau : i]).flatten()
    return columns


class SequencePredictions(RecordingCallback):
    """At the end of fitting: one-step, multi-step and k-step predictions of the data module's
    `time_series`, drawn in
    `<output_dir>/predictions_*.png` and logged to TensorBoard; their mean squared errors
    against the observations go to metrics.json (`predict/...`)."""

    def __init__(self, output_dir: str, steps: tuple[int, ...] = (1, 4, 16, 64)) -> None:
        self.output_dir, self.steps = Path(output_dir), tuple(steps)
        self.errors: dict[str, float] = {}

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        data = trainer.datamodule
        series = data.time_series if isinstance(data, DataModule) else None
        if trainer.global_rank != 0 or series is None:
            return
        net = pl_module.net.cpu().eval() if pl_module.device.type != "cpu" else pl_module.net.eval()
        time, tau, start = series.time, series.tau, series.num_train + series.tau
        one_step = one_step_predictions(net, series.features)
        series = series.values
        multi_step = multi_step_predictions(net, series, tau, start)
        k_steps = k_step_predictions(net, series, tau, max(self.steps))
        rows = k_steps.shape[0]
        self.errors = {
            "predict/one_step_mse": float(((one_step - series[tau:]) ** 2).mean()),
            "predict/multi_step_mse": float(((multi_step[start:] - series[start:]) ** 2).mean()),
        }
        for k in self.steps:
            truth = series[tau + k - 1 : tau + k - 1 + rows]
            self.errors[f"predict/{k}_step_mse"] = float(((k_steps[:, tau + k - 1] - truth) ** 2).mean())
        figures = {
            "one_step": [("data", time, series), ("1-step preds", time[tau:], one_step)],
            "multi_step": [
                ("data", time, series),
                ("1-step preds", time[tau:], one_step),
                ("multistep preds", time[start:], multi_step[start:]),
            ],  # fmt: skip
            "k_step": [
                (f"{k}-step preds", time[tau + k - 1 : tau + k - 1 + rows], k_steps[:, tau + k - 1]) for k in self.steps
            ],
        }
        writer = tensorboard_writer(trainer)
        files.make_folder(self.output_dir)
        for name, curves in figures.items():
            fig = _plot(curves, title=name.replace("_", "-") + " predictions")
            save_figure(fig, self.output_dir / f"predictions_{name}.png")
            if writer is not None:
                writer.add_figure(f"predictions/{name}", fig, global_step=trainer.global_step)
        pl_module.net.to(pl_module.device).train()

    def record(self) -> dict[str, Any]:
        return dict(self.errors)


def _plot(curves: list[tuple[str, torch.Tensor, torch.Tensor]], title: str):  # -> matplotlib Figure
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.2))
    ax = fig.subplots()
    for label, x, y in curves:
        ax.plot(x.numpy(), y.numpy(), label=label, linewidth=1)
    ax.set(xlabel="time", ylabel="x", title=title, xlim=(1, 1000))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
