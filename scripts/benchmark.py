"""How fast is d2lexp? Each suite trains the book's experiments through d2lexp's real
pipeline and through reference loops in the same run, and prints ratios: machines are
noisy, so only figures measured side by side are compared.

    python scripts/benchmark.py                    # all suites
    python scripts/benchmark.py lenet --wall       # LeNet vs a minimal loop and the book's loop (+ 10-epoch wall time)
    python scripts/benchmark.py lm                 # language models vs the book's loop
    python scripts/benchmark.py cnn                # the CNN presets vs a ceiling and the book's loop (GPU or CPU)
    python scripts/benchmark.py overhead           # what Lightning and d2lexp add per step, where the host bounds it
    python scripts/benchmark.py augment            # the presets' training rate with augmentation on against off
    python scripts/benchmark.py --json results.json

Suites: each module in scripts/benchmarks/ explains what it measures.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchmarks import augment, cnn, language_models, lenet, overhead  # noqa: E402
from benchmarks.common import default_data_dir  # noqa: E402

SUITES = {
    "lenet": lenet.run,
    "lm": language_models.run,
    "cnn": cnn.run,
    "overhead": overhead.run,
    "augment": augment.run,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "suites", nargs="*", default=["lenet", "lm"], help=f"which of {list(SUITES)} (default: lenet lm)"
    )
    parser.add_argument("--data-dir", default=default_data_dir())
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="LeNet and CNNs: d2lexp's timed epochs, each beside the reference loop (after one warm-up epoch)",
    )
    parser.add_argument(
        "--variant", choices=[v.name for v in lenet.CANDIDATES], help="LeNet: skip the search, use this variant"
    )
    parser.add_argument("--variant-batches", type=int, default=40, help="LeNet: batches per variant trial")
    parser.add_argument("--variant-repeats", type=int, default=3)
    parser.add_argument("--skip-book-style", action="store_true", help="LeNet and CNNs: leave out the book's loop")
    parser.add_argument("--wall", action="store_true", help="LeNet: also time complete 10-epoch runs (several minutes)")
    parser.add_argument(
        "--lm-presets", nargs="+", default=list(language_models.PRESETS), choices=list(language_models.PRESETS)
    )
    parser.add_argument("--lm-epochs", type=int, default=20, help="language models: timed epochs (8 minibatches each)")
    parser.add_argument("--cnn-presets", nargs="+", default=cnn.PRESETS, choices=cnn.PRESETS)
    epoch_length = parser.add_mutually_exclusive_group()
    epoch_length.add_argument(
        "--cnn-batches", type=int, help="CNNs: batches per epoch (default: whole epochs); for quick CPU runs"
    )
    epoch_length.add_argument(
        "--cnn-epoch-seconds",
        type=float,
        help="CNNs: as many batches per epoch (up to a whole one) as the ceiling runs in about this many seconds",
    )
    parser.add_argument(
        "--cnn-profile-steps",
        type=int,
        default=0,
        help="CNNs: also profile this many steady-state steps of d2lexp and the ceiling (where the time goes)",
    )
    parser.add_argument(
        "--cnn-odd-batch",
        action="store_true",
        help="CNNs: also time a new batch shape's first training step, autotuned by cuDNN and on its heuristics",
    )
    parser.add_argument(
        "--cnn-lightning-floor",
        action="store_true",
        help="CNNs: also time the ceiling's step in a barebones Lightning Trainer (Lightning's own share of d2lexp's gap)",
    )
    parser.add_argument("--augment-presets", nargs="+", default=augment.PRESETS, choices=augment.PRESETS)
    parser.add_argument("--augment", default="light", help="augmentation: which of conf/augment/ to measure")
    parser.add_argument(
        "--augment-batches",
        type=int,
        help="augmentation: batches per epoch (default: whole epochs); for quick CPU runs",
    )
    parser.add_argument("--override", action="append", default=[], help="extra d2lexp config override (repeatable)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    unknown = [s for s in args.suites if s not in SUITES]
    if unknown:
        parser.error(f"unknown suite(s) {unknown}; choose from {list(SUITES)}")

    results = {suite: SUITES[suite](args) for suite in dict.fromkeys(args.suites)}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
