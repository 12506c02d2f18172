"""A run's metrics.json: the one file that says how a run went, for people and programs (the sweep
launcher and report, dashboards). Strict JSON (no NaN or Infinity: such values are null, and
`non_finite` names them), written atomically and durably, never through a link (d2lexp.files), and
read back as bounded data (d2lexp.trust): a metrics.json from a shared folder is only data.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from d2lexp import files
from d2lexp.trust import read_json

METRICS_FILE = "metrics.json"


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


def strict_json_text(record: dict[str, Any]) -> str:
    """The record as strict JSON text (see `strict_json`)."""
    return json.dumps(strict_json(record), indent=2, allow_nan=False) + "\n"


def write_metrics(output_dir: str | Path, record: dict[str, Any]) -> Path:
    """Write `<output_dir>/metrics.json`: atomically, flushed to disk, never through a link."""
    folder = files.make_folder(output_dir)
    return files.write_text(folder / METRICS_FILE, strict_json_text(record))


def read_metrics(run_dir: str | Path) -> Any:
    """A run's metrics.json as data (bounded: d2lexp.trust.read_json); OSError or ValueError if it
    cannot be read. Callers check its shape: a shared file may hold anything."""
    return read_json(Path(run_dir) / METRICS_FILE)
