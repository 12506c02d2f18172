"""A search's trials, where they run (worker processes, or Slurm jobs): each trial is a d2lexp run
(`d2lexp.train.train`) with the search's settings and the trial's own, in `<search>/trials/<number>/`."""

from __future__ import annotations

import contextlib
import logging
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from d2lexp.errors import D2lexpError, RunInterrupted
from d2lexp.search.space import Param, overrides, suggest
from d2lexp.trust import UntrustedFileError

log = logging.getLogger("d2lexp")

JOURNAL = "study.journal"  # the study's storage, in the search's own folder (search.storage=null)
TRIALS = "trials"
MAX_TRIAL_NUMBER = 100_000
MAX_JOURNAL_BYTES = 64 << 20


@dataclass(frozen=True)
class SearchJob:
    """What every worker of a search is given: plain values (they cross to other processes and
    machines). `overrides`: the search command's own, the base of every trial's settings."""

    folder: str
    overrides: tuple[str, ...]
    study_name: str
    storage: str | None
    metric: str
    maximize: bool
    space: tuple[Param, ...]
    trials: int
    sampler: dict[str, Any] | None
    pruner: dict[str, Any] | None


def open_storage(job: SearchJob) -> Any:
    """The study's storage: Optuna's journal file in the search's folder, or the RDB URL given."""
    if job.storage:
        return job.storage
    import os
    import stat

    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = Path(job.folder) / JOURNAL
    # Optuna reads the whole journal into memory: on a shared file system anyone may have written
    # it, so it must be a plain file of a bounded size (a search's is a few hundred KB).
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        info = None
    if info is not None and (not stat.S_ISREG(info.st_mode) or info.st_size > MAX_JOURNAL_BYTES):
        raise UntrustedFileError(
            f"{path} is not a plain file of at most {MAX_JOURNAL_BYTES >> 20} MB: it is not a journal this search "
            "wrote, and is not read."
        )
    return JournalStorage(JournalFileBackend(str(path)))


def sampler_and_pruner(job: SearchJob, worker: int = 0) -> tuple[Any, Any]:
    """The configured sampler and pruner, built for one worker: a sampler's `seed` is offset by the
    worker's index, so workers sharing a study do not draw the same values."""
    from d2lexp.build import instantiate

    sampler_config = dict(job.sampler or {"_target_": "optuna.samplers.RandomSampler"})
    if isinstance(sampler_config.get("seed"), int):
        sampler_config["seed"] += worker
    pruner_config = job.pruner or {"_target_": "optuna.pruners.NopPruner"}
    return instantiate(OmegaConf.create(sampler_config), "search.sampler"), instantiate(
        OmegaConf.create(dict(pruner_config)), "search.pruner"
    )


def open_study(job: SearchJob, worker: int = 0) -> Any:
    import optuna

    sampler, pruner = sampler_and_pruner(job, worker)
    return optuna.load_study(study_name=job.study_name, storage=open_storage(job), sampler=sampler, pruner=pruner)


def trial_folder(job: SearchJob, number: Any) -> Path:
    """A trial's folder, by its number in the study (from the storage: a bounded whole number)."""
    if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number < MAX_TRIAL_NUMBER:
        raise UntrustedFileError(f"The study's storage gives a trial the number {str(number)[:40]!r}; it is refused.")
    return Path(job.folder) / TRIALS / f"{number:03d}"


def compose_search(overrides: list[str]) -> DictConfig:
    """The `search` config with `overrides`, as the command line composes it (in the search's own
    process Hydra is running already; elsewhere its compose API starts on d2lexp's configs)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from d2lexp.config import CONF_DIR

    if GlobalHydra.instance().is_initialized():
        return compose(config_name="search", overrides=overrides)
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="search", overrides=overrides)


def trial_settings(job: SearchJob, values: dict[str, Any], extra: tuple[str, ...] = ()) -> list[str]:
    """A trial's settings as overrides: the search's own, the trial's values, then `extra`."""
    return [*job.overrides, *overrides(values), *extra]


def trial_config(job: SearchJob, values: dict[str, Any], folder: Path, extra: tuple[str, ...] = ()) -> DictConfig:
    from d2lexp.overrides import hydra_quoted

    cfg = compose_search([*trial_settings(job, values, extra), f"paths.output_dir={hydra_quoted(str(folder))}"])
    with open_dict(cfg):  # workers side by side: their bars and tables would draw over each other
        for name in ("progress_bar", "model_summary"):
            if cfg.get("callbacks") and name in cfg.callbacks:
                cfg.callbacks[name] = None
        cfg.trainer.enable_model_summary = False
    return cfg


def preset_settings(preset: str) -> list[str]:
    """What the search preset `conf/hparams_search/<preset>.yaml` sets of a run, as a run's command
    line would: its group choices (`experiment=d2l_1/lenet`) and its values (`data.val_size=10000`),
    its search.* left out. (A trial's recorded settings name these, not the preset: a run's folder
    is resumed and evaluated by `python -m d2lexp`, which knows no search.)"""
    from d2lexp.config import CONF_DIR

    preset_cfg = OmegaConf.load(Path(CONF_DIR) / "hparams_search" / f"{preset}.yaml")
    settings = []
    for item in preset_cfg.get("defaults") or []:
        if isinstance(item, DictConfig):
            for key, value in item.items():
                if str(key).startswith("override /"):
                    settings.append(f"{str(key).removeprefix('override /')}={value}")

    def flatten(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                flatten(f"{prefix}.{key}" if prefix else str(key), value)
        else:
            settings.extend(overrides({prefix: node}))

    body = OmegaConf.to_container(preset_cfg, resolve=False)
    flatten("", {k: v for k, v in body.items() if k not in ("defaults", "search", "hydra")})
    return settings


def run_settings(job: SearchJob, values: dict[str, Any], extra: tuple[str, ...] = ()) -> list[str]:
    """A trial's settings as a plain run's command line (see preset_settings), each key once (the last)."""
    from d2lexp.overrides import command_line_values

    given = trial_settings(job, values, extra)
    preset = command_line_values(given).get("hparams_search")
    expanded = [
        *(preset_settings(preset) if preset else []),
        *(o for o in given if not o.startswith("hparams_search=")),
    ]
    last = {o.split("=", 1)[0]: i for i, o in enumerate(expanded)}
    return [o for i, o in enumerate(expanded) if last[o.split("=", 1)[0]] == i]


def record_settings(folder: Path, settings: list[str]) -> None:
    """The trial's settings in its folder, as a run's are (`.hydra/overrides.yaml`): what
    `python -m d2lexp.eval ckpt_path=<trial>` reads back (as plain settings: d2lexp.trust)."""
    import yaml

    from d2lexp import files

    if folder.is_dir():
        files.write_text(files.make_folder(folder / ".hydra") / "overrides.yaml", yaml.safe_dump(settings))


# ------------------------------------------------------------------------------------------------
# Logging: each trial's lines in its own train.log, and on the console with its number


_trial_number = ["-"]


class _TrialNumber(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.trial = _trial_number[0]
        return True


def log_as_worker() -> None:
    """A worker's console: d2lexp's format (text escaped), each line with the trial it is about."""
    from d2lexp.console import BelowWarnings, EscapeArguments, EscapingFormatter, quiet_lightning

    formatter = EscapingFormatter("[%(asctime)s][trial %(trial)s][%(levelname)s] - %(message)s")
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for stream, level, only_below in ((sys.stdout, logging.INFO, True), (sys.stderr, logging.WARNING, False)):
        handler = logging.StreamHandler(stream)
        handler.setLevel(level)
        handler.setFormatter(formatter)
        for extra in (_TrialNumber(), EscapeArguments(), *([BelowWarnings()] if only_below else [])):
            handler.addFilter(extra)
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    quiet_lightning()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # its per-trial lines: d2lexp says what matters


@contextlib.contextmanager
def trial_log(folder: Path, number: int) -> Iterator[None]:
    """While a trial runs: its number on the console's lines, and its lines in its own train.log."""
    from d2lexp import files
    from d2lexp.console import EscapeArguments, EscapingFormatter, RunLogFile

    files.make_folder(folder)
    handler = RunLogFile(str(folder / "train.log"))
    handler.setFormatter(EscapingFormatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    handler.addFilter(EscapeArguments())
    root = logging.getLogger()
    root.addHandler(handler)
    _trial_number[0] = str(number)
    try:
        yield
    finally:
        _trial_number[0] = "-"
        root.removeHandler(handler)
        handler.close()


# ------------------------------------------------------------------------------------------------
# Running trials


def run_trial(job: SearchJob, trial: Any) -> float:
    """Optuna's objective: the trial trained as a d2lexp run, its objective metric returned (NaN,
    a failed trial, where the run failed: its record says why); optuna.TrialPruned where its pruner
    stopped it (at an epoch's end: d2lexp.search.pruning)."""
    import optuna

    from d2lexp.search.pruning import EpochPruning
    from d2lexp.train import train

    values = suggest(trial, list(job.space))
    folder = trial_folder(job, trial.number)
    settings = run_settings(job, values)
    with trial_log(folder, trial.number):
        log.info("trial %d: %s", trial.number, " ".join(overrides(values)))
        pruning = EpochPruning(trial, job.metric)
        try:
            record = train(trial_config(job, values, folder), callbacks=[pruning])
        except RunInterrupted:
            raise
        except D2lexpError as e:  # diverged, a bad value: the trial failed, the search goes on
            log.error("trial %d failed: %s", trial.number, e)
            return math.nan
        except Exception as e:  # noqa: BLE001  (a bug in one trial: recorded, the others go on)
            log.exception("trial %d failed: %s", trial.number, e)
            return math.nan
        finally:
            record_settings(folder, settings)
    if pruning.pruned_at is not None:
        raise optuna.TrialPruned(f"pruned after {pruning.pruned_at} epochs")
    value = record.get(job.metric)
    return float(value) if isinstance(value, (int, float)) else math.nan


def work(job: SearchJob, worker: int) -> dict[str, Any]:
    """A worker: trials, one after another, from the shared study, until the search has `job.trials`
    of them (counted in the storage, so every worker stops; at most one trial per other worker more)."""
    from optuna.study import MaxTrialsCallback

    study = open_study(job, worker)
    study.optimize(lambda trial: run_trial(job, trial), callbacks=[MaxTrialsCallback(job.trials, states=None)],
                   gc_after_trial=False)  # fmt: skip
    return {"status": "done"}


def run_segment(job: SearchJob, number: int, values: dict[str, Any], epochs: int, test: bool) -> dict[str, Any]:
    """Successive halving's step: trial `number` trained up to `epochs`, going on from its own last
    checkpoint if it has one (d2lexp resumes exactly); its objective metric at the end."""
    from d2lexp.train import train

    folder = trial_folder(job, number)
    extra = (f"trainer.max_epochs={epochs}", "ckpt_path=auto", f"test={str(test).lower()}")
    with trial_log(folder, number):
        log.info("trial %d to epoch %d: %s", number, epochs, " ".join(overrides(values)))
        try:
            record = train(trial_config(job, values, folder, extra))
        except RunInterrupted:
            raise
        except D2lexpError as e:
            log.error("trial %d failed: %s", number, e)
            return {"status": "failed", "error": str(e)}
        finally:
            record_settings(folder, run_settings(job, values, extra[:1]))
    value = record.get(job.metric)
    return {"status": record.get("status"), "value": float(value) if isinstance(value, (int, float)) else None}
