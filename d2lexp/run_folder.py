"""A run's folder belongs to that run alone: claimed when the run starts, refused to any other.

Folders are named by the second (`outputs/2026-11-30/12-00-00`), so two runs started in the
same second would pick the same one. Each run therefore *claims* its folder: it creates a lock
file in it exclusively (`O_EXCL`, atomic on every local file system) and holds an advisory lock
on it for as long as the process lives. A run that finds its folder claimed takes the next free
name (`12-00-00_2`, `12-00-00_3`, ...); an explicitly named folder (`hydra.run.dir=...`) that
holds another run is refused, unless the command resumes that run (`ckpt_path` inside it) and
no live process holds it. The same goes for sweep folders.

Hydra's run and sweep folders come through the `new_run_folder` resolver
(conf/hydra/default.yaml; registered by d2lexp.config), which claims the folder as Hydra resolves it; `RunFolderCheck`
claims explicitly named folders before Hydra writes anything. A folder that cannot be written
(read-only, full, not a folder) ends the command with one paragraph.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from d2lexp.errors import D2lexpError
from d2lexp.files import LinkRefused, create_new, open_in_place, remove_leftover_temporaries

try:  # advisory locks tell a live run's folder from a dead one's; not on Windows
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("d2lexp")

LOCK_FILE = ".run.lock"
# What a folder holds once a run has used it (older runs have no lock file).
RUN_FILES = (LOCK_FILE, ".hydra", "metrics.json", "checkpoints")
# Errors of a folder that cannot take what a run writes, as opposed to bugs.
UNWRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR, errno.ENOENT}
MAX_SUFFIX = 1000

# Folders this process has claimed: their lock files stay open (and locked) until it exits.
_claimed: dict[Path, int] = {}


class OutputError(D2lexpError):
    """The run's folder cannot be written (read-only, full, not a folder), or belongs to another run."""


def unwritable(path: str | Path, error: OSError | str) -> OutputError:
    reason = error if isinstance(error, str) else (error.strerror or str(error))
    return OutputError(
        f"Cannot write to {path}: {reason}. Point the runs elsewhere with paths.log_dir=/some/writable/folder "
        "(or free some space); earlier runs' folders were not touched."
    )


def is_unwritable(error: BaseException) -> bool:
    """Whether `error` is a folder refusing a write (full, read-only, gone), not a bug."""
    return isinstance(error, OSError) and error.errno in UNWRITABLE


def run_stopped_unwritable(folder: Path, error: OSError, recorded: bool) -> OutputError:
    """The paragraph for a run whose own folder stopped taking writes part-way (a full disk, a
    folder made read-only): what failed, what is intact, what to do."""
    name = error.filename.decode() if isinstance(error.filename, bytes) else error.filename
    file = (
        f" ({Path(name).relative_to(folder) if name and Path(name).is_relative_to(folder) else name})" if name else ""
    )
    last = folder / "checkpoints" / "last.ckpt"
    kept = (
        f" Its last complete checkpoint, {last}, is intact: resume from it with ckpt_path={folder} once the folder "
        "takes writes again."
        if last.is_file()
        else ""
    )
    status = "" if recorded else " Its metrics.json could not be updated either (it still says running)."
    return OutputError(
        f"The run stopped: its folder {folder} no longer takes writes{file}: {error.strerror or error}. Free some "
        f"space or make the folder writable, or point new runs elsewhere with paths.log_dir=...{kept}{status} "
        "Earlier runs' folders were not touched."
    )


def holds_a_run(folder: Path) -> bool:
    return any(os.path.lexists(folder / name) for name in RUN_FILES)


# What a run writes in its folder: files, and folders it writes into. Found as anything else in a
# folder a run takes over, they would make its writes fail or go astray.
WRITTEN_FILES = ("metrics.json", "train.log", "curves.png", "augmentation.png", "predictions.png", "confusion.png",
                 "misclassified.png", "eval.json", LOCK_FILE)  # fmt: skip
WRITTEN_FOLDERS = ("checkpoints", "tensorboard", ".hydra")


def check_no_links(folder: Path) -> None:
    """A run folder taken over (to resume the run in it) must hold no links: a link planted in a
    shared folder (`checkpoints -> ~`, `train.log -> ~/.bashrc`, a hard link of ~/.bashrc) would
    send the run's writes, or Lightning's removal of old checkpoints, outside it; and what the run
    writes must be files and folders where it expects them."""
    from d2lexp.files import links_inside

    try:
        found = next(links_inside(folder), None)
    except OSError as e:
        raise OutputError(f"{folder} cannot be resumed in: {e}.") from None
    odd = [folder / n for n in WRITTEN_FILES if os.path.lexists(folder / n) and not (folder / n).is_file()]
    odd += [folder / n for n in WRITTEN_FOLDERS if os.path.lexists(folder / n) and not (folder / n).is_dir()]
    if odd and found is None:
        raise OutputError(
            f"{folder} cannot be resumed in: {odd[0]} is not what a run writes there (a file where a folder belongs, "
            "or a folder where a file does). Resume into a new folder instead: ckpt_path=<the run> "
            "hydra.run.dir=<a new folder>."
        )
    if found is not None:
        raise OutputError(
            f"{folder} cannot be resumed in: it holds a link or special file, {found}, and a run writes only into "
            "folders of its own (a link there would send its writes elsewhere). Resume into a new folder instead: "
            f"ckpt_path={folder} hydra.run.dir=<a new folder>, or remove the link."
        )


def _lock(fd: int) -> bool:
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def _try_claim(folder: Path, resuming: bool) -> bool:
    """Claim `folder` for this process; False if another run has it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if holds_a_run(folder):
            if not resuming:
                return False
            check_no_links(folder)
        if resuming:  # the run's own lock file, rewritten in place: a file of its own, never a link
            fd = open_in_place(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT)
        else:
            fd = create_new(folder / LOCK_FILE)
    except FileExistsError:
        return False  # another process created the lock file first
    except LinkRefused as e:
        raise OutputError(f"{folder} cannot be resumed in: {e}. Resume into a new folder instead.") from None
    except OSError as e:
        raise unwritable(e.filename or folder, e) from None
    if not _lock(fd):
        os.close(fd)
        return False  # a live process holds it
    owner = {"pid": os.getpid(), "host": socket.gethostname(), "claimed_at": time.time(), "argv": sys.argv}
    try:
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(owner) + "\n").encode())
        if resuming:  # its last process is gone: what it was writing when killed is no file of the run's
            remove_leftover_temporaries(folder)
    except OSError as e:
        os.close(fd)
        raise unwritable(folder, e) from None
    _claimed[folder.absolute()] = fd
    return True


def claim(folder: str | Path, *, suffix_on_collision: bool, resuming: bool = False) -> Path:
    """Claim `folder` (created if needed) for this process and return it.

    Taken by another run: with `suffix_on_collision` the first free `<folder>_2`, `_3`, ... is
    claimed instead; otherwise OutputError. `resuming`: the command continues the run that
    wrote `folder`, which may then be taken over if no live process holds it.
    """
    folder = Path(folder).expanduser()
    if folder.is_symlink():  # a link's target is another folder, whoever named it: it is not claimed through the link
        raise OutputError(
            f"{folder} is a link to {os.path.realpath(folder)}: a run writes only into the folder it names. Name the "
            "folder itself, or a new one."
        )
    names = [folder]
    if suffix_on_collision:
        names = itertools.chain(names, (folder.with_name(f"{folder.name}_{i}") for i in range(2, MAX_SUFFIX)))
    for candidate in names:
        if candidate.absolute() in _claimed or _try_claim(candidate, resuming):
            return candidate
        if not suffix_on_collision:
            live = " that is still running" if resuming else ""
            raise OutputError(
                f"{candidate} is the folder of another run{live}: a run never writes into another's folder. "
                "Leave hydra.run.dir (hydra.sweep.dir) out and each run gets a folder of its own, name a new "
                f"folder, or resume that run with ckpt_path={candidate}."
            )
    raise OutputError(f"{folder}: {MAX_SUFFIX} runs already started under this name; use another paths.log_dir.")


def release(folder: str | Path) -> None:
    """Give up this process's claim on `folder` (its lock file stays, unlocked: a later command may
    resume the run in it)."""
    fd = _claimed.pop(Path(folder).absolute(), None)
    if fd is not None:
        os.close(fd)


@contextlib.contextmanager
def run_in_own_folder(output_dir: str | Path, ckpt_path: Any, in_sweep: bool, hydra_dir: str | None) -> Iterator[Path]:
    """The run's folder (`paths.output_dir`), claimed for the run while it lasts.

    The folder Hydra made for this run was claimed as Hydra named it (a run's `hydra.run.dir`; a
    sweep job's folder lies in the sweep's claimed folder, and is locked here against a second
    process in it). Any other folder (`paths.output_dir` set to one of its own, or a run built
    with the compose API) is claimed here like an explicit `hydra.run.dir`: refused if it holds
    another run, unless the run resumes that one (`ckpt_path` inside it) and no process holds it.
    """
    folder = Path(output_dir).absolute()
    if _joins_a_distributed_run() or folder in _claimed:
        yield folder
        return
    own_hydra_folder = hydra_dir is not None and Path(hydra_dir).absolute() == folder
    resuming = _resumes_folder(ckpt_path, folder) and holds_a_run(folder)
    claim(folder, suffix_on_collision=False, resuming=resuming or (own_hydra_folder and in_sweep))
    try:
        yield folder
    finally:
        release(folder)


def new_run_folder(path: str) -> str:
    """The `new_run_folder` resolver: `path`, or the first free `path_N`, claimed for this run.
    A folder that cannot be claimed (read-only, full) is returned as it is: `RunFolderCheck`
    claims it again and says why it cannot, in one paragraph (an error raised inside a resolver
    reaches the user wrapped in OmegaConf's)."""
    try:
        return str(claim(path, suffix_on_collision=True))
    except OutputError:
        return path


def _resumes(config: DictConfig, folder: Path) -> bool:
    """Whether the command resumes the run of `folder`: its ckpt_path is inside it, or is `auto`
    and the folder has a last checkpoint (a requeued job rerunning its own command)."""
    return _resumes_folder(config.get("ckpt_path"), folder)


def _resumes_folder(ckpt: Any, folder: Path) -> bool:
    if str(ckpt) == "auto":
        return (folder / "checkpoints" / "last.ckpt").is_file()
    if not ckpt or str(ckpt) == "last":
        return False
    ckpt_path, folder = Path(str(ckpt)).expanduser().resolve(), folder.resolve()
    return ckpt_path == folder or folder in ckpt_path.parents


def _joins_a_distributed_run() -> bool:
    """Whether this process is one of a distributed run's other processes (DDP's rank 1, ...),
    which Lightning, torchrun or SLURM start into the folder the first process claimed."""
    for variable in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"):
        value = os.environ.get(variable, "0")
        if value.isdigit() and int(value) > 0:
            return True
    return False


class RunFolderCheck(Callback):
    """Hydra callback: before a run or a sweep starts, its folder is claimed for it (see the
    module's docstring), or the command ends with one paragraph and exit 1, before Hydra or the
    run writes anything. A distributed run's other processes join the folder its first claimed."""

    def _claim(self, config: DictConfig, key: str) -> tuple[Path, bool]:
        if _joins_a_distributed_run():
            return Path(str(OmegaConf.select(config, key))), False
        try:
            folder = Path(str(OmegaConf.select(config, key)))  # an auto-named folder is claimed as it resolves
            # An explicit folder of an earlier run may be taken over by a command that resumes that run.
            resuming = key == "hydra.run.dir" and _resumes(config, folder) and holds_a_run(folder)
            claim(folder, suffix_on_collision=False, resuming=resuming)
            return folder, resuming
        except OutputError as e:
            log.error("%s", e)
            sys.exit(1)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        folder, resuming = self._claim(config, "hydra.run.dir")
        if resuming and config.hydra.output_subdir is not None:
            # The run's own .hydra/ keeps the settings it started with; this command's go beside them.
            subdir = Path(str(config.hydra.output_subdir))
            number = next(i for i in itertools.count(1) if not (folder / subdir / f"resume_{i}").exists())
            with open_dict(config.hydra):
                config.hydra.output_subdir = str(subdir / f"resume_{number}")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # A sweep starts in a folder of its own: an explicit one must be new or empty (a folder of an
        # earlier sweep, or a shared one, could hold job folders with links Hydra would write through).
        folder = Path(str(OmegaConf.select(config, "hydra.sweep.dir")))
        if folder.absolute() not in _claimed and folder.is_dir() and any(folder.iterdir()):
            log.error(
                "%s already holds files: a sweep starts in a folder of its own. Leave hydra.sweep.dir out and each "
                "sweep gets a new folder, or name a new one.", folder,
            )  # fmt: skip
            sys.exit(1)
        self._claim(config, "hydra.sweep.dir")
