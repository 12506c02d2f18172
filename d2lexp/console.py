"""What a run prints: Lightning's messages once, through Hydra's logging (console and run log),
without its ads, the warnings d2lexp's own choices make moot, or the tracebacks of a folder that
stopped taking writes (the run's own paragraph says what happened)."""

from __future__ import annotations

import logging
import threading
import warnings

from d2lexp.run_folder import is_unwritable

log = logging.getLogger("d2lexp")


def quiet_lightning() -> None:
    if logging.getLogger().handlers:  # Hydra configured the root logger: Lightning's own handlers would print twice
        for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
            logger = logging.getLogger(name)
            logger.handlers.clear()
            logger.propagate = True
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
        lambda record: not str(record.msg).startswith("💡 Tip")
    )
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    # d2lexp writes its step-level loss itself (Task.log_step_loss); this warning is about Lightning's.
    warnings.filterwarnings("ignore", message=r"The number of training batches .* logging interval")
    # d2lexp logs torchmetrics results, which are already reduced over all processes.
    warnings.filterwarnings("ignore", message=r"It is recommended to use `self.log\(.*sync_dist=True\)")
    # A data module without validation text returns an empty val loader on purpose.
    warnings.filterwarnings("ignore", message=r"Total length of `list` across ranks is zero")


def quiet_unwritable_folders() -> None:
    """A log file or a background writer (TensorBoard's) on a full or read-only folder prints a
    traceback of its own, then the training thread reports the same error: keep only the latter."""
    logging.raiseExceptions = False
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        if is_unwritable(args.exc_value):
            log.debug("A background thread could not write: %s", args.exc_value)
        else:
            previous(args)

    threading.excepthook = hook
