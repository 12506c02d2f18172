"""Compare the jobs of a sweep: `python -m d2lexp.report <sweep folder>`.

Hydra runs this by itself at the end of every `python -m d2lexp -m ...` sweep (the
`SweepReport` callback in conf/hydra/default.yaml). It reads each job's metrics.json and
writes into the sweep folder:

- `report.md` and `report.csv`: one row per job (model, parameters, MACs per example, the
  run's headline metrics, epochs, fit seconds, examples/s, status: done, failed, diverged,
  interrupted, crashed, not run or unreadable, with the first line of the reason); above the
  table, how many finished, and which collapsed (validation accuracy at the end under half
  its best);
- `report.png`: the validation curves of all jobs (accuracy; a detector's mAP@0.5, a segmenter's
  mean IoU), and the test score against MACs.

Failed jobs are rows like the others; they never hide the jobs that finished.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import re
import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from d2lexp import files
from d2lexp.cli import Command, fail, start
from d2lexp.console import printable
from d2lexp.errors import D2lexpError
from d2lexp.metrics_file import METRICS_FILE, read_metrics
from d2lexp.record.metrics import METRICS, seconds_to_marks, to_float
from d2lexp.trust import UntrustedFileError, read_yaml

log = logging.getLogger(__name__)

# (column title, metrics.json key, format): what a job is, then the metrics the table of metrics
# (d2lexp.record.metrics.METRICS) shows in reports, then how the job ended.
FIRST_COLUMNS: list[tuple[str, str, str]] = [
    ("job", "job", "{}"),
    ("swept", "swept", "{}"),
    ("model", "model", "{}"),
    ("params", "params", "{:,}"),
    ("MACs/example", "macs_per_example", "{:,}"),
    ("epochs", "epochs", "{}"),
]
LAST_COLUMNS: list[tuple[str, str, str]] = [
    ("status", "status", "{}"),
    ("reason", "reason", "{}"),  # of a job that did not finish: the first line of its error
]
ALL_COLUMNS = FIRST_COLUMNS + [(m.label, m.key, m.fmt) for m in METRICS if m.report] + LAST_COLUMNS


def columns(rows: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """The columns of a sweep's table: every column some job has a value for, job and status always."""
    always = {"job", "swept", "model", "status"}
    return [c for c in ALL_COLUMNS if c[1] in always or any(row.get(c[1]) not in (None, "") for row in rows)]


class NotASweep(D2lexpError):
    """The folder given to the report is not a sweep's."""


# The type each column's value must have; anything else in a job's metrics.json is left out of the row.
_NUMBER_KEYS = {key for _, key, fmt in ALL_COLUMNS if fmt != "{}"} | {"epochs", "val/acc", "started_at", "finished_at"}
_TEXT_KEYS = {"model", "status", "error", "experiment"}


def _job_dirs(sweep_dir: Path) -> list[Path]:
    if not sweep_dir.is_dir():
        raise NotASweep(
            f"{sweep_dir} is not a folder. Give a sweep's folder, e.g. outputs/multirun/2026-11-26/12-00-00."
        )
    if (sweep_dir / METRICS_FILE).is_file() or (sweep_dir / ".hydra").is_dir():
        raise NotASweep(
            f"{sweep_dir} is a single run's folder, not a sweep's: its record is {sweep_dir / METRICS_FILE}. "
            "The report compares the jobs of a sweep (python -m d2lexp -m ...): give its folder, "
            "e.g. outputs/multirun/2026-11-26/12-00-00."
        )
    jobs = [
        p
        for p in sweep_dir.iterdir()
        if p.is_symlink() or (p.is_dir() and ((p / ".hydra").is_dir() or (p / METRICS_FILE).is_file()))
    ]
    if not jobs:
        raise NotASweep(
            f"{sweep_dir} holds no jobs of a sweep (folders with a metrics.json or .hydra/); nothing to report."
        )
    return sorted(jobs, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))


def _first_line(error: BaseException | str) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


def _read_overrides(job_dir: Path) -> tuple[list[str], str | None]:
    """The job's command-line overrides, and what was wrong with the file if it could not be read."""
    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return [], None
    try:
        overrides = read_yaml(path)  # bounded: no aliases, no deep nesting (d2lexp.trust)
    except (OSError, UnicodeDecodeError, UntrustedFileError) as e:
        return [], f"unreadable .hydra/overrides.yaml ({_first_line(e)})"
    if overrides is None:
        return [], None
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        return [], ".hydra/overrides.yaml is not a list of overrides"
    return overrides, None


def _read_record(job_dir: Path) -> dict[str, Any]:
    """The job's metrics.json, with only well-typed values in the report's columns; a file that
    cannot be read, or is not a record, makes a row that says so."""
    try:
        raw = read_metrics(job_dir)
    except FileNotFoundError:
        return {"status": "failed", "error": f"no {METRICS_FILE}: the job never started"}
    except (OSError, UnicodeDecodeError, ValueError) as e:
        return {"status": "unreadable", "error": f"{METRICS_FILE} cannot be read ({_first_line(e)})"}
    if not isinstance(raw, dict):
        return {"status": "unreadable", "error": f"{METRICS_FILE} holds {type(raw).__name__}, not a run's record"}
    record: dict[str, Any] = {}
    for key, value in raw.items():
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if (key in _NUMBER_KEYS and not number) or (key in _TEXT_KEYS and not isinstance(value, str)):
            continue
        record[key] = value
    history = raw.get("history")
    record["history"] = {k: v for k, v in history.items() if isinstance(v, list)} if isinstance(history, dict) else {}
    fell = raw.get("collapsed")  # as the run found it: {best, best_epoch, final}
    numbers = isinstance(fell, dict) and all(to_float(fell.get(k)) is not None for k in ("best", "final"))
    record["collapsed"] = (
        {"best": float(fell["best"]), "best_epoch": fell.get("best_epoch"), "final": float(fell["final"])}
        if numbers
        else None
    )
    record.setdefault("status", "unreadable")
    return record


def collect(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """One record per job folder of the sweep: its metrics.json plus job number and overrides.

    A job that left no metrics.json failed before it started; one still marked "running" was
    interrupted; one still "pending" never ran. A file that cannot be read is a row that says so.
    NotASweep for a folder that holds no sweep.
    """
    return _rows(_job_dirs(Path(sweep_dir)))


def collect_runs(run_dirs: list[str | Path]) -> list[dict[str, Any]]:
    """One record per run folder, as `collect` makes a sweep's: runs started one by one (from a
    notebook, or the command line) compared in the sweep report's table. Each row's `job` is its
    folder's name."""
    return _rows([Path(p) for p in run_dirs])


def _rows(job_dirs: list[Path]) -> list[dict[str, Any]]:
    rows = []
    for job_dir in job_dirs:
        if job_dir.is_symlink():  # a planted link would make the report read (and show) another folder
            overrides, problem = [], None
            record = {"status": "unreadable", "error": "a link, not a job's folder: not read"}
        else:
            overrides, problem = _read_overrides(job_dir)
            record = _read_record(job_dir)
        if record.get("status") == "running":
            record["status"] = "interrupted"
        elif record.get("status") == "pending":
            record.update(status="not run", error=record.get("error") or "the sweep ended before this job started")
        reasons = [_first_line(record["error"])] if record.get("status") != "done" and record.get("error") else []
        if problem:
            reasons.append(problem)
            record["error"] = "; ".join(p for p in (record.get("error"), problem) if p)
        if reasons:
            record["reason"] = "; ".join(reasons)
        record.update(seconds_to_marks(record))
        rows.append({**record, "job": job_dir.name, "overrides": overrides, "dir": str(job_dir)})
    # What tells the jobs apart: the overrides not shared by all of them.
    shared = set.intersection(*(set(r["overrides"]) for r in rows)) if len(rows) > 1 else set()
    for row in rows:
        row["swept"] = " ".join(o for o in row["overrides"] if o not in shared)
        row["overrides"] = " ".join(row["overrides"])
    return rows


def _cell(row: dict[str, Any], key: str, fmt: str) -> str:
    value = row.get(key)
    if value is None or value == "":
        return ""
    try:
        return fmt.format(value)
    except (TypeError, ValueError):
        return str(value)


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~<>])")


def markdown_text(text: str) -> str:
    """Text from a file (a job's name, an error, an override), shown in Markdown as it is: on one
    line, control characters escaped, HTML's `&`, `<` and `>` as entities and Markdown's own
    characters backslash-escaped, so a renderer shows it and never acts on it."""
    escaped = printable(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MARKDOWN_SPECIAL.sub(r"\\\1", escaped)


def csv_cell(value: Any) -> Any:
    """A value for report.csv: numbers as they are; text with control characters escaped and, where
    it starts as a formula would (=, +, -, @), behind an apostrophe, so a spreadsheet shows it and
    never evaluates it."""
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    text = printable(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def markdown_table(rows: list[dict[str, Any]], cell: Any = markdown_text) -> str:
    """The sweep's table in Markdown, each cell's text escaped by `cell` (`markdown_text`; on the
    console, `console_text`)."""
    shown = columns(rows)
    lines = ["| " + " | ".join(title for title, _, _ in shown) + " |", "|" + "---|" * len(shown)]
    for row in rows:
        lines.append("| " + " | ".join(cell(_cell(row, key, fmt)) for _, key, fmt in shown) + " |")
    return "\n".join(lines)


def console_text(text: str) -> str:
    """A table cell for the terminal: control characters escaped, pipes too (the row stays a row)."""
    return printable(text).replace("|", "\\|")


def summary(rows: list[dict[str, Any]], wall_seconds: float | None = None) -> str:
    """How many jobs finished; their fit time in total (a sweep of the book's chapter: the chapter's
    time, run one after another) beside the wall time the jobs took from the first one's start to
    the last one's end (less, where jobs ran side by side), and `wall_seconds` from the command."""
    done = sum(r.get("status") == "done" for r in rows)
    fit = sum(to_float(r.get("fit_seconds")) or 0.0 for r in rows)
    text = f"{done} of {len(rows)} jobs done; fit time in total {fit:.1f} s"
    starts = [to_float(r.get("started_at")) for r in rows]
    ends = [to_float(r.get("finished_at")) for r in rows]
    starts, ends = [t for t in starts if t is not None], [t for t in ends if t is not None]
    if starts and ends and max(ends) > min(starts):
        text += f", wall time {max(ends) - min(starts):.1f} s from the first job's start to the last one's end"
    if wall_seconds is not None:
        text += f", {wall_seconds:.1f} s from the command to this report"
    text += "."
    collapsed = [r for r in rows if r.get("collapsed")]
    if collapsed:
        text += (
            " Collapsed (validation accuracy at the end under half its best): "
            + ", ".join(
                f"job {r['job']} ({r['collapsed']['best']:.3f} -> {r['collapsed']['final']:.3f})" for r in collapsed
            )
            + "."
        )
    return text


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _label(row: dict[str, Any]) -> str:
    return row.get("swept") or f"job {row['job']}"


# What a job is scored by, in the report's picture: (validation key, test key, name), the first a job has.
SCORES = (
    ("val/acc", "test/acc", "accuracy"),
    ("val/map_50", "test/map_50", "mAP@0.5"),
    ("val/miou", "test/miou", "mean IoU"),
)


def score_of(row: dict[str, Any]) -> tuple[str, str, str] | None:
    """The score a job is drawn by (`SCORES`): the first whose test value or validation curve it has."""
    history = row.get("history") or {}
    return next((s for s in SCORES if _is_number(row.get(s[1])) or history.get(s[0])), None)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Each job's validation score per epoch (accuracy, or a detector's mAP@0.5, or a segmenter's mean
    IoU: `SCORES`), and its test score against MACs per example."""
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    with matplotlib.rc_context({"text.parse_math": False}):  # a job's name or status is text, never a formula
        _plot(rows, path, Figure, MaxNLocator)


def _plot(rows: list[dict[str, Any]], path: Path, Figure: Any, MaxNLocator: Any) -> None:
    fig = Figure(figsize=(13, 5))
    curves, cost = fig.subplots(1, 2)
    names = []  # the scores drawn, in order: "accuracy", or several for a sweep of different tasks
    for i, row in enumerate(rows):
        score = score_of(row)
        if score is None:
            continue
        names += [score[2]] if score[2] not in names else []
        history = row.get("history") or {}
        epochs, values = history.get("epoch") or [], history.get(score[0]) or []
        points = [(e + 1, a) for e, a in zip(epochs, values) if _is_number(e) and _is_number(a)]
        if points:
            curves.plot(*zip(*points), marker="o", markersize=3, label=_label(row), color=f"C{i % 10}")
        test = row.get(score[1])
        if row.get("macs_per_example") and _is_number(test):
            cost.scatter(row["macs_per_example"], test, s=30, color=f"C{i % 10}")
            cost.annotate(row.get("model") or _label(row), (row["macs_per_example"], test), fontsize=8,
                          xytext=(4, 4), textcoords="offset points")  # fmt: skip
    name = ", ".join(names) or "accuracy"
    curves.xaxis.set_major_locator(MaxNLocator(integer=True))
    curves.set(xlabel="epoch", ylabel=f"validation {name}", title=f"Validation {name}")
    curves.grid(alpha=0.3)
    if curves.lines:
        curves.legend(fontsize=7)
    cost.set(
        xscale="log",
        xlabel="MACs per example (log scale)",
        ylabel=f"test {name}",
        title=f"{name[0].upper()}{name[1:]} against cost",
    )
    cost.grid(alpha=0.3, which="both")
    failed = [r for r in rows if r.get("status") != "done"]
    if failed:
        fig.suptitle(
            "not done: " + ", ".join(f"{_label(r)} ({r.get('status')})" for r in failed), fontsize=9, color="red"
        )
    fig.tight_layout()
    files.write_atomic(path, lambda file: fig.savefig(file, format="png", dpi=110), durable=False)


def write_report(
    sweep_dir: str | Path, rows: list[dict[str, Any]] | None = None, wall_seconds: float | None = None
) -> dict[str, Path]:
    """Write report.md, report.csv and report.png into `sweep_dir`; return their paths.
    `rows`: the sweep's jobs, if the caller has collected them already; `wall_seconds`: the
    sweep's, from the command (see `summary`)."""
    sweep_dir = Path(sweep_dir)
    rows = collect(sweep_dir) if rows is None else rows
    paths = {kind: sweep_dir / f"report.{kind}" for kind in ("md", "csv", "png")}
    # Each written beside its name and renamed into place, never through a link (d2lexp.files).
    files.write_text(
        paths["md"],
        f"# Sweep {markdown_text(sweep_dir)}\n\n{markdown_text(summary(rows, wall_seconds))}\n\n{markdown_table(rows)}\n\n"
        "![curves](report.png)\n",
    )
    table = io.StringIO()
    writer = csv.writer(table)
    keys = [key for _, key, _ in ALL_COLUMNS] + ["overrides", "error", "dir"]
    writer.writerow(keys)
    for row in rows:
        writer.writerow([csv_cell(row.get(key)) for key in keys])
    files.write_text(paths["csv"], table.getvalue())
    plot(rows, paths["png"])
    return paths


class SweepReport(Callback):
    """Hydra callback: at the end of a multirun, write the comparison into the sweep folder
    (and make that folder at the start, for sweepers that store their state there).

    A sweep with a job that did not finish exits with status 1 after the report is written.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.time()
        # Sweepers that keep state in the sweep folder (Optuna's study database) need it first.
        Path(config.hydra.sweep.dir).mkdir(parents=True, exist_ok=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            rows = collect(sweep_dir)
        except NotASweep as e:
            log.error("No sweep report: %s", e)
            sys.exit(1)
        from d2lexp.callbacks.throughput import process_start_time

        wall = time.time() - (process_start_time() or getattr(self, "started", time.time()))
        try:
            paths = write_report(sweep_dir, rows, wall)
        except OSError as e:
            log.error("The sweep's report could not be written into %s: %s (%s). Write it later with: "
                      "python -m d2lexp.report %s", sweep_dir, e.strerror or e, e.filename, sweep_dir)  # fmt: skip
            sys.exit(1)
        log.info("Sweep report: %s (table), %s (curves)", paths["md"], paths["png"])
        print(f"{printable(summary(rows, wall))}\n{markdown_table(rows, console_text)}")
        not_done = [r for r in rows if r.get("status") != "done"]
        if not_done:
            log.error("%d of %d jobs did not finish: %s", len(not_done), len(rows),
                      ", ".join(f"job {r['job']} ({r.get('status')}: {r.get('reason', '')})" for r in not_done))  # fmt: skip
            sys.exit(1)


COMMAND = Command(
    script="d2lexp-report",
    module="d2lexp.report",
    purpose="(re)write a sweep's comparison into its folder: report.md, report.csv and report.png, a row per job.",
    usage="d2lexp-report <sweep folder>",
    examples=(
        ("d2lexp-report outputs/multirun/2026-11-30/12-00-00", "after a sweep that was stopped, or to refresh it"),
    ),
)


def main(argv: list[str] | None = None) -> None:
    args = start(COMMAND, sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        fail(f"Give one sweep folder. Usage: {COMMAND.usage}  (e.g. outputs/multirun/2026-11-26/12-00-00)")
    try:
        rows = collect(args[0])
        paths = write_report(args[0], rows)
    except NotASweep as e:
        fail(e)
    except OSError as e:
        fail(f"The report could not be written into {args[0]}: {e.strerror or e} ({e.filename}).")
    print(f"{printable(summary(rows))}\n{markdown_table(rows, console_text)}")
    print(f"\nwrote {paths['md']}, {paths['csv']}, {paths['png']}")


if __name__ == "__main__":
    main()
