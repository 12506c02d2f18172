"""The metrics a run records, and where each is shown: one table (`METRICS`) that the summary
line, the epoch lines, the TensorBoard HParams entry and the sweep report all read. A new metric
is one row here (and a task or callback that logs it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# Time to accuracy: the first epoch whose validation accuracy reached each of these, and when.
ACCURACY_MARKS = (0.85, 0.90, 0.92, 0.94, 0.95)


@dataclass(frozen=True)
class Metric:
    """A value a run records, and how it is shown.

    key: its name in metrics.json (and TensorBoard); label: the sweep report's column title;
    fmt: a report cell; line: in the summary and epoch lines ("{label} {value}" where None), a
    format of the value; summary/epoch/hparams/report: where it is shown.
    """

    key: str
    label: str
    fmt: str = "{:.4f}"
    line: str | None = None
    summary: bool = False
    epoch: bool = False
    hparams: bool = False
    report: bool = False

    def as_line(self, value: float) -> str:
        return self.line.format(value) if self.line else f"{self.label} {short_number(value)}"


_HEADLINE = {"summary": True, "hparams": True, "report": True}  # a run's headline metric: shown everywhere

METRICS: tuple[Metric, ...] = (
    Metric("train/loss", "train loss", epoch=True, **_HEADLINE),
    Metric("train/acc", "train acc", epoch=True, **_HEADLINE),
    Metric("val/loss", "val loss", epoch=True),
    Metric("val/acc", "val acc", epoch=True),
    Metric("val/acc_best", "best val acc", **_HEADLINE),
    Metric("test/acc", "test acc", **_HEADLINE),
    Metric("train/ppl", "perplexity", "{:.3f}", epoch=True, **_HEADLINE),
    Metric("val/ppl", "val perplexity", "{:.3f}", epoch=True, **_HEADLINE),
    # Detection (d2lexp.tasks.detection): the book's class error and box MAE, COCO's mAP at IoU 0.5 and 0.5:0.95,
    # and the class error of calling every anchor background (what the detector's is measured against).
    Metric("train/class_err", "train class err", "{:.2e}", epoch=True),
    Metric("train/bbox_mae", "train bbox mae", "{:.2e}", epoch=True),
    Metric("val/map_50", "val mAP@0.5", epoch=True, hparams=True),
    Metric("test/map_50", "test mAP@0.5", **_HEADLINE),
    Metric("test/map", "test mAP", **_HEADLINE),
    Metric("test/class_err", "test class err", "{:.2e}", summary=True, report=True),
    Metric("test/class_err_background", "class err all background", "{:.2e}", summary=True, report=True),
    Metric("test/bbox_mae", "test bbox mae", "{:.2e}", report=True),
    # Segmentation (d2lexp.tasks.segmentation): pixel accuracy and mean IoU, and those of calling every pixel background.
    Metric("train/pixel_acc", "train pixel acc", epoch=True, **_HEADLINE),
    Metric("val/pixel_acc", "val pixel acc", epoch=True),
    Metric("val/miou", "val mIoU", epoch=True, hparams=True),
    Metric("test/pixel_acc", "test pixel acc", **_HEADLINE),
    Metric("test/miou", "test mIoU", **_HEADLINE),
    Metric("test/pixel_acc_background", "pixel acc all background", summary=True, report=True),
    Metric("test/miou_background", "mIoU all background", summary=True, report=True),
    Metric("param/w_error", "w error", "{:.2g}", **_HEADLINE),
    Metric("param/b_error", "b error", "{:.2g}", **_HEADLINE),
    # Throughput: each epoch's, and the run's (its first epoch, warm-up, left out when there are more).
    Metric("train/examples_per_second", "examples/s", "{:,.0f}", line="{:,.0f} examples/s", epoch=True),
    Metric("train/tokens_per_second", "tokens/s", "{:,.0f}", line="{:,.0f} tokens/s", epoch=True),
    Metric("train_examples_per_second", "examples/s", "{:,.0f}", line="{:,.0f} examples/s", **_HEADLINE),
    Metric("train_tokens_per_second", "tokens/s", "{:,.0f}", line="{:,.0f} tokens/s", **_HEADLINE),
    # Where the time went: fit s = train s (the first step's included) + val s + the rest (setup, checkpoints).
    Metric("fit_seconds", "fit s", "{:.1f}", line="fit {:.1f} s", summary=True, report=True),
    Metric("train_seconds", "train s", "{:.1f}", report=True),
    Metric("first_step_seconds", "first step s", "{:.1f}", report=True),  # cuDNN autotuning, torch.compile
    Metric("validation_seconds", "val s", "{:.1f}", report=True),
    Metric("peak_memory_gb", "peak GiB", "{:.1f}", report=True),
    *(Metric(f"seconds_to_{mark:.2f}", f"s to {mark:.2f}", "{:.1f}", report=True) for mark in ACCURACY_MARKS),
)
BY_KEY = {m.key: m for m in METRICS}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def to_float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def short_number(value: float) -> str:
    return f"{value:.3f}" if 1e-2 <= abs(value) < 1e3 else f"{value:.3g}"


def summary_line(record: dict[str, Any]) -> str:
    """'lenet: done, 10 epochs, train loss 0.469, train acc 0.824, ..., 8,800 examples/s, fit 80.1 s'."""
    parts = [f"{record.get('model', '?')}: {record.get('status', '?')}", f"{record.get('epochs', '?')} epochs"]
    for metric in METRICS:
        value = to_float(record.get(metric.key))
        if metric.summary and value is not None and (value or not metric.line):
            parts.append(metric.as_line(value))
    if record.get("sample"):
        parts.append(repr(record["sample"]))
    return ", ".join(parts)


def epoch_line(row: dict[str, float], max_epochs: Any, seconds: float) -> str:
    """'epoch 3/10: train loss 0.520, train acc 0.812, val loss 0.55, val acc 0.801, 9,800 examples/s, 8.1 s'."""
    of = f"/{max_epochs}" if isinstance(max_epochs, int) and max_epochs > 0 else ""
    parts = [
        m.as_line(row[m.key]) for m in METRICS if m.epoch and row.get(m.key) is not None and (row[m.key] or not m.line)
    ]
    return f"epoch {int(row['epoch']) + 1}{of}: " + ", ".join([*parts, f"{seconds:.1f} s"])


def collapse(record: dict[str, Any]) -> dict[str, Any] | None:
    """A classifier whose validation accuracy ended under half its best had learned, then lost
    it: its net collapsed (dead ReLUs, say: NiN with the book's recipe, now and then). Returns the
    best and final accuracies and the best epoch, or None."""
    final, best = to_float(record.get("val/acc")), to_float(record.get("val/acc_best"))
    if final is None or best is None or not final < best / 2:
        return None
    history = record.get("history") or {}
    accuracies, epochs = history.get("val/acc") or [], history.get("epoch") or []
    best_epoch = next((e for e, a in zip(epochs, accuracies) if _number(a) and a >= best), None)
    return {"best": best, "best_epoch": best_epoch, "final": final}


def time_to_accuracy(history: dict[str, list]) -> dict[str, dict[str, float] | None] | None:
    """For each of ACCURACY_MARKS, the first epoch at which validation accuracy reached it and the
    seconds of fitting until that epoch's end; None for a mark never reached, and for a run with
    no validation accuracy (not a classifier)."""
    accuracies, epochs, seconds = history.get("val/acc"), history.get("epoch") or [], history.get("seconds") or []
    if not accuracies:
        return None
    reached: dict[str, dict[str, float] | None] = {}
    for mark in ACCURACY_MARKS:
        first = next((i for i, a in enumerate(accuracies) if _number(a) and a >= mark), None)
        at = None
        if first is not None and first < len(epochs):
            at = {"epoch": epochs[first], "seconds": seconds[first] if first < len(seconds) else None}
        reached[f"{mark:.2f}"] = at
    return reached


def seconds_to_marks(record: dict[str, Any]) -> dict[str, float | None]:
    """The record's time to accuracy as the report's columns: `seconds_to_0.85`, ..."""
    reached = record.get("time_to_accuracy")
    reached = reached if isinstance(reached, dict) else {}
    return {
        f"seconds_to_{mark:.2f}": to_float((reached.get(f"{mark:.2f}") or {}).get("seconds"))
        if isinstance(reached.get(f"{mark:.2f}"), dict)
        else None
        for mark in ACCURACY_MARKS
    }


def collapse_warning(record: dict[str, Any], fell: dict[str, Any]) -> str:
    """What to tell the user about a run that collapsed: `fell` is what `collapse` found in its record."""
    at = "" if fell["best_epoch"] is None else f" (epoch {fell['best_epoch']})"
    kept = record.get("best_checkpoint") or "its best checkpoint"
    return (
        f"{record.get('model', 'the model')}: validation accuracy fell from its best, {fell['best']:.3f}{at}, to "
        f"{fell['final']:.3f} at the end: the training collapsed, and a test pass ran on the final weights. "
        f"The best epoch's weights are kept in {kept}. Another run, or a lower learning rate, may not collapse."
    )
