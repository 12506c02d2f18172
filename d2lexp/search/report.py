"""A search's report, in its folder: report.md and report.csv (a row per trial: its settings, how
it ended and where it stopped, its scores), search.png (the book's figure: every trial's validation
curve, ended where it was stopped; and each trial's score with the best so far), and search.json
(the best trial and its settings, counts, the epochs trained in all)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from d2lexp import files
from d2lexp.metrics_file import strict_json_text
from d2lexp.report import collect, csv_cell, markdown_text
from d2lexp.search.space import overrides
from d2lexp.search.trial import MAX_TRIAL_NUMBER, TRIALS, SearchJob

STATES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running", "WAITING": "waiting"}


def _number(value: Any) -> float | None:
    return (
        float(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        else None
    )


def trial_rows(folder: Path, study: Any, job: SearchJob) -> list[dict[str, Any]]:
    """One row per trial of the study, joined with its run's record (`trials/<number>/metrics.json`).
    What the storage says is taken as data: the trial's number (bounded), its state, and each of the
    space's own settings if its value is one the space allows (else left out, and said)."""
    runs = collect(folder / TRIALS) if (folder / TRIALS).is_dir() else []
    by_number = {int(r["job"]): r for r in runs if str(r.get("job", "")).isdigit()}
    rows = []
    for trial in study.get_trials(deepcopy=False):
        number = trial.number
        if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number < MAX_TRIAL_NUMBER:
            continue
        settings, refused = {}, []
        for param in job.space:
            value = trial.params.get(param.key)
            if value is None or param.problem(value):
                refused.append(param.key)
            else:
                settings[param.key] = value
        run = by_number.get(number, {})
        curve = [v for v in (run.get("history") or {}).get(job.metric) or [] if _number(v) is not None]
        rows.append({
            "trial": number, "settings": settings, "refused": refused,
            "state": STATES.get(trial.state.name, trial.state.name.lower()),
            "value": _number(trial.value) if trial.state.name == "COMPLETE" else None,
            "curve": curve, "epochs": len(curve),
            "stopped_at": len(curve) if trial.state.name == "PRUNED" else None,
            "final": curve[-1] if curve else None, "best": (max(curve) if job.maximize else min(curve)) if curve else None,
            "test/acc": _number(run.get("test/acc")), "fit_seconds": _number(run.get("fit_seconds")),
            "error": run.get("error") if trial.state.name == "FAIL" else None,
        })  # fmt: skip
    return sorted(rows, key=lambda r: r["trial"])


def best_row(rows: list[dict[str, Any]], maximize: bool) -> dict[str, Any] | None:
    complete = [r for r in rows if r["state"] == "complete" and r["value"] is not None and not r["refused"]]
    if not complete:
        return None
    return (max if maximize else min)(complete, key=lambda r: r["value"])


def write_search_report(folder: Path, study: Any, job: SearchJob, schedule: str, wall_seconds: float) -> dict[str, Any]:
    """Write report.md, report.csv, search.png and search.json into the search's `folder`; return
    the summary (search.json's content)."""
    rows = trial_rows(folder, study, job)
    best = best_row(rows, job.maximize)
    counts = {state: sum(r["state"] == state for r in rows) for state in ("complete", "pruned", "failed")}
    summary: dict[str, Any] = {
        "status": "done" if best is not None else "failed",
        "schedule": schedule, "metric": job.metric, "trials": len(rows), **counts,
        "epochs_trained": sum(r["epochs"] for r in rows), "wall_seconds": wall_seconds,
        "best": None if best is None else {
            "trial": best["trial"], "value": best["value"], "test/acc": best["test/acc"],
            "settings": overrides(best["settings"]), "folder": str(folder / TRIALS / f"{best['trial']:03d}"),
        },
    }  # fmt: skip
    files.write_text(folder / "search.json", strict_json_text(summary))
    label = job.metric.rsplit("/", 1)[-1]
    keys = [p.key for p in job.space]
    header = ["trial", *keys, "state", "epochs", f"final {label}", f"best {label}", "test acc", "fit s"]

    def cells(row: dict[str, Any]) -> list[Any]:
        shown = [row["settings"].get(k, "refused" if k in row["refused"] else None) for k in keys]
        return [row["trial"], *shown, row["state"], row["epochs"], row["final"], row["best"], row["test/acc"],
                row["fit_seconds"]]  # fmt: skip

    def text(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, float):
            return f"{value:.4g}"
        return markdown_text(str(value))

    lines = [f"# Search {markdown_text(str(folder))}", "", markdown_text(summary_line(summary)), ""]
    if best is not None:
        lines += [f"Best: trial {best['trial']}, `{markdown_text(' '.join(summary['best']['settings']))}`", ""]
    lines += ["| " + " | ".join(markdown_text(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(text(c) for c in cells(r)) + " |" for r in rows]
    lines += ["", "![trials](search.png)", ""]
    files.write_text(folder / "report.md", "\n".join(lines))
    table = io.StringIO()
    writer = csv.writer(table)
    writer.writerow(header)
    for row in rows:
        writer.writerow([csv_cell(c) for c in cells(row)])
    files.write_text(folder / "report.csv", table.getvalue())
    figure(rows, job, schedule, best, folder / "search.png")
    return summary


def summary_line(summary: dict[str, Any]) -> str:
    """'search (asha): 12 trials, 4 complete, 8 pruned, 0 failed; 58 epochs trained; best trial 3, acc 0.851'."""
    text = (f"search ({summary['schedule']}): {summary['trials']} trials, {summary['complete']} complete, "
            f"{summary['pruned']} pruned, {summary['failed']} failed; {summary['epochs_trained']} epochs trained in "
            f"{summary['wall_seconds']:.0f} s")  # fmt: skip
    best = summary.get("best")
    if best:
        label = summary["metric"].rsplit("/", 1)[-1]
        test = f", test acc {best['test/acc']:.3f}" if best.get("test/acc") is not None else ""
        text += f"; best: trial {best['trial']}, {label} {best['value']:.3f}{test}: {' '.join(best['settings'])}"
    return text


def figure(rows: list[dict[str, Any]], job: SearchJob, schedule: str, best: dict[str, Any] | None, path: Path) -> None:
    """The book's figure of a search (d2l.ai 19.4-19.5): each trial's validation error (or its metric)
    per epoch, its line ending where it stopped (x: pruned, o: trained to the end); beside it, each
    trial's final score in the order the trials were made, and the best so far."""
    from matplotlib.figure import Figure

    error = job.metric.endswith("acc")  # the book plots the validation error
    shown = (lambda v: 1 - v) if error else (lambda v: v)
    name = f"validation error (1 - {job.metric})" if error else job.metric
    fig = Figure(figsize=(11, 4.2))
    curves, scores = fig.subplots(1, 2)
    for row in rows:
        if not row["curve"]:
            continue
        epochs = list(range(1, len(row["curve"]) + 1))
        values = [shown(v) for v in row["curve"]]
        is_best = best is not None and row["trial"] == best["trial"]
        line = curves.plot(epochs, values, linewidth=2.5 if is_best else 1, alpha=1 if is_best else 0.7,
                           label=f"trial {row['trial']} (best)" if is_best else None)[0]  # fmt: skip
        marker = "x" if row["state"] == "pruned" else "o" if row["state"] == "complete" else "s"
        curves.plot(epochs[-1:], values[-1:], marker, color=line.get_color(), markersize=6)
    from matplotlib.ticker import MaxNLocator

    for axis in (curves, scores):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    curves.set_xlabel("epochs")
    curves.set_ylabel(name)
    curves.set_title(f"{schedule}: each trial's curve (x: pruned there)")
    if best is not None:
        curves.legend(loc="best")
    made = [r for r in rows if r["final"] is not None]
    better = min if error or not job.maximize else max  # of the values shown
    running, best_so_far = None, []
    for row in made:
        value = shown(row["final"])
        if row["state"] == "complete":
            running = value if running is None else better(running, value)
        best_so_far.append(running)
        scores.plot([row["trial"]], [value], "x" if row["state"] == "pruned" else "o",
                    color="tab:red" if row["state"] == "pruned" else "tab:blue")  # fmt: skip
    if made:
        scores.step(
            [r["trial"] for r in made], best_so_far, where="post", color="black", label="best so far (complete)"
        )
        scores.legend(loc="best")
    scores.set_xlabel("trial")
    scores.set_ylabel(f"{name} at its last epoch")
    scores.set_title("each trial (o: complete, x: pruned)")
    fig.tight_layout()
    files.write_atomic(path, lambda file: fig.savefig(file, format="png", dpi=100), durable=False)
