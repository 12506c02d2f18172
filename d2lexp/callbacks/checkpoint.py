"""Lightning's ModelCheckpoint, cheaper on every training step, atomic on disk, and writing a
state once when several checkpoint callbacks save it."""

from __future__ import annotations

import os
import shutil
import weakref
from functools import cached_property
from typing import Any

import lightning.pytorch as pl
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.callbacks import ModelCheckpoint as LightningModelCheckpoint

# The file each trainer's d2lexp checkpoint callbacks wrote last, with the point of training it holds.
_LAST_WRITTEN: weakref.WeakKeyDictionary[pl.Trainer, tuple[tuple[Any, ...], str]] = weakref.WeakKeyDictionary()


def _save_point(trainer: pl.Trainer, weights_only: bool) -> tuple[Any, ...]:
    """What a checkpoint written now holds, up to the checkpoint callbacks' own bookkeeping:
    two saves with the same point (the same hook call of the same step) write the same state."""
    fx_name = getattr(trainer.lightning_module, "_current_fx_name", None)
    batches = trainer.fit_loop.epoch_loop.batch_progress.total.completed
    return trainer.global_step, trainer.current_epoch, batches, fx_name, weights_only


def _replace_with_link(source: str, target: str) -> None:
    """Make `target` a hard link of `source` (a copy where the file system has no hard links),
    atomically: `target` is whole, old or new, at every moment."""
    temporary = f"{target}.tmp"
    if os.path.lexists(temporary):
        os.remove(temporary)
    try:
        os.link(source, temporary)
    except OSError:
        shutil.copyfile(source, temporary)
    os.replace(temporary, target)


class ModelCheckpoint(LightningModelCheckpoint):
    """`lightning.pytorch.callbacks.ModelCheckpoint` with three changes; the files are the ones
    Lightning writes and load anywhere Lightning's do.

    - **One write per state.** d2lexp's defaults keep the best epoch and `last.ckpt`; when an
      epoch improves, both callbacks save the same state in the same hook call. The second
      makes its file a hard link of the first instead of serialising the model again (for
      AlexNet's 187 MB, half a second per epoch on a 2-core machine). Only the checkpoint
      callbacks' own bookkeeping differs between the two files, which resuming does not need.
    - **Atomic files.** A checkpoint is written beside its name and renamed into place, so a
      run killed while saving leaves the previous `last.ckpt` whole, and a file written over
      another that shares its data (a hard link) never changes the other's.
    - **`state_key` formatted once.** Lightning formats every callback's `state_key` on every
      hook call, as a label for its profiler; ModelCheckpoint's is the repr of its settings,
      which with three checkpoint callbacks costs several percent of a short training step.
      The settings are fixed at construction and the key is the one Lightning writes.
    """

    @cached_property
    def state_key(self) -> str:  # type: ignore[override]
        return super().state_key

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        if not _is_local_file_protocol(filepath):  # object stores: Lightning's own writing
            return super()._save_checkpoint(trainer, filepath)
        point = _save_point(trainer, self.save_weights_only)
        written = _LAST_WRITTEN.get(trainer)
        # Every process takes the same branch (the write below is collective): the file test is
        # the first process's, shared with the others, as Lightning's own `file_exists` does.
        same_state = written is not None and written[0] == point and written[1] != filepath
        if same_state and trainer.strategy.reduce_boolean_decision(
            trainer.is_global_zero and os.path.isfile(written[1]), all=False
        ):
            if trainer.is_global_zero:
                _replace_with_link(written[1], filepath)
        else:
            temporary = f"{filepath}.tmp"
            trainer.save_checkpoint(temporary, self.save_weights_only)  # every process: it may gather state
            if trainer.is_global_zero:
                if os.path.isdir(temporary) and os.path.isdir(filepath):  # a sharded checkpoint is a folder
                    shutil.rmtree(filepath)
                os.replace(temporary, filepath)
            _LAST_WRITTEN[trainer] = (point, filepath)
        # Lightning's own bookkeeping after a save (ModelCheckpoint._save_checkpoint).
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(weakref.proxy(self))
