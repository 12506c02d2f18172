"""Everything a run is made of, built from its composed config: the one place that calls
Hydra's `instantiate`.

    cfg.data                     -> the data module          (conf/data/*.yaml)
    cfg.model, cfg.init          -> the net                  (conf/model, conf/init)
    cfg.optimizer, cfg.scheduler -> factories for the task   (conf/optimizer, conf/scheduler)
    cfg.task                     -> the LightningModule      (conf/task)
    cfg.callbacks, cfg.logger    -> lists for the Trainer    (conf/callbacks, conf/logger)
    cfg.trainer, cfg.speed       -> the Trainer              (conf/trainer, conf/speed)

Each value is checked as it is built, so a bad one stops the run with one paragraph before any
data is read or any step is trained. (The configs come from the user's own conf/ and command
line; nothing read from a checkpoint or a run folder is ever built here: see d2lexp.nets.)
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as pl
import torch
from lightning.fabric.plugins.environments import SLURMEnvironment
from omegaconf import DictConfig, OmegaConf
from torch import nn

from d2lexp import speed
from d2lexp.callbacks.history import EpochHistory
from d2lexp.callbacks.resume import RandomState
from d2lexp.callbacks.run_config import RunConfigInCheckpoint
from d2lexp.callbacks.throughput import Throughput, run_start_time
from d2lexp.checkpoint import defining_settings, find_checkpoint, load_checkpoint
from d2lexp.config import in_multirun
from d2lexp.data.base import DataModule
from d2lexp.errors import CheckpointError, ConfigError, D2lexpError
from d2lexp.measure import ModelStats, model_stats
from d2lexp.resume import RunCheckpointIO, checked_for_resume
from d2lexp.tasks.base import OptimizerFactory, Scheduler, Task

log = logging.getLogger("d2lexp")


def record_callbacks(cfg: DictConfig, on_epoch: Any = None) -> list[pl.Callback]:
    """The callbacks a run's record and its exact resumption depend on: added to every run, whatever
    the callbacks group holds (conf/callbacks/default.yaml says so). `on_epoch`: see EpochHistory."""
    return [
        Throughput(run_start_time()),
        EpochHistory(on_epoch),
        RandomState(),
        RunConfigInCheckpoint(OmegaConf.to_container(cfg, resolve=True), command_line_overrides()),
    ]


def instantiate(node: Any, group: str, **kwargs: Any) -> Any:
    """hydra.utils.instantiate, with d2lexp's own errors let through unwrapped (a data module that
    refuses `batch_size=-1` speaks for itself) and a constructor's ValueError or TypeError made
    into one paragraph naming the config group."""
    from hydra.errors import InstantiationException
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        return hydra.utils.instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, D2lexpError):
            raise cause from None
        if isinstance(
            cause, (ValueError, TypeError, RuntimeError, MisconfigurationException, OverflowError, ImportError)
        ):  # bad arguments
            raise ConfigError(f"The {group} settings are not valid: {cause}. Fix the {group}.* values.") from None
        raise


def data(cfg: DictConfig) -> DataModule:
    """The data module; where `cfg.augment` changes anything, given to it to augment its training batches."""
    augment = instantiate(cfg.augment, "augment") if cfg.get("augment") is not None else None
    if augment is None or not augment.active:
        return instantiate(cfg.data, "data")
    if not getattr(hydra.utils.get_class(cfg.data._target_), "augmentable", False):  # what it declares: DataModule
        raise ConfigError(
            f"The data {cfg.data._target_} has no images to augment. Leave augment at none (drop the augment.* "
            "settings), or choose image data."
        )
    return instantiate(cfg.data, "data", augment=cfg.augment)  # as a node: Hydra would make an object a dict


def output_layer(cfg: DictConfig) -> set[str]:
    """The names of the net's tensors that make its output layer: those whose shapes change with
    `model.num_classes` (d2lexp.finetune.class_dependent); none for a model without that setting."""
    from d2lexp.finetune import class_dependent

    classes = cfg.model.get("num_classes")
    if not isinstance(classes, int) or isinstance(classes, bool):
        return set()
    return class_dependent(lambda k: instantiate(OmegaConf.merge(cfg.model, {"num_classes": k}), "model"), classes)


def net(cfg: DictConfig, start: bool = True) -> nn.Module:
    """The net from `cfg.model`, initialised by `cfg.init`: a function applied to every module, or
    trained weights to start from (init=from_run, init=torchvision: d2lexp.finetune), taken only
    when `start` (a resumed run's come from its checkpoint; a net measured on the meta device needs none)."""
    from d2lexp.finetune import StartFrom

    built = instantiate(cfg.model, "model")
    init_cfg = cfg.get("init")
    if init_cfg is None:
        return built
    try:
        target = hydra.utils.get_object(init_cfg._target_)
    except (ImportError, AttributeError, ValueError):
        target = None  # instantiate says what is wrong with it
    if not (isinstance(target, type) and issubclass(target, StartFrom)):
        built.apply(instantiate(init_cfg, "init"))
        return built
    if not start:  # a resumed run's weights are its checkpoint's (its init.ckpt_path is not even recorded)
        return built
    if OmegaConf.is_missing(init_cfg, "ckpt_path"):
        raise ConfigError(
            "init=from_run needs init.ckpt_path: the run folder (outputs/<date>/<time>) or .ckpt file of the net to start "
            "from; init.ckpt_path=null trains the same settings from scratch (to compare)."
        )
    instantiate(init_cfg, "init").load_into(built, output_layer(cfg))
    return built


def optimizer(cfg: DictConfig, built_net: nn.Module | None = None) -> OptimizerFactory:
    """The optimizer factory, after building it once on a dummy parameter: PyTorch checks its
    values then (a negative lr or momentum, ...), so a bad one stops the run before any work.
    `optimizer.output_lr_scale` (d2lexp's setting, not the optimizer's) trains the net's output
    layer that many times faster (d2lexp.finetune.OutputLayerLR)."""
    from d2lexp.finetune import OutputLayerLR

    settings = OmegaConf.to_container(cfg.optimizer, resolve=True)
    scale = settings.pop("output_lr_scale", 1.0)
    factory = instantiate(OmegaConf.create(settings), "optimizer")
    try:
        factory([nn.Parameter(torch.zeros(1))])
    except (ValueError, TypeError) as e:
        raise ConfigError(f"The optimizer settings are not valid: {e}. Fix the optimizer.* values.") from None
    if scale == 1.0:
        return factory
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale <= 1e6 or "lr" not in settings:
        raise ConfigError(
            "optimizer.output_lr_scale is a positive number (the book's fine-tuning: 10), for an optimizer with an lr; "
            f"got {scale!r}."
        )
    names = output_layer(cfg)
    listed = built_net.named_parameters() if built_net is not None else ()
    positions = {i for i, (name, _) in enumerate(listed) if name in names}
    if built_net is not None and not positions:
        raise ConfigError(
            "optimizer.output_lr_scale trains the output layer faster, but this model has no model.num_classes to find "
            "it by. Leave optimizer.output_lr_scale at 1."
        )
    return OutputLayerLR(factory, float(settings["lr"]), positions, float(scale))


def scheduler(cfg: DictConfig) -> Scheduler | None:
    return instantiate(cfg.scheduler, "scheduler") if cfg.get("scheduler") is not None else None


def task(cfg: DictConfig, built_net: nn.Module) -> Task:
    """The LightningModule training `built_net`, made faster as `cfg.speed` says. (Built from a
    partial: objects handed to `instantiate` as arguments would be turned into configs.)"""
    make = instantiate(cfg.task, "task", _partial_=True)
    try:
        built = make(net=built_net, optimizer=optimizer(cfg, built_net), scheduler=scheduler(cfg))
    except (ValueError, TypeError) as e:
        raise ConfigError(f"The task settings are not valid: {e}. Fix the task.* values.") from None
    speed.prepare_task(built, cfg.speed)
    return built


def callbacks(cfg: DictConfig, first: Sequence[pl.Callback] = (), on_epoch: Any = None) -> list[pl.Callback]:
    """`first` (a caller's own), the configured callbacks, the record's, then speed's (last: the
    net is compiled after the model summary has run it). `on_epoch`: see EpochHistory."""
    configured = [instantiate(c, "callbacks") for c in (cfg.get("callbacks") or {}).values() if c is not None]
    every = [*first, *configured, *record_callbacks(cfg, on_epoch), *speed.callbacks(cfg.speed, cfg.trainer)]
    if cfg.trainer.get("enable_progress_bar") is False:  # the switch drops a configured bar rather than refusing it
        every = [c for c in every if not isinstance(c, pl.callbacks.ProgressBar)]
    return every


def command_line_overrides() -> list[str] | None:
    """The overrides this run was started with, when Hydra started it."""
    from hydra.core.hydra_config import HydraConfig

    try:
        return list(HydraConfig.get().overrides.task)
    except ValueError:  # composed with the compose API: what d2lexp.api composed (notebooks), else none (tests)
        from d2lexp.config import composed_job

        job = composed_job.get()
        return list(job.overrides) if job is not None else None


def loggers(cfg: DictConfig) -> list[Any]:
    return [instantiate(c, "logger") for c in (cfg.get("logger") or {}).values() if c is not None]


def check_accelerator(cfg: DictConfig) -> None:
    """A GPU asked for where there is none: one paragraph, not Lightning's traceback."""
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    available = {
        "gpu": torch.cuda.is_available(),
        "cuda": torch.cuda.is_available(),
        "mps": torch.backends.mps.is_available(),
    }
    if not available.get(accelerator, True):
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "the CPU only"
        raise ConfigError(
            f"trainer.accelerator={accelerator}, but PyTorch sees no such device on this machine (this PyTorch is "
            f"built for {build}). Train on the CPU with trainer=cpu, or leave the accelerator to trainer.accelerator=auto."
        )


def trainer(cfg: DictConfig, every_callback: list[pl.Callback], every_logger: list[Any]) -> pl.Trainer:
    """The Trainer; its checkpoints are read and written by d2lexp's RunCheckpointIO (checked loads,
    atomic writes, removals only inside the run's folder: d2lexp.resume)."""
    from lightning.fabric.plugins import CheckpointIO

    check_accelerator(cfg)
    options: dict[str, Any] = speed.trainer_options(cfg.speed, cfg.trainer)
    plugins = list(cfg.trainer.get("plugins") or [])
    if not any(isinstance(p, CheckpointIO) for p in plugins):
        options["plugins"] = [*plugins, speed.checkpoint_io(cfg.speed, cfg.paths.output_dir)]
    if cfg.trainer.get("deterministic"):
        options["benchmark"] = False  # cuDNN autotuning picks algorithms by timing them
    # Only a bar configured in `callbacks` is shown: with none, Lightning would add its own, redrawn
    # 100 times a second on a thread that takes the GIL from the training loop.
    options["enable_progress_bar"] = any(isinstance(c, pl.callbacks.ProgressBar) for c in every_callback)
    if SLURMEnvironment.detect():
        # The environment Lightning would pick, without its auto-requeue: d2lexp's Slurm launcher
        # requeues (d2lexp/slurm.py), and Lightning's would save another checkpoint from inside its
        # signal handler, mid-step, that ckpt_path=auto does not read, and requeue a second time.
        options["plugins"] = [*options.get("plugins", []), SLURMEnvironment(auto_requeue=False)]
    built = instantiate(cfg.trainer, "trainer", callbacks=every_callback, logger=every_logger or False, **options)
    refuse_relaunching_sweeps(built)
    return built


def refuse_relaunching_sweeps(built: pl.Trainer) -> None:
    """Hydra multirun with a strategy that starts its other processes by re-running the
    command (Lightning's `ddp`) would make those processes re-run the whole sweep, each with
    other hyperparameters (Lightning issue #11300). Refuse it, naming what works instead."""
    from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

    strategy = built.strategy
    launcher = getattr(strategy, "launcher", None)
    environment = getattr(strategy, "cluster_environment", None)
    relaunches = (
        isinstance(launcher, _SubprocessScriptLauncher)
        and environment is not None
        and not environment.creates_processes_externally
        and (built.num_devices > 1 or built.num_nodes > 1)
    )
    if relaunches and in_multirun():
        raise ConfigError(
            "A -m sweep cannot use trainer.strategy=ddp on one machine: Lightning starts the other processes by "
            "re-running the command, and each would re-run the whole sweep with other settings (Lightning issue "
            "#11300). Use trainer.strategy=ddp_spawn for a local sweep, or run the sweep under SLURM with one task "
            "per GPU (hydra/launcher=slurm trainer=slurm), where SLURM starts every process."
        )


# The trainer's counts that Lightning divides by or counts down without checking them: their least values.
_TRAINER_MINIMUMS = {
    "accumulate_grad_batches": 1, "check_val_every_n_epoch": 1, "log_every_n_steps": 0, "max_epochs": -1,
    "min_epochs": 0, "max_steps": -1, "num_sanity_val_steps": -1, "reload_dataloaders_every_n_epochs": 0,
    "devices": -1, "num_nodes": 1,
}  # fmt: skip


# The precisions d2lexp's tasks and data train in (float32 batches; 64-bit nets would meet them in a dtype error).
PRECISIONS = ("32-true", "32", 32, "16-mixed", "16", 16, "bf16-mixed", "bf16", "16-true", "bf16-true")  # fmt: skip


def check_run_settings(cfg: DictConfig) -> None:
    """The root config's own values, which no schema types, and the trainer's counts, which
    Lightning uses unchecked (a zero it divides by ends a run in a ZeroDivisionError)."""
    precision = cfg.trainer.get("precision")
    if precision is not None and precision not in PRECISIONS:
        raise ConfigError(
            f"trainer.precision={str(precision)[:40]!r} is not one d2lexp trains in: use 32-true, bf16-mixed or "
            "16-mixed (mixed precision on a GPU), or 16-true / bf16-true."
        )
    for key, least in _TRAINER_MINIMUMS.items():
        value = cfg.trainer.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value < least:
            raise ConfigError(f"trainer.{key} must be at least {least}, got {value}.")
    seed = cfg.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        raise ConfigError(f"seed must be a whole number from 0 to 4294967295 (e.g. seed=42), got {str(seed)[:40]!r}.")
    if (
        cfg.trainer.get("max_epochs") == -1
        and cfg.trainer.get("max_steps", -1) == -1
        and not cfg.trainer.get("max_time")
    ):
        log.warning(
            "trainer.max_epochs=-1: no epoch limit. This run trains until it is stopped (Ctrl-C), or set "
            "trainer.max_epochs, trainer.max_steps or trainer.max_time."
        )


def check_input_fits_net(built_net: nn.Module, example: torch.Tensor) -> None:
    """A net built for one input size (`model.input_size`) must be given images of that size."""
    size = getattr(built_net, "input_size", None)
    if size is not None and example.dim() == 4 and tuple(example.shape[-2:]) != (size, size):
        given = "x".join(map(str, example.shape[-2:]))
        raise ConfigError(
            f"The net is built for {size}x{size} images (model.input_size={size}), but the data gives {given} "
            f"(data.resize). Set model.input_size={example.shape[-1]} and leave data.resize to follow it."
        )


def check_net_takes_data(net: nn.Module, example: torch.Tensor) -> None:
    """ConfigError unless the checkpoint's net takes one example of the data as configured (its
    run's recorded data settings, or the command's): before any data is read or scored."""
    check_input_fits_net(net, example)
    try:
        with torch.no_grad():
            net(example)
    except (RuntimeError, ValueError, TypeError, IndexError) as e:
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise ConfigError(
            f"The checkpoint's net does not take this data's inputs ({tuple(example.shape)}: {reason}). Evaluate it with "
            "the data settings it was trained with (leave data.* to the run's own)."
        ) from None


def check_net_fits_data(stats: ModelStats, data_module: DataModule) -> None:
    """A net's output must have one score per class of the data: per example (a classifier's last
    dimension), per pixel (a segmenter's channels), per anchor and background (a detector's class
    scores, the second of its outputs)."""
    classes, kind = data_module.num_classes, data_module.target_kind
    shapes = stats.output_shapes or (stats.output_shape,)
    if classes is None or not shapes or not shapes[0]:
        return
    if kind == "masks":
        given, wanted, per = (shapes[0][1] if len(shapes[0]) == 4 else None), classes, "pixel"
    elif kind == "boxes":
        given, wanted, per = (shapes[1][-1] if len(shapes) == 3 else None), classes + 1, "anchor"
        if given is None:
            raise ConfigError(
                "The data holds boxes to detect, but the net does not give (anchors, class scores, offsets) as a "
                "single-shot detector does (model=tiny_ssd)."
            )
    else:
        given, wanted, per = shapes[0][-1], classes, "example"
    if given is not None and given != wanted:
        background = " (one more than the data's classes: background)" if kind == "boxes" else ""
        raise ConfigError(
            f"The net gives {given} scores per {per}, but the data needs {wanted}{background}. "
            f"Set model.num_classes={classes}."
        )


def check_net_fits_checkpoint(cfg: DictConfig, saved: dict[str, Any], source: Path) -> None:
    """A resumed run's net, built first on the meta device and abandoned the moment it would hold
    more values than the checkpoint's weights: settings a run folder recorded (model.num_hiddens=500000)
    cannot make the real net take gigabytes before the checkpoint is found not to fit it."""
    from d2lexp.checkpoint import net_weights
    from d2lexp.nets import NetTooLarge, size_budget

    weights = [t for t in net_weights(saved).values() if isinstance(t, torch.Tensor)]
    try:
        with torch.device("meta"), size_budget(sum(t.numel() for t in weights), len(weights)):
            net(cfg, start=False)
    except NetTooLarge:
        raise CheckpointError(
            f"ckpt_path={source} holds the weights of a smaller net than the configured model (its settings, or those "
            "its run recorded, describe a larger one). Resume with the model settings it was trained with."
        ) from None


def checkpoint_to_resume(cfg: DictConfig) -> Path | None:
    """What `ckpt_path` resumes: a file, a run folder's last checkpoint, `last` (the newest run
    with the same settings), or `auto`: this run folder's own last checkpoint if it has one (a
    SLURM job requeued after its time limit reruns its command: it goes on where it stopped),
    else nothing, a fresh start."""
    spec = cfg.get("ckpt_path")
    if not spec:
        return None
    if str(spec) == "auto":
        own = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
        return own if own.is_file() else None
    settings = defining_settings(OmegaConf.to_container(cfg, resolve=False))
    return find_checkpoint(spec, cfg.paths.log_dir, exclude=cfg.paths.output_dir, settings=settings)


def given_net_stats(given_net: nn.Module, example: torch.Tensor) -> ModelStats | None:
    """A caller's own net, measured on a meta copy; None if its forward cannot run there (it makes
    tensors on a device of its own, say)."""
    try:
        return model_stats(lambda: copy.deepcopy(given_net), example)
    except (RuntimeError, NotImplementedError):
        return None


@dataclass
class Run:
    """One run's parts, built and checked."""

    data: DataModule
    net: nn.Module
    task: Task
    trainer: pl.Trainer
    resume_from: str | None  # the checkpoint fitting continues from
    macs_per_example: int | None  # None for a given net that cannot run on the meta device
    tests: bool  # whether a test pass follows fitting


def run(
    cfg: DictConfig,
    given_net: nn.Module | None = None,
    first_callbacks: Sequence[pl.Callback] = (),
    on_epoch: Any = None,
) -> Run:
    """Every part of the run `cfg` describes, seeded. `given_net` replaces the one `cfg.model`
    and `cfg.init` would build (it is trained in place); `on_epoch` hears of each epoch's end
    (the run's record)."""
    from lightning.pytorch.utilities.model_helpers import is_overridden

    check_run_settings(cfg)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    torch.set_float32_matmul_precision(cfg.get("matmul_precision") or "highest")
    data_module = data(cfg)
    found = checkpoint_to_resume(cfg)
    saved = load_checkpoint(found) if found is not None else None  # read once, as bounded data
    if saved is not None and given_net is None:
        check_net_fits_checkpoint(cfg, saved, found)  # before the net is built: its size is the file's
    built_net = net(cfg, start=found is None) if given_net is None else given_net
    built_task = task(cfg, built_net)
    built_task.example_input_array = data_module.example_input()  # the model summary shows shapes and FLOPs
    example = data_module.model_input()
    check_input_fits_net(built_net, example)
    stats = (
        model_stats(lambda: net(cfg, start=False), example)
        if given_net is None
        else given_net_stats(given_net, example)
    )
    if stats is not None:
        check_net_fits_data(stats, data_module)
    built_trainer = trainer(cfg, callbacks(cfg, first_callbacks, on_epoch), loggers(cfg))
    io = built_trainer.strategy.checkpoint_io
    if isinstance(io, RunCheckpointIO):
        io.attach(built_task, built_trainer, data_module)
    if found is not None:
        if not isinstance(io, RunCheckpointIO):
            raise ConfigError(
                "Resuming needs d2lexp's checkpoint reader (it restores state only after checking it), but "
                "trainer.plugins holds another CheckpointIO. Drop it, or start afresh without ckpt_path."
            )
        io.resume_from(
            found, checked_for_resume(saved, built_task, built_trainer, found, data_module)
        )  # state only; never paths
    tests = (
        bool(cfg.get("test"))
        and is_overridden("test_step", built_task)
        and is_overridden("test_dataloader", data_module)
    )
    resume_from = str(found) if found is not None else None
    return Run(data_module, built_net, built_task, built_trainer, resume_from, stats.macs if stats else None, tests)
