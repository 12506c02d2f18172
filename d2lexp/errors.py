"""Errors a user can fix. Their message says what went wrong and what to do; the
command line prints it without a stack trace and exits non-zero."""

# What to do about a checkpoint that cannot be used (the end of each such paragraph).
CHECKPOINT_HOW_TO_FIX = (
    "Point ckpt_path at a .ckpt file that a d2lexp run wrote (e.g. outputs/<date>/<time>/checkpoints/last.ckpt), "
    "a run folder, or `last` (the newest run's last checkpoint); or leave ckpt_path out to start from scratch."
)


class D2lexpError(Exception):
    """Base class: a problem with the user's input, not a bug in d2lexp."""


class ConfigError(D2lexpError):
    """A config value is out of range or inconsistent with another."""


class DataError(D2lexpError):
    """A data set is missing, unreadable or corrupt."""


class CheckpointError(D2lexpError):
    """A checkpoint cannot be read or does not fit the configured model."""


class TrainingDiverged(D2lexpError):
    """The loss stopped being a finite number; the run stopped early (status "diverged")."""


class RunInterrupted(D2lexpError):
    """Ctrl-C or a scheduler's SIGTERM stopped the run (status "interrupted"); it can be resumed.
    `exit_code` is the shell's for the signal: 130 (Ctrl-C) or 143 (SIGTERM)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
