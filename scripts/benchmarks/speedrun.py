"""Time to accuracy: the speed-run presets against `fast/vgg_bn_best`, each a whole run of d2lexp
(`python -m d2lexp ...` in a process and a folder of its own) on the full Fashion-MNIST. The
figures are the runs' own, from their metrics.json: fit seconds (training and validation), test
accuracy, and the fit seconds until validation first reached 0.94 and 0.95.

    python scripts/benchmark.py speedrun                       # the presets, seeds 0-4; the baseline once
    python scripts/benchmark.py speedrun --runs experiment=fast/speedrun_94 --once experiment=fast/speedrun_95
    python scripts/benchmark.py speedrun --seeds 0 --baseline none \\
        --runs "experiment=fast/speedrun_94" "experiment=fast/speedrun_94 task.test_time_shift=0"   # ablation rows
    python scripts/benchmark.py speedrun --override trainer=gpu   # on a GPU

Machines drift and differ (the same run took 3x longer on one 2-core machine than on another),
so the report sets each run's seconds against the baseline's time to 0.94 measured in the same
benchmark; the runs take turns seed by seed, the baseline after the first seed, so a drift of
the machine's speed falls on all of them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, log

PRESETS = ["experiment=fast/speedrun_94", "experiment=fast/speedrun_95"]
BASELINE = "experiment=fast/vgg_bn_best"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", nargs="+", default=PRESETS, help="each a run's overrides, one string per run")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--baseline", default=BASELINE, help="run once, with the first seed ('none': not run)")
    parser.add_argument(
        "--once", nargs="*", default=[], help="runs also run with the first seed only (before the baseline)"
    )
    parser.add_argument("--out", type=Path, help="keep the runs' folders here (default: a temporary folder)")


def one_run(spec: str, seed: int, folder: Path, args: Any) -> dict[str, Any]:
    """Run d2lexp with `spec`'s overrides and this seed into `folder`; its record, or why it failed."""
    from d2lexp.metrics_file import read_metrics
    from d2lexp.record.metrics import seconds_to_marks

    command = [sys.executable, "-m", "d2lexp", *spec.split(), f"seed={seed}", *args.override]
    command += [f"paths.data_dir={args.data_dir}", f"hydra.run.dir={folder}"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=os.environ.copy())
    if result.returncode:
        return {"spec": spec, "seed": seed, "failed": result.stderr.strip().splitlines()[-1:]}
    record = read_metrics(folder)
    reached = seconds_to_marks(record)
    row = {
        "spec": spec,
        "seed": seed,
        "test_acc": record["test/acc"],
        "fit_seconds": record["fit_seconds"],
        "epochs": record["epochs"],
        "examples_per_second": record.get("train_examples_per_second"),
        "macs_per_example": record.get("macs_per_example"),
        "seconds_to_0.94": reached["seconds_to_0.94"],
        "seconds_to_0.95": reached["seconds_to_0.95"],
    }
    log(
        f"  {spec} seed={seed}: test acc {row['test_acc']:.4f}, fit {row['fit_seconds']:.1f} s"
        f" ({row['epochs']} epochs, {row['examples_per_second'] or 0:,.0f} examples/s)"
    )
    return row


def seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"


def run(args: Any) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="d2lexp-speedrun-") as scratch:
        root = args.out or Path(scratch)
        log(f"\nTime to accuracy: {len(args.runs)} preset(s) x seeds {args.seeds}, baseline {args.baseline}")
        for i, seed in enumerate(args.seeds):
            for j, spec in enumerate(args.runs):
                runs.append(one_run(spec, seed, root / f"run{j}_seed{seed}", args))
            if i == 0:
                for j, spec in enumerate(args.once):
                    runs.append(one_run(spec, seed, root / f"once{j}_seed{seed}", args))
                if args.baseline != "none":
                    runs.append(one_run(args.baseline, seed, root / f"baseline_seed{seed}", args))
    baseline = next((r for r in runs if r["spec"] == args.baseline and "failed" not in r), None)
    base_s = baseline and (baseline["seconds_to_0.94"] or None)
    log("\n| run | seeds | test acc: min / mean / max | fit s: mean (min-max) | fit s / baseline's s to 0.94 |")
    log("|---|---:|---|---|---:|")
    summary = []
    for spec in [*args.runs, *args.once, args.baseline]:
        done = [r for r in runs if r["spec"] == spec and "failed" not in r]
        failed = [r for r in runs if r["spec"] == spec and "failed" in r]
        for r in failed:
            log(f"| `{spec}` seed {r['seed']} | failed: {' '.join(r['failed'])} | | | |")
        if not done:
            continue
        accs, secs = [r["test_acc"] for r in done], [r["fit_seconds"] for r in done]
        ratio = f"{statistics.mean(secs) / base_s:.2f}" if base_s else "-"
        log(
            f"| `{spec}` | {len(done)} | {min(accs):.4f} / {statistics.mean(accs):.4f} / {max(accs):.4f} |"
            f" {statistics.mean(secs):.1f} ({min(secs):.1f}-{max(secs):.1f}) | {ratio} |"
        )
        summary.append({"spec": spec, "test_acc": accs, "fit_seconds": secs})
    if baseline:
        log(
            f"\nBaseline `{args.baseline}`: test acc {baseline['test_acc']:.4f}, fit {baseline['fit_seconds']:.1f} s,"
            f" validation reached 0.94 after {seconds(baseline['seconds_to_0.94'])} and 0.95 after"
            f" {seconds(baseline['seconds_to_0.95'])}"
        )
    return {"runs": runs, "summary": summary}
