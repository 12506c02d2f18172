"""Lightning's ModelCheckpoint, cheaper on every training step, atomic on disk, writing a state
once when several checkpoint callbacks save it, and writing on a background thread while
training goes on."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from functools import cached_property
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.callbacks import ModelCheckpoint as LightningModelCheckpoint
from lightning_utilities.core.apply_func import apply_to_collection

from d2lexp.checkpoint import save
from d2lexp.resume import RunCheckpointIO

log = logging.getLogger(__name__)

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
        try:
            os.link(source, temporary)
        except OSError:
            shutil.copyfile(source, temporary)
        os.replace(temporary, target)
    except BaseException:
        if os.path.lexists(temporary):  # a copy cut short by a full disk: give its space back
            os.remove(temporary)
        raise


def _host_snapshot(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint with each tensor copied to host memory, once: tensors that are one
    (a tied weight under two names) stay one in the copy, as torch.save keeps them in a file."""
    copies: dict[tuple[Any, ...], torch.Tensor] = {}

    def copy(tensor: torch.Tensor) -> torch.Tensor:
        storage = (tensor.device, tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        key = (*storage, tensor.shape, tensor.stride(), tensor.dtype)
        if key not in copies:
            copies[key] = tensor.detach().to("cpu", copy=True)
        return copies[key]

    return apply_to_collection(checkpoint, torch.Tensor, copy)


class BackgroundCheckpointIO(RunCheckpointIO):
    """Lightning's checkpoint writer (`torch.save`), atomic, and on a background thread for the
    saves made inside `writing_in_background()` (d2lexp's ModelCheckpoint makes all its saves so).

    Writing a large net's checkpoint takes a good part of a second, once an epoch, while the GPU
    would wait. In the background the training thread only copies the state to host memory and
    goes on; the copy is what gets written, so
    the file holds the state of the moment it was saved. One thread does every write, removal
    and link in the order they were asked for, so the files end as a synchronous writer would
    leave them. At most one save waits in memory: a save waits for the one before. A failure
    is raised by the next checkpoint operation or at the end of the stage, and no later
    operation runs after it: no older checkpoint is removed in favour of one never written.
    Anything that reads the files mid-run calls `wait()` first; the stage's end waits too.
    """

    def __init__(self, folder: str | os.PathLike[str] | None = None) -> None:
        super().__init__(folder)
        self._executor: ThreadPoolExecutor | None = None
        self._last_save: Future[None] | None = None
        self._error: BaseException | None = None  # the failure not yet raised
        self._failed = False  # set by a failure: no operation runs after it, until the stage ends
        self._background = False

    @contextmanager
    def writing_in_background(self) -> Iterator[None]:
        self._background = True
        try:
            yield
        finally:
            self._background = False

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:  # as TorchCheckpointIO does
            raise TypeError(f"{type(self).__name__} does not take storage_options, got {storage_options!r}.")
        local = _is_local_file_protocol(str(path))
        if not (self._background and local):
            self.wait()  # after the operations asked for before it
            if local:
                self._write(checkpoint, str(path))
            else:  # object stores: Lightning's own writing
                TorchCheckpointIO.save_checkpoint(self, checkpoint, path)
            return
        snapshot = _host_snapshot(checkpoint)  # before training changes it
        if self._last_save is not None:
            self._last_save.result()  # one save in memory at a time
        self._last_save = self._submit(self._write, snapshot, str(path))

    @staticmethod
    def _write(checkpoint: dict[str, Any], path: str) -> None:
        save(checkpoint, path)  # atomic; a full disk raises its OSError and leaves no partial file

    def remove_checkpoint(self, path: Any) -> None:
        self._submit(super().remove_checkpoint, path)

    def link_checkpoint(self, source: str, target: str) -> None:
        """Make `target` a hard link of `source` (`_replace_with_link`), once `source` is written."""
        self._submit(_replace_with_link, source, target)

    def _submit(self, operation: Callable[..., None], *args: Any) -> Future[None]:
        self._raise_failure()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="d2lexp-checkpoint")

        def run() -> None:
            if self._failed:  # a failed write stops every later operation
                return
            try:
                operation(*args)
            except BaseException as e:
                self._error, self._failed = e, True

        return self._executor.submit(run)

    def _raise_failure(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def wait(self) -> None:
        """Return once every operation asked for so far is done; raise the first that failed."""
        if self._executor is not None:
            self._executor.submit(lambda: None).result()
        self._raise_failure()

    def teardown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor, self._last_save = None, None
        self._failed = False  # nothing is queued any more: the next stage may write again
        if self._error is not None and sys.exc_info()[1] is not None:
            # The stage is failing already (Lightning tears down while handling its exception):
            # say what the writer hit without hiding the error that stopped the stage.
            log.error("A checkpoint could not be written: %s", self._error)
            self._error = None
        self._raise_failure()


class ModelCheckpoint(LightningModelCheckpoint):
    """`lightning.pytorch.callbacks.ModelCheckpoint` with four changes; the files are the ones
    Lightning writes and load anywhere Lightning's do.

    - **One write per state.** d2lexp's defaults keep the best epoch and `last.ckpt`; when an
      epoch improves, both callbacks save the same state in the same hook call. The second
      makes its file a hard link of the first instead of serialising the model again. Only the checkpoint
      callbacks' own bookkeeping differs between the two files, which resuming does not need.
    - **Atomic files.** A checkpoint is written beside its name and renamed into place, so a
      run killed while saving leaves the previous `last.ckpt` whole, and a file written over
      another that shares its data (a hard link) never changes the other's.
    - **Written in the background** where the trainer's checkpoint writer is a
      `BackgroundCheckpointIO` (d2lexp's runs): training goes on while the file is written.
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
        io = trainer.strategy.checkpoint_io
        background = io if isinstance(io, BackgroundCheckpointIO) else None
        point = _save_point(trainer, self.save_weights_only)
        written = _LAST_WRITTEN.get(trainer)
        # Every process takes the same branch (the write below is collective): the file test is
        # the first process's, shared with the others, as Lightning's own `file_exists` does. A
        # background writer writes the file before it links to it, or links nothing if it failed.
        same_state = written is not None and written[0] == point and written[1] != filepath
        if same_state and trainer.strategy.reduce_boolean_decision(
            trainer.is_global_zero and (background is not None or os.path.isfile(written[1])), all=False
        ):
            if trainer.is_global_zero:
                if background is not None:
                    background.link_checkpoint(written[1], filepath)
                else:
                    _replace_with_link(written[1], filepath)
        elif background is not None:
            with background.writing_in_background():  # atomic there: written beside its name, renamed
                trainer.save_checkpoint(filepath, self.save_weights_only)
            _LAST_WRITTEN[trainer] = (point, filepath)
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
