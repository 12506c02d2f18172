"""The output folders: checked before a run starts, and what to say when they fail later."""

from __future__ import annotations

import errno
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from d2lexp.errors import D2lexpError

log = logging.getLogger("d2lexp")

# Errors of a folder that cannot take what a run writes, as opposed to bugs.
UNWRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR, errno.ENOENT}


class OutputError(D2lexpError):
    """The run's folder cannot be written (read-only, full, not a folder)."""


def unwritable(path: str | Path, error: OSError) -> OutputError:
    reason = error.strerror or str(error)
    return OutputError(
        f"Cannot write to {path}: {reason}. Point the runs elsewhere with paths.log_dir=/some/writable/folder "
        "(or free some space); earlier runs' folders were not touched."
    )


def ensure_writable(folder: str | Path) -> None:
    """Create `folder` and write a probe file in it, or raise OutputError."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-probe-"):
            pass
    except OSError as e:
        raise unwritable(folder, e) from None


class OutputFolderCheck(Callback):
    """Hydra callback: before a run or a sweep starts, its folder must be writable; if not,
    one paragraph and exit 1, before Hydra or the run writes anything."""

    def _check(self, folder: str) -> None:
        try:
            ensure_writable(folder)
        except OutputError as e:
            log.error("%s", e)
            sys.exit(1)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config.hydra.sweep.dir)
