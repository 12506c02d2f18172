"""Writing into run and sweep folders: nothing d2lexp writes follows a link, and nothing is left
half-written.

Run and sweep folders are shared like any files (copied, unpacked from an archive), so a name in
one may be a symbolic link planted to send a write elsewhere (`metrics.json.tmp -> ~/.bashrc`).
Every file d2lexp writes there is therefore created under a fresh temporary name with
`O_CREAT | O_EXCL | O_NOFOLLOW` (a link, or any existing file, under that name is refused, never
followed), flushed to disk, and renamed onto its name inside the same folder: a rename replaces a
link that stands there instead of writing through it, and a reader (or a crash) sees the old file
or the new one, never half of one. Logs are appended with `O_NOFOLLOW`. Folders a run writes
into are made here too, and refused if a link stands where they should be. Files read from
outside (a run's YAML, a data set's files) are read here as well: regular files only, not through
a link, bounded (`read_regular`).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_BINARY = getattr(os, "O_BINARY", 0)


class LinkRefused(OSError):
    """A link stands where d2lexp was to write or make a folder; nothing was written through it."""


class NotRegularFile(OSError):
    """A FIFO, a device or a folder where a file was to be read: reading it could block or never end."""


def read_regular(path: str | Path, limit: int) -> bytes:
    """At most `limit` + 1 bytes of a regular file (more than `limit`: the caller refuses it), opened
    without blocking and not through a link. OSError if it cannot be opened; NotRegularFile for
    anything but a regular file."""
    fd = os.open(path, os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0) | _CLOEXEC)
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFile(f"{path} is not a regular file")
        return file.read(limit + 1)


_TEMPORARY_NAME = re.compile(r"\..+\.[0-9a-f]{12}\.tmp")


def _temporary_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")


def remove_leftover_temporaries(folder: str | Path) -> int:
    """Remove the temporary files that a writer killed mid-write (SIGKILL, a power cut) left inside
    `folder`, however deep, links not followed; the number removed. Only for a folder no live process
    writes into: the caller holds its claim."""
    leftovers = [e for e in _entries(folder) if _TEMPORARY_NAME.fullmatch(e.name) and e.is_file(follow_symlinks=False)]
    for entry in leftovers:
        os.unlink(entry.path)
    return len(leftovers)


def create_new(path: str | Path, mode: int = 0o644) -> int:
    """A file descriptor for a new file at `path`, opened for writing: an existing file or link
    there is refused (FileExistsError), never followed."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC | _BINARY, mode)


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], None], *, durable: bool = True) -> Path:
    """Write the file at `path` with `write(file)`: into a fresh temporary file beside it (created,
    never followed), flushed to disk (`durable`: fsync, so a power cut after the rename cannot leave
    an empty file), then renamed into place. On any failure the temporary file is removed (a full
    disk gets its space back) and the previous file at `path`, if any, is untouched."""
    path = Path(path)
    temporary = _temporary_name(path)
    fd = create_new(temporary)
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            if durable:
                os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    if durable:
        _sync_folder(path.parent)
    return path


def write_bytes(path: str | Path, data: bytes, *, durable: bool = True) -> Path:
    return write_atomic(path, lambda file: file.write(data), durable=durable)


def write_text(path: str | Path, text: str, *, durable: bool = True) -> Path:
    return write_bytes(path, text.encode("utf-8"), durable=durable)


def _sync_folder(folder: Path) -> None:
    """Make a rename inside `folder` durable (where the system allows a folder to be synced)."""
    try:
        fd = os.open(folder, os.O_RDONLY | _CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a folder; the rename itself is still atomic
    finally:
        os.close(fd)


def open_in_place(path: str | Path, flags: int, mode: int = 0o644) -> int:
    """A file descriptor for writing into the file at `path` in place (appending, or rewriting it):
    refused (LinkRefused) if `path` is a symbolic link, not a regular file (a FIFO or a device would
    block or write elsewhere), or a file with another hard link (a write would change that file too)."""
    fd = os.open(path, flags | _NOFOLLOW | _CLOEXEC | getattr(os, "O_NONBLOCK", 0), mode)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
        os.close(fd)
        raise LinkRefused(f"{path} is not a file of its own (a special file, or one hard-linked elsewhere)")
    return fd


def open_append(path: str | Path, mode: int = 0o644) -> IO[str]:
    """A log file opened to append text, created if missing; see `open_in_place` for what is refused."""
    return os.fdopen(open_in_place(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, mode), "a", encoding="utf-8")


def make_folder(path: str | Path) -> Path:
    """Make the folder `path` (and its parents) if missing; refuse a link or a file in its place."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or not path.is_dir():
        raise LinkRefused(f"{path} is a link or not a folder; d2lexp writes only into folders of its own")
    return path


def remove_file(path: str | Path, folder: str | Path) -> bool:
    """Remove `path` if it is a regular file (or a link, which is removed itself) directly inside
    `folder`; anything else, or anything elsewhere, is left alone. True if a file was removed."""
    path, folder = Path(path), Path(folder)
    if path.parent.resolve() != folder.resolve() or path.name in ("", ".", ".."):
        return False
    try:
        info = os.lstat(path)
    except OSError:
        return False
    if not (stat.S_ISREG(info.st_mode) or stat.S_ISLNK(info.st_mode)):
        return False
    os.unlink(path)
    return True


def _entries(folder: str | Path, limit: int = 100_000) -> Iterator[os.DirEntry]:
    """Every entry inside `folder`, however deep, links not followed; OSError past `limit` entries
    (no run folder holds that many)."""
    seen, pending = 0, [Path(folder)]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                seen += 1
                if seen > limit:
                    raise OSError(f"{folder} holds more than {limit:,} entries; it is not a run's folder")
                if entry.is_dir(follow_symlinks=False):
                    pending.append(Path(entry.path))
                yield entry


def links_inside(folder: str | Path) -> Iterator[Path]:
    """Every entry inside `folder`, however deep, through which a write could reach outside it: a
    symbolic link, a special file (FIFO, socket, device), or a file hard-linked from outside (its
    links outnumber those inside)."""
    inodes: dict[tuple[int, int], list[Any]] = {}  # (device, inode) -> [links inside, links in all, a path]
    for entry in _entries(folder):
        if entry.is_symlink():
            yield Path(entry.path)
        elif entry.is_dir(follow_symlinks=False):
            continue
        elif not entry.is_file(follow_symlinks=False):
            yield Path(entry.path)  # a FIFO, socket or device: a write to it goes elsewhere
        else:
            info = entry.stat(follow_symlinks=False)
            if info.st_nlink > 1:  # d2lexp's own hard links (a best and a last checkpoint) lie inside
                links = inodes.setdefault((info.st_dev, info.st_ino), [0, info.st_nlink, Path(entry.path)])
                links[0] += 1
    for inside, total, path in inodes.values():
        if inside < total:
            yield path
