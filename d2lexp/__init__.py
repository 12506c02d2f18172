"""d2lexp: the Dive into Deep Learning experiments as composable Hydra + Lightning runs.

From Python (a notebook): `from d2lexp import compose, run` (d2lexp.api). Importing d2lexp imports
nothing else: torch and Lightning load when a run needs them.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# What `from d2lexp import ...` offers, by the module that defines it: imported on first use.
_API = {"compose": "d2lexp.api", "run": "d2lexp.api", "compare": "d2lexp.api", "RunResult": "d2lexp.api"}
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'd2lexp' has no attribute {name!r}")
