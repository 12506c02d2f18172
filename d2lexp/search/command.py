"""`python -m d2lexp.search hparams_search=<preset> [overrides]`: the search's driver (see
d2lexp.search for how it is built). It claims the search's folder (outputs/search/<date>/<time>/),
creates the study there, starts the workers (or runs successive halving's rungs on them), and
writes the report when they are done, however they ended."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from d2lexp.cli import Command, fail, guarded, refuse_unknown_keys, start
from d2lexp.config import CONFIG_PATH
from d2lexp.errors import ConfigError

log = logging.getLogger("d2lexp")
PRESETS = "hparams_search=d2l_random, d2l_successive_halving or d2l_asha"


def search_job(cfg: DictConfig, folder: Path, overrides: list[str]) -> Any:
    """The search's settings, checked, as every worker gets them."""
    from d2lexp.search.space import parse_space
    from d2lexp.search.trial import SearchJob

    settings = cfg.search
    space = parse_space(OmegaConf.to_container(settings.params, resolve=True))
    for key, least in (("trials", 1), ("workers", 1)):
        if settings[key] < least:
            raise ConfigError(f"search.{key} must be at least {least}, got {settings[key]}.")
    if settings.launcher not in ("local", "slurm"):
        raise ConfigError(f"search.launcher is local or slurm, got {str(settings.launcher)[:40]!r}.")
    if cfg.objective.mode not in ("max", "min"):
        raise ConfigError(f"objective.mode is max or min, got {cfg.objective.mode!r}.")
    node = lambda n: OmegaConf.to_container(n, resolve=True) if n is not None else None  # noqa: E731
    return SearchJob(
        folder=str(folder), overrides=tuple(overrides), study_name=f"{settings.study_name}-{folder.parent.name}-{folder.name}",
        storage=settings.storage, metric=cfg.objective.metric, maximize=cfg.objective.mode == "max", space=tuple(space),
        trials=settings.trials, sampler=node(settings.sampler), pruner=node(settings.pruner),
    )  # fmt: skip


def check_a_trial(job: Any) -> None:
    """A trial's config, composed and built (at the low end of each range) before any worker starts:
    a setting that cannot make a run is one paragraph now, not a failure in every trial."""
    from d2lexp import build
    from d2lexp.search.trial import trial_config

    values = {p.key: (p.choices[0] if p.choices is not None else int(p.low) if p.integer else p.low) for p in job.space}
    cfg = trial_config(job, values, Path(job.folder) / "trials" / "check")
    build.check_run_settings(cfg)
    build.data(cfg)
    build.task(cfg, build.net(cfg))


def schedule_name(cfg: DictConfig) -> str:
    if cfg.search.get("halving") is not None:
        return "successive halving"
    pruner = str((cfg.search.get("pruner") or {}).get("_target_", "NopPruner")).rsplit(".", 1)[-1]
    sampler = str((cfg.search.get("sampler") or {}).get("_target_", "RandomSampler")).rsplit(".", 1)[-1]
    names = {"SuccessiveHalvingPruner": "ASHA", "HyperbandPruner": "Hyperband", "NopPruner": ""}
    kind = {"RandomSampler": "random search", "TPESampler": "TPE"}.get(sampler, sampler)
    return f"{kind}, {names.get(pruner, pruner)}" if names.get(pruner, pruner) else kind


def run_search(cfg: DictConfig) -> dict[str, Any]:
    """The search `cfg.search` describes, over the run the rest of `cfg` describes; its summary."""
    import optuna
    from hydra.core.hydra_config import HydraConfig

    from d2lexp.console import quiet_lightning
    from d2lexp.search.halving import successive_halving
    from d2lexp.search.report import summary_line, write_search_report
    from d2lexp.search.runner import LocalWorkers, SlurmWorkers
    from d2lexp.search.trial import open_storage, sampler_and_pruner, work

    if cfg.get("search") is None:
        raise ConfigError(f"Which search? Choose a preset ({PRESETS}), e.g. python -m d2lexp.search "
                          "hparams_search=d2l_asha, and change any of it on the command line.")  # fmt: skip
    quiet_lightning()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder = Path(cfg.paths.output_dir)
    overrides = [o for o in HydraConfig.get().overrides.task if not o.lstrip("+~").startswith(("hydra.", "hydra/"))]
    job = search_job(cfg, folder, overrides)
    check_a_trial(job)
    settings = cfg.search
    sampler, pruner = sampler_and_pruner(job)
    study = optuna.create_study(study_name=job.study_name, storage=open_storage(job), sampler=sampler, pruner=pruner,
                                direction="maximize" if job.maximize else "minimize")  # fmt: skip
    workers = min(settings.workers, settings.trials)
    runner = (
        SlurmWorkers(folder, settings.slurm)
        if settings.launcher == "slurm"
        else LocalWorkers(workers, settings.threads_per_worker)
    )
    schedule = schedule_name(cfg)
    log.info("Search (%s): %d trials, %d at a time (%s), in %s", schedule, settings.trials, workers,
             "Slurm jobs" if settings.launcher == "slurm" else "processes", folder)  # fmt: skip
    started = time.time()
    try:
        if settings.halving is not None:
            successive_halving(job, study, runner, settings.halving)
        else:
            for result in runner.run([(work, (job, worker)) for worker in range(workers)]):
                if result.get("status") != "done":
                    log.error("A worker %s: %s", result.get("status"), result.get("error"))
    finally:
        close_unfinished(study)
        summary = write_search_report(folder, study, job, schedule, time.time() - started)
        log.info("%s -> %s", summary_line(summary), folder / "report.md")
    if summary["best"] is None:
        raise ConfigError(f"No trial of the search completed ({summary['failed']} failed, {summary['pruned']} pruned); "
                          f"each trial's record says why: {folder / 'report.md'}.")  # fmt: skip
    return summary


def close_unfinished(study: Any) -> None:
    """Trials left running by a worker that is gone (killed, or stopped) are failed ones."""
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)


COMMAND = Command(
    script="d2lexp-search",
    module="d2lexp.search",
    purpose="the book's hyperparameter search (random search, successive halving, ASHA) over any run, on Optuna.",
    usage="d2lexp-search hparams_search=<preset> [search.key=value ...] [key=value ...]",
    options=(
        ("hparams_search=PRESET", "d2l_random, d2l_successive_halving, d2l_asha: the book's chapter 19 searches"),
        ("search.trials=N, search.workers=N", "trials in all, and at once (processes here, or Slurm jobs)"),
        ("search.launcher=local|slurm", "where workers run (slurm: search.slurm.partition=..., a shared file system)"),
        ("+search.params.KEY={low: A, high: B, log: true}", "a setting searched over (or {choices: [...]})"),
        ("search.params.KEY.low=A", "a preset's range changed (search.params.optimizer.lr.low=0.05)"),
        ("search.storage=URL", "the study in an RDB (default: study.journal in the search's folder)"),
        ("key=value", "any run setting: the runs searched (experiment=d2l_1/mlp, trainer.max_epochs=5)"),
    ),
    examples=(
        ("d2lexp-search hparams_search=d2l_asha", "ASHA over LeNet's learning rate and batch size"),
        ("d2lexp-search hparams_search=d2l_random search.trials=20", "random search, 20 trials"),
        (
            "d2lexp-search hparams_search=d2l_asha search.launcher=slurm search.workers=8",
            "8 Slurm jobs sharing the study",
        ),
    ),
)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="search")
def hydra_main(cfg: DictConfig) -> None:
    guarded(lambda: run_search(cfg))


def main() -> None:
    """`python -m d2lexp.search` and `d2lexp-search`."""
    from d2lexp.overrides import command_line_values

    args = start(COMMAND, sys.argv[1:])
    if command_line_values(args).get("hparams_search") in (None, "", "null"):  # before Hydra makes a folder
        fail(f"Which search? Choose a preset ({PRESETS}), e.g. python -m d2lexp.search hparams_search=d2l_asha, "
             "and change any of it on the command line.")  # fmt: skip
    refuse_unknown_keys("search", args)
    sys.argv[1:] = args
    hydra_main()
