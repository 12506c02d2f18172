"""Machinery whose only purpose is speed. Each feature is one switch of the `speed` config group
(conf/speed/default.yaml), applied where a run is built (d2lexp/build.py); switched off, a run
trains the same net the same way, only slower. What each was measured to save: docs/performance.md.

| switch                   | what it does                                                  | module           |
|--------------------------|---------------------------------------------------------------|------------------|
| `compile`                | torch.compile the net for its full training batches          | compile.py       |
| `channels_last`          | conv nets and their inputs in channels-last memory format     | memory_format.py |
| `autotune_main_shapes`   | cuDNN autotuning kept to the shapes of full batches           | autotune.py      |
| `background_checkpoints` | checkpoints written on a background thread                    | checkpoints.py   |
| `lean_profiler`          | Lightning's no-op profiler without its cost per hook          | profiler.py      |

Without a switch, since it changes nothing but a cost: `Task`'s hook bookkeeping (hooks.py).
`speed` is the composed config group: its switches and their defaults are `Speed` (switches.py). d2lexp's ModelCheckpoint
(checkpoints.py, named in conf/callbacks) also writes a state once when
two checkpoint callbacks save it, and formats its state key once.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl

from d2lexp.resume import RunCheckpointIO
from d2lexp.speed.autotune import AutotuneMainShapes
from d2lexp.speed.checkpoints import BackgroundCheckpointIO
from d2lexp.speed.compile import CompileNet, compile_options
from d2lexp.speed.memory_format import use_channels_last
from d2lexp.speed.profiler import NoProfiler
from d2lexp.speed.switches import Speed

__all__ = ["Speed", "callbacks", "checkpoint_io", "prepare_task", "trainer_options"]


def prepare_task(task: pl.LightningModule, speed: Any) -> None:
    """Make the task's net faster to call: channels-last memory format (conv nets), and a compiled
    version for full training batches once fitting starts (`callbacks`)."""
    use_channels_last(task, speed.channels_last)


def callbacks(speed: Any, trainer: Any) -> list[pl.Callback]:
    """Callbacks of the switched-on features that can act on this run's trainer (each callback
    costs Lightning a few hook calls every step); they go after every other callback (the net is
    compiled after the model summary has run it)."""
    extra: list[pl.Callback] = []
    options = compile_options(speed.compile)
    if options is not None:
        extra.append(CompileNet(options))
    if speed.autotune_main_shapes and autotunes(trainer):
        extra.append(AutotuneMainShapes())
    return extra


def autotunes(trainer: Any) -> bool:
    """Whether cuDNN autotuning can be on in this run: `trainer.benchmark`, not deterministic,
    on a CUDA GPU."""
    import torch

    accelerator = str(trainer.get("accelerator", "auto"))
    cuda = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    return bool(trainer.get("benchmark")) and not trainer.get("deterministic") and cuda


def trainer_options(speed: Any, trainer: Any) -> dict[str, Any]:
    """The Trainer's arguments the switched-on features set, given its configured ones."""
    options: dict[str, Any] = {}
    if speed.lean_profiler and trainer.get("profiler") is None and not trainer.get("barebones"):
        options["profiler"] = NoProfiler()
    return options


def checkpoint_io(speed: Any, folder: str) -> RunCheckpointIO:
    """How the run in `folder` reads and writes checkpoints (d2lexp.resume.RunCheckpointIO: checked
    loads, atomic writes, removals only inside the run's folder), in the background if switched on."""
    return BackgroundCheckpointIO(folder) if speed.background_checkpoints else RunCheckpointIO(folder)
