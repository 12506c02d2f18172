"""d2lexp: the Dive into Deep Learning experiments as composable Hydra + Lightning runs."""

import time as _time

# Wall-clock time at which the package was first imported; the fallback for
# `process_start_time` where /proc is not available.
IMPORT_TIME = _time.time()

__version__ = "0.1.0"


def process_start_time() -> float:
    """When this process started (Unix time): the start of a `python -m d2lexp` command."""
    try:
        import os

        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22: start, in ticks since boot
        age = _time.clock_gettime(_time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")
        return _time.time() - age
    except (OSError, ValueError, IndexError, AttributeError):
        return IMPORT_TIME


_run_start: float | None = None


def begin_run() -> None:
    """Start the clock of a run's start-up (`train` calls it first): the first run of a process
    counts from the process's start (imports included), each later one (a sweep's next job,
    a benchmark's next preset) from its own start."""
    global _run_start
    _run_start = process_start_time() if _run_start is None else _time.time()


def run_start_time() -> float:
    """Where the current run's start-up began (see `begin_run`)."""
    return process_start_time() if _run_start is None else _run_start
