"""d2lexp: the Dive into Deep Learning experiments as composable Hydra + Lightning runs."""

import time as _time

# Wall-clock time at which the package was first imported: the start of a
# `python -m d2lexp` run, used to report the seconds to the first training step.
IMPORT_TIME = _time.time()

__version__ = "0.1.0"
