"""The command line, as a user types it: `python -m d2lexp ...` in a folder of the test's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_cli(
    *args: str, cwd: Path, data_dir: Path | None = None, timeout: int = 300, module: str = "d2lexp"
) -> subprocess.CompletedProcess:
    """Run `python -m <module> <args>` in `cwd` (with the test data, if given), as a user would."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if data_dir is not None:
        env["D2LEXP_DATA"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
