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
