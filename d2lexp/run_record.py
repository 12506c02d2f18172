"""What a finished run leaves behind for people and programs: metrics.json, the
TensorBoard HParams entry and a one-line summary."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

METRICS_FILE = "metrics.json"

# Config values that describe a run in the HParams tab (flattened dotted keys).
_HPARAM_GROUPS = ("model", "init", "data", "optimizer", "scheduler", "task")
_HPARAM_TRAINER_KEYS = ("max_epochs", "precision", "accelerator", "devices", "gradient_clip_val")
_HPARAM_SKIP = ("_target_", "_partial_", "data_dir", "seed", "download")


def to_float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _flatten(prefix: str, node: Any, out: dict[str, Any]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key not in _HPARAM_SKIP:
                _flatten(f"{prefix}.{key}" if prefix else str(key), value, out)
    elif isinstance(node, (bool, int, float, str)) or node is None:
        out[prefix] = "null" if node is None else node
    else:
        out[prefix] = str(node)


def hparams_of(cfg: DictConfig, choices: dict[str, str]) -> dict[str, Any]:
    """A flat dict of the run's defining settings: group choices, then their values."""
    container = OmegaConf.to_container(cfg, resolve=True)
    out: dict[str, Any] = {f"choice.{k}": v for k, v in choices.items() if v is not None}
    for group in _HPARAM_GROUPS:
        node = container.get(group)
        if node is not None:
            target = node.get("_target_") if isinstance(node, dict) else None
            if target:
                out[f"{group}.class"] = target.rsplit(".", 1)[-1]
            _flatten(group, node, out)
    for key in _HPARAM_TRAINER_KEYS:
        _flatten(f"trainer.{key}", container.get("trainer", {}).get(key), out)
    out["seed"] = container.get("seed")
    return out


def write_metrics(output_dir: str | Path, record: dict[str, Any]) -> Path:
    """Write `metrics.json` atomically (a crash never leaves half a file)."""
    path = Path(output_dir) / METRICS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    try:
        tmp.write_text(json.dumps(strict_json(record), indent=2, allow_nan=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # no half-written leftovers, and a full disk gets its space back
        raise
    return path


def strict_json(record: dict[str, Any]) -> dict[str, Any]:
    """The record as strict JSON allows it: every non-finite number (NaN, infinity) becomes null,
    and `non_finite` says which were, e.g. {"train/loss": "inf", "history.val/loss[3]": "nan"}."""
    found: dict[str, str] = {}

    def clean(value: Any, where: str) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            found[where] = str(value)
            return None
        if isinstance(value, dict):
            return {k: clean(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return value

    cleaned = clean({k: v for k, v in record.items() if k != "non_finite"}, "")
    cleaned["non_finite"] = found or None
    return cleaned


def read_metrics(run_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / METRICS_FILE).read_text())


def collapse(record: dict[str, Any]) -> dict[str, Any] | None:
    """A classifier whose validation accuracy ended under half its best had learned, then lost
    it: its net collapsed (dead ReLUs, say: NiN with the book's recipe, now and then). Returns the
    best and final accuracies and the best epoch, or None."""
    final, best = to_float(record.get("val/acc")), to_float(record.get("val/acc_best"))
    if final is None or best is None or not final < best / 2:
        return None
    history = record.get("history") or {}
    accuracies, epochs = history.get("val/acc") or [], history.get("epoch") or []
    best_epoch = next((e for e, a in zip(epochs, accuracies) if to_float(a) is not None and a >= best), None)
    return {"best": best, "best_epoch": best_epoch, "final": final}


def collapse_warning(record: dict[str, Any], fell: dict[str, Any]) -> str:
    """What to tell the user about a run that collapsed: `fell` is what `collapse` found in its record."""
    at = "" if fell["best_epoch"] is None else f" (epoch {fell['best_epoch']})"
    kept = record.get("best_checkpoint") or "its best checkpoint"
    return (
        f"{record.get('model', 'the model')}: validation accuracy fell from its best, {fell['best']:.3f}{at}, to "
        f"{fell['final']:.3f} at the end: the training collapsed, and a test pass ran on the final weights. "
        f"The best epoch's weights are kept in {kept}. Another run, or a lower learning rate, may not collapse."
    )


def summary_line(record: dict[str, Any]) -> str:
    """'lenet: 10 epochs, train loss 0.469, train acc 0.823, test acc 0.779, 8,800 examples/s, fit 80.1 s'."""
    parts = [f"{record.get('model', '?')}: {record.get('status', '?')}", f"{record.get('epochs', '?')} epochs"]
    for key, label in (
        ("train/loss", "train loss"), ("train/acc", "train acc"), ("test/acc", "test acc"),
        ("train/ppl", "perplexity"), ("val/ppl", "val perplexity"),
        ("param/w_error", "w error"), ("param/b_error", "b error"),
    ):  # fmt: skip
        if record.get(key) is not None:
            value = record[key]
            parts.append(f"{label} {value:.3f}" if 1e-2 <= abs(value) < 1e3 else f"{label} {value:.2g}")
    for key in ("train_examples_per_second", "train_tokens_per_second"):
        if record.get(key):
            parts.append(f"{record[key]:,.0f} {key.split('_')[1]}/s")
    if record.get("fit_seconds") is not None:
        parts.append(f"fit {record['fit_seconds']:.1f} s")
    if record.get("sample"):
        parts.append(repr(record["sample"]))
    return ", ".join(parts)
