"""Train one experiment: `python -m d2lexp [overrides]`, a Hydra app over `conf/`.

`train(cfg)` builds everything from the composed config (data, net, task,
callbacks, loggers, trainer), fits, evaluates the test split with the final
weights and records the run (metrics.json, TensorBoard HParams, a summary line).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

import d2lexp
from d2lexp import config as _schemas  # noqa: F401  (registers the typed schemas with Hydra)
from d2lexp.errors import D2lexpError
from d2lexp.run_folder import quiet_unwritable_threads

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")

log = logging.getLogger("d2lexp")


def instantiate(node: Any, **kwargs: Any) -> Any:
    """hydra.utils.instantiate, letting d2lexp's own errors through unwrapped: a data module
    that refuses `batch_size=-1` speaks for itself instead of behind InstantiationException."""
    from hydra.errors import InstantiationException

    try:
        return hydra.utils.instantiate(node, **kwargs)
    except InstantiationException as e:
        if isinstance(e.__cause__, D2lexpError):
            raise e.__cause__ from None
        raise


def hydra_choices() -> dict[str, str]:
    """The config-group options of this run (model=lenet, ...), when run under Hydra."""
    from hydra.core.hydra_config import HydraConfig

    try:
        choices = HydraConfig.get().runtime.choices
    except ValueError:  # composed with the compose API (tests, notebooks)
        return {}
    return {k: v for k, v in choices.items() if not k.startswith("hydra") and v is not None}


def build_net(cfg: DictConfig):
    """The net from `cfg.model`, initialised by `cfg.init`."""
    net = instantiate(cfg.model, _convert_="all")
    if cfg.get("init") is not None:
        net.apply(instantiate(cfg.init, _convert_="all"))
    return net


def build_task(cfg: DictConfig, net):
    scheduler = instantiate(cfg.scheduler, _convert_="all") if cfg.get("scheduler") is not None else None
    optimizer = checked_optimizer(instantiate(cfg.optimizer, _convert_="all"))
    return instantiate(cfg.task, net=net, optimizer=optimizer, scheduler=scheduler, _convert_="all")


def checked_optimizer(factory):
    """The optimizer factory, after building it once on a dummy parameter: PyTorch checks its
    values then (a negative lr or momentum, ...), so a bad one stops the run before any work."""
    import torch

    from d2lexp.errors import ConfigError

    try:
        factory([torch.nn.Parameter(torch.zeros(1))])
    except (ValueError, TypeError) as e:
        raise ConfigError(f"The optimizer settings are not valid: {e}. Fix the optimizer.* values.") from None
    return factory


def build_callbacks(cfg: DictConfig) -> list:
    from d2lexp.callbacks.history import EpochHistory
    from d2lexp.callbacks.resume import RandomState
    from d2lexp.callbacks.run_config import RunConfigInCheckpoint
    from d2lexp.callbacks.throughput import Throughput

    callbacks = [instantiate(c, _convert_="all") for c in (cfg.get("callbacks") or {}).values() if c is not None]
    # What metrics.json records is measured by these, whatever the callbacks group holds.
    if not any(isinstance(c, Throughput) for c in callbacks):
        callbacks.append(Throughput())
    callbacks += [EpochHistory(), RandomState(), RunConfigInCheckpoint(OmegaConf.to_container(cfg, resolve=True))]
    return callbacks


def with_progress_bar(callbacks: list, cfg: DictConfig) -> tuple[list, bool]:
    """The callbacks, and whether the Trainer shows a progress bar: only one configured in
    `callbacks`. With none (`callbacks.progress_bar=null`) Lightning would add its own, redrawn
    100 times a second on a thread that takes the GIL from the training loop; with
    `trainer.enable_progress_bar=false` a configured one is dropped rather than refused."""
    from lightning.pytorch.callbacks import ProgressBar

    if not cfg.trainer.get("enable_progress_bar", True):
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    return callbacks, any(isinstance(c, ProgressBar) for c in callbacks)


def build_loggers(cfg: DictConfig) -> list:
    return [instantiate(c, _convert_="all") for c in (cfg.get("logger") or {}).values() if c is not None]


def quiet_lightning() -> None:
    """Route Lightning's messages through Hydra's logging once (console and run log), minus its ads."""
    import warnings

    lightning_logger = logging.getLogger("lightning")
    if logging.getLogger().handlers:  # Hydra configured the root logger: don't print twice
        lightning_logger.handlers.clear()
        lightning_logger.propagate = True
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
        lambda record: not str(record.msg).startswith("💡 Tip")
    )
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    # d2lexp writes its step-level loss itself (Task.log_step_loss); this warning is about Lightning's.
    warnings.filterwarnings("ignore", message=r"The number of training batches .* logging interval")
    # d2lexp logs torchmetrics results, which are already reduced over all processes.
    warnings.filterwarnings("ignore", message=r"It is recommended to use `self.log\(.*sync_dist=True\)")
    # A data module without validation text returns an empty val loader on purpose.
    warnings.filterwarnings("ignore", message=r"Total length of `list` across ranks is zero")


def _has_test(task, datamodule) -> bool:
    """Whether there is a test stage: the task evaluates and the data has a test split."""
    from lightning.pytorch.utilities.model_helpers import is_overridden

    return is_overridden("test_step", task) and is_overridden("test_dataloader", datamodule)


def _count_parameters(net) -> int:
    return sum(p.numel() for p in net.parameters())


def _metric_values(trainer) -> dict[str, float]:
    from d2lexp.run_record import to_float

    return {k: v for k, v in ((k, to_float(v)) for k, v in trainer.callback_metrics.items()) if v is not None}


def train(cfg: DictConfig, callbacks: list | None = None, net: Any = None) -> dict[str, Any]:
    """Run the experiment `cfg` describes; return its record (also written to metrics.json).

    For programmatic use (notebooks, benchmarks, tests): `callbacks` are added before the
    configured ones, and `net` replaces the one `cfg.model` and `cfg.init` would build
    (it is trained in place).
    """
    import lightning.pytorch as pl
    import torch

    from lightning.pytorch.utilities import rank_zero_only

    from d2lexp.callbacks.checkpoint import BackgroundCheckpointIO
    from d2lexp.checkpoint import check_fits, defining_settings, find_checkpoint, load_checkpoint
    from d2lexp.errors import TrainingDiverged
    from d2lexp.inspect import count_macs
    from d2lexp.run_folder import is_unwritable, run_stopped_unwritable
    from d2lexp.profilers import NoProfiler
    from d2lexp.run_record import collapse, collapse_warning, hparams_of, summary_line, write_metrics

    d2lexp.begin_run()
    quiet_lightning()
    output_dir = Path(cfg.paths.output_dir)
    choices = hydra_choices()
    record: dict[str, Any] = {"status": "running", "output_dir": str(output_dir), "started_at": time.time(), "pid": os.getpid()}

    def save(record: dict[str, Any]) -> OSError | None:  # one metrics.json per run, from the first process
        if rank_zero_only.rank == 0:
            try:
                write_metrics(output_dir, record)
            except OSError as e:  # a full or read-only disk: the caller says so, and what stopped the run
                return e
        return None

    try:
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        torch.set_float32_matmul_precision(cfg.get("matmul_precision") or "highest")
        datamodule = instantiate(cfg.data, _convert_="all")
        net = build_net(cfg) if net is None else net
        record.update(
            model=choices.get("model", type(net).__name__.lower()),
            experiment=choices.get("experiment"),
            seed=cfg.seed,
            params=_count_parameters(net),
        )
        task = build_task(cfg, net)
        if hasattr(datamodule, "example_input"):  # lets the model summary show shapes and FLOPs
            task.example_input_array = datamodule.example_input()
            example = datamodule.on_after_batch_transfer(datamodule.example_input(), 0)
            record["macs_per_example"] = count_macs(lambda: instantiate(cfg.model), example)
        ckpt_path = None
        if cfg.get("ckpt_path"):
            settings = defining_settings(OmegaConf.to_container(cfg, resolve=False))
            ckpt_path = str(find_checkpoint(cfg.ckpt_path, cfg.paths.log_dir, exclude=output_dir, settings=settings))
            check_fits(load_checkpoint(ckpt_path), task, ckpt_path)
            record["resumed_from"] = ckpt_path
        callbacks, show_progress = with_progress_bar([*(callbacks or []), *build_callbacks(cfg)], cfg)
        loggers = build_loggers(cfg)
        # No profiler asked for: Lightning's own no-op one, minus its cost per hook (d2lexp.profilers).
        no_profiler = cfg.trainer.get("profiler") is None and not cfg.trainer.get("barebones")
        # Deterministic runs do without cuDNN autotuning, which picks algorithms by timing them.
        deterministic = bool(cfg.trainer.get("deterministic"))
        trainer: pl.Trainer = instantiate(
            cfg.trainer, callbacks=callbacks, logger=loggers or False, _convert_="all",
            enable_progress_bar=show_progress,
            **({"profiler": NoProfiler()} if no_profiler else {}), **({"benchmark": False} if deterministic else {}),
            # d2lexp's checkpoint callbacks write while training goes on (unless plugins are configured)
            **({} if cfg.trainer.get("plugins") else {"plugins": [BackgroundCheckpointIO()]}),
        )  # fmt: skip
        refuse_relaunching_sweeps(trainer)
        save(record)  # "running": a run killed from now on shows as interrupted in reports

        start = time.perf_counter()
        trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        record["fit_seconds"] = time.perf_counter() - start
        if trainer.interrupted:
            raise KeyboardInterrupt
        metrics = _metric_values(trainer)
        if cfg.get("test") and _has_test(task, datamodule) and not task.diverged:
            trainer.test(task, datamodule=datamodule, verbose=False)
            metrics.update(_metric_values(trainer))
        def checkpoint_path(keeps: Callable[[Any], bool]) -> str | None:
            return next((c.best_model_path for c in trainer.checkpoint_callbacks if keeps(c) and c.best_model_path), None)

        record.update(
            status="diverged" if task.diverged else "done",
            epochs=trainer.current_epoch,
            global_step=trainer.global_step,
            world_size=trainer.world_size,
            **{k: v for k, v in sorted(metrics.items()) if not k.endswith("_step")},
            best_checkpoint=checkpoint_path(lambda c: c.monitor is not None),  # the best epoch by the objective
            last_checkpoint=checkpoint_path(lambda c: c.filename == "last"),  # the newest state
        )
        for callback in trainer.callbacks:  # what callbacks measured: throughput, history, samples, ...
            if callable(getattr(callback, "record", None)):
                record.update(callback.record())
        record["collapsed"] = collapse(record)
        if record["collapsed"] and rank_zero_only.rank == 0:
            log.warning(collapse_warning(record, record["collapsed"]))
        _log_hparams(trainer, hparams_of(cfg, choices), record)
        if task.diverged:
            record["error"] = task.diverged
            raise TrainingDiverged(f"{record['model']} diverged: {task.diverged}")
    except BaseException as e:
        status, error = "failed", str(e) or type(e).__name__
        if isinstance(e, TrainingDiverged):
            status = "diverged"
        elif isinstance(e, KeyboardInterrupt):
            status = "interrupted"
        elif isinstance(e, SystemExit):  # Lightning's SIGTERMException: a scheduler's time limit, `kill`, `timeout`
            status, error = "interrupted", "stopped by a signal (SIGTERM)"
        record.update(status=status, error=record.get("error") or error)
        unrecorded = save(record)
        if is_unwritable(e):
            raise run_stopped_unwritable(output_dir, e, recorded=unrecorded is None) from None
        if unrecorded is not None:
            log.error("Could not record the run's end in %s/metrics.json: %s", output_dir, unrecorded.strerror)
        raise
    record["finished_at"] = time.time()
    unrecorded = save(record)
    if unrecorded is not None:
        raise run_stopped_unwritable(output_dir, unrecorded, recorded=False)
    if rank_zero_only.rank == 0:
        log.info("%s -> %s", summary_line(record), output_dir)
    return record


def refuse_relaunching_sweeps(trainer) -> None:
    """Hydra multirun with a strategy that starts its other processes by re-running the
    command (Lightning's `ddp`) would make those processes re-run the whole sweep, each with
    other hyperparameters (Lightning issue #11300). Refuse it, naming what works instead."""
    from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

    from d2lexp.errors import ConfigError

    strategy = trainer.strategy
    launcher = getattr(strategy, "launcher", None)
    environment = getattr(strategy, "cluster_environment", None)
    relaunches = (
        isinstance(launcher, _SubprocessScriptLauncher)
        and environment is not None
        and not environment.creates_processes_externally
        and (trainer.num_devices > 1 or trainer.num_nodes > 1)
    )
    if relaunches and _in_multirun():
        raise ConfigError(
            "A -m sweep cannot use trainer.strategy=ddp on one machine: Lightning starts the other processes by "
            "re-running the command, and each would re-run the whole sweep with other settings (Lightning issue "
            "#11300). Use trainer.strategy=ddp_spawn for a local sweep, or run the sweep under SLURM with one task "
            "per GPU (hydra/launcher=slurm trainer=slurm), where SLURM starts every process."
        )


def _log_hparams(trainer, hparams: dict[str, Any], record: dict[str, Any]) -> None:
    """One HParams entry per run, with its final metrics, in each TensorBoard logdir."""
    from lightning.pytorch.loggers import TensorBoardLogger

    keys = (
        "train/loss", "train/acc", "train/ppl", "val/acc", "val/acc_best", "val/loss", "val/ppl", "test/acc",
        "test/loss", "train_examples_per_second", "train_tokens_per_second", "param/w_error",
    )  # fmt: skip
    metrics = {f"hparams/{k.replace('/', '_')}": record[k] for k in keys if record.get(k) is not None}
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger) and trainer.is_global_zero:
            logger.log_hyperparams(hparams, metrics=metrics)
            logger.finalize("success")


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:
        return False


def main() -> None:
    """`python -m d2lexp` and the `d2lexp` command: a misspelt key is caught before Hydra starts."""
    message = _schemas.unknown_key_message(CONF_DIR, "config", sys.argv[1:])
    if message:
        print(message, file=sys.stderr)
        sys.exit(1)
    hydra_main()


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def hydra_main(cfg: DictConfig) -> float | None:
    """The command line. Returns the objective metric (for sweepers such as Optuna).

    In a sweep, a failing job is recorded as failed (metrics.json, the sweep report) and
    the sweep goes on; the sweep exits non-zero at the end. A single run exits at once.
    """
    logging.raiseExceptions = False  # a log file on a full disk: the run's own paragraph says what happened
    quiet_unwritable_threads()
    try:
        record = train(cfg)
    except D2lexpError as e:
        log.error("%s", e)
        if _in_multirun():
            return math.nan  # a failed trial, for sweepers that optimise the returned value
        sys.exit(1)
    except Exception:
        if not _in_multirun():
            raise
        log.exception("This job failed; the sweep goes on.")
        return math.nan
    value = record.get(cfg.objective.metric)
    return float(value) if value is not None else math.nan
