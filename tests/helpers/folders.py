"""Digests of folders that a test must leave as they were."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path


def digest(folder: Path) -> dict[Path, str]:
    """Every regular file under `folder` and its content's hash."""
    return {
        p.relative_to(folder): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def tree_digest(folder: Path) -> dict[str, tuple[str, str]]:
    """Every entry under `folder`, links not followed: its kind and its content's hash or target."""
    found = {}
    for path in sorted(folder.rglob("*")):
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode):
            found[str(path.relative_to(folder))] = ("link", os.readlink(path))
        elif stat.S_ISREG(info.st_mode):
            found[str(path.relative_to(folder))] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
        else:
            found[str(path.relative_to(folder))] = ("folder", oct(info.st_mode))
    return found
