"""How fast is d2lexp? Each suite trains the book's experiments through d2lexp's real pipeline
and through reference loops in the same run, and prints ratios: machines are noisy, so only
figures measured side by side are compared.

    python scripts/benchmark.py lenet --wall       # LeNet vs a minimal loop and the book's loop (+ 10-epoch wall time)
    python scripts/benchmark.py lm                 # language models vs the book's loop
    python scripts/benchmark.py cnn                # the CNN presets vs a ceiling and the book's loop (GPU or CPU)
    python scripts/benchmark.py overhead           # what Lightning and d2lexp add per step, where the host bounds it
    python scripts/benchmark.py augment            # the presets' training rate with augmentation on against off
    python scripts/benchmark.py speedrun           # the speed-run presets' time to 0.94 and 0.95, seeds 0-4, against fast/vgg_bn_best
    python scripts/benchmark.py cnn --help         # a suite's own options
    python scripts/benchmark.py lenet --json results.json

Each module in scripts/benchmarks/ explains what its suite measures, and adds its own options.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchmarks import augment, cnn, language_models, lenet, overhead, speedrun  # noqa: E402
from benchmarks.common import default_data_dir  # noqa: E402

SUITES = {
    "lenet": lenet,
    "lm": language_models,
    "cnn": cnn,
    "overhead": overhead,
    "augment": augment,
    "speedrun": speedrun,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    every_suite = argparse.ArgumentParser(add_help=False)  # the options all suites take
    every_suite.add_argument("--data-dir", default=default_data_dir())
    every_suite.add_argument(
        "--override", action="append", default=[], help="extra d2lexp config override (repeatable)"
    )
    every_suite.add_argument("--json", type=Path, help="write the results here")
    suites = parser.add_subparsers(dest="suite", required=True, metavar="SUITE")
    for name, module in SUITES.items():
        suite = suites.add_parser(name, parents=[every_suite], help=(module.__doc__ or "").strip().splitlines()[0])
        module.add_arguments(suite)
    args = parser.parse_args()
    results = {args.suite: SUITES[args.suite].run(args)}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
