"""Train one experiment: `python -m d2lexp [overrides]`, a Hydra app over `conf/`.

A run, top to bottom: the config is composed (Hydra), every part is built from it
(d2lexp.build), the net is fitted and tested (Lightning), and the run is recorded as it goes
(d2lexp.record: metrics.json, the log's lines, curves.png, the loggers' entries).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import hydra
from omegaconf import DictConfig

from d2lexp.cli import Command, fail, refuse_unknown_keys, start
from d2lexp.config import CONFIG_PATH, in_multirun
from d2lexp.console import quiet_lightning, quiet_unwritable_folders
from d2lexp.errors import D2lexpError, RunInterrupted
from d2lexp.overrides import command_line_values, with_recorded_settings
from d2lexp.run_folder import run_in_own_folder

if TYPE_CHECKING:
    import lightning.pytorch as pl
    from torch import nn

log = logging.getLogger("d2lexp")


def train(cfg: DictConfig, callbacks: Sequence[pl.Callback] = (), net: nn.Module | None = None) -> dict[str, Any]:
    """Run the experiment `cfg` describes; return its record (also written to metrics.json).

    For programmatic use (notebooks, benchmarks, tests): `callbacks` run before the configured
    ones, and `net` replaces the one `cfg.model` and `cfg.init` would build (trained in place).
    """
    # Imported here, not above: a command line Hydra refuses ends in half a second, without torch.
    from d2lexp import build
    from d2lexp.record.outputs import hparams_of
    from d2lexp.record.run import RunRecord
    from d2lexp.search.pruning import was_pruned

    quiet_lightning()
    choices = hydra_choices()
    with run_in_own_folder(cfg.paths.output_dir, cfg.get("ckpt_path"), in_multirun(), hydra_output_dir()):
        record = RunRecord(cfg.paths.output_dir, choices, cfg.get("seed"), cfg.trainer.get("max_epochs"),
                           hparams_of(cfg, choices))  # fmt: skip
        with record.until_done():
            run = build.run(cfg, net, callbacks, on_epoch=record.epoch_ended)
            record.started(run)
            start = time.perf_counter()
            with record.interrupts.fitting():
                run.trainer.fit(run.task, datamodule=run.data, ckpt_path=run.resume_from, weights_only=True)
            record.fitted(run, time.perf_counter() - start)
            if run.trainer.interrupted:
                raise KeyboardInterrupt
            if run.tests and not run.task.diverged and not was_pruned(run.trainer):  # a pruned trial is not tested
                run.trainer.test(run.task, datamodule=run.data, verbose=False)
                record.tested(run)
            record.finish(run)
    return record.data


def hydra_output_dir() -> str | None:
    """The folder Hydra made for this run or job, when run under Hydra."""
    from hydra.core.hydra_config import HydraConfig

    try:
        return str(HydraConfig.get().runtime.output_dir)
    except ValueError:  # composed with the compose API (tests, notebooks)
        return None


def hydra_choices() -> dict[str, str]:
    """The config-group options of this run (model=lenet, ...), when run under Hydra."""
    from hydra.core.hydra_config import HydraConfig

    try:
        choices = HydraConfig.get().runtime.choices
    except ValueError:  # composed with the compose API: what d2lexp.api composed (notebooks), else none (tests)
        from d2lexp.config import composed_job

        job = composed_job.get()
        return dict(job.choices) if job is not None else {}
    return {k: v for k, v in choices.items() if not k.startswith("hydra") and v is not None}


def command() -> Command:
    from d2lexp.help import EXAMPLES, text

    return Command(
        script="d2lexp",
        module="d2lexp",
        purpose="train one of the book's experiments, or a sweep of them (-m), each a run with a folder of its own.",
        usage="d2lexp [group=option ...] [key=value ...]   (-m: a sweep of comma-separated values)",
        examples=EXAMPLES,
        more=text(),
    )


def main() -> None:
    """`python -m d2lexp` and the `d2lexp` command. Before Hydra starts: a resumed run's own
    recorded settings go under the command's, and a misspelt key is caught."""
    if any(flag in sys.argv[1:] for flag in ("--help", "-h", "--version")):
        start(command(), sys.argv[1:])
    args = start(Command("d2lexp", "d2lexp", "", ""), sys.argv[1:])
    search = command_line_values(args).get("hparams_search")
    if search not in (None, "", "null"):  # its settings would be composed, and silently unused
        fail(f"hparams_search={search[:60]} is a search: run it with python -m d2lexp.search hparams_search={search[:60]} "
             "(d2lexp-search; docs/search.md).")  # fmt: skip
    try:
        args = with_recorded_settings(args)
    except D2lexpError as e:
        fail(e)
    refuse_unknown_keys("config", args)
    sys.argv[1:] = args
    hydra_main()


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="config")
def hydra_main(cfg: DictConfig) -> float | None:
    """The command line. Returns the objective metric (for sweepers such as Optuna).

    In a sweep, a failing job is recorded as failed (metrics.json, the sweep report) and
    the sweep goes on; the sweep exits non-zero at the end. A single run exits at once.
    """
    quiet_unwritable_folders()
    try:
        record = train(cfg)
    except RunInterrupted as e:  # Ctrl-C, a scheduler's SIGTERM: a sweep stops too
        log.error("%s", e)
        sys.exit(e.exit_code)
    except D2lexpError as e:
        log.error("%s", e)
        if in_multirun():
            return math.nan  # a failed trial, for sweepers that optimise the returned value
        sys.exit(1)
    except Exception:
        if not in_multirun():
            raise
        log.exception("This job failed; the sweep goes on.")
        return math.nan
    value = record.get(cfg.objective.metric)
    return float(value) if value is not None else math.nan
