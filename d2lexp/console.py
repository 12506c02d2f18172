"""What a run prints: Lightning's messages once, through Hydra's logging (console and run log),
without its ads, the warnings d2lexp's own choices make moot, or the tracebacks of a folder that
stopped taking writes (the run's own paragraph says what happened). Text that comes from files
(names, errors, generated text) is shown, never obeyed: control characters are escaped."""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
import warnings
from typing import Any

from d2lexp.run_folder import is_unwritable

log = logging.getLogger("d2lexp")

# Characters a terminal or a renderer acts on, or hides, instead of showing: by Unicode category,
# controls (C0, C1: escape sequences that clear the screen, set the clipboard or the title), format
# characters (bidirectional overrides that reorder what is shown, zero-width and tag characters),
# line and paragraph separators, surrogates, private-use and unassigned code points.
_HIDDEN_CATEGORIES = {"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"}
_NOT_PLAIN_ASCII = re.compile(r"[^\x20-\x7e]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# A few characters of other categories that render as nothing (a Hangul filler, a combining grapheme
# joiner, a musical-symbol format), shown escaped too.
_INVISIBLE = {"\u034f", "\u115f", "\u1160", "\u3164", "\uffa0", "\u180e"}


def _escape(char: str) -> str:
    code = ord(char)
    return _NAMED.get(char) or (
        f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
    )


def _shown(char: str) -> str:
    hidden = unicodedata.category(char) in _HIDDEN_CATEGORIES or char in _INVISIBLE
    return _escape(char) if hidden else char


def printable(text: Any, keep_newlines: bool = False) -> str:
    """`text` with every control or invisible character shown as an escape (`\\x1b`, `\\n`,
    `\\u202e`): a name or a string read from a file cannot move the cursor, clear the screen,
    reorder or hide what is shown. `keep_newlines`: line breaks (and tabs) are kept as they are."""
    text = str(text)

    def shown(match: re.Match[str]) -> str:
        char = match.group()
        return char if keep_newlines and char in "\n\t" else _shown(char)

    return _NOT_PLAIN_ASCII.sub(shown, text)


class EscapeArguments(logging.Filter):
    """Escapes the arguments of every log record (the file names, errors and texts a message is
    made from), keeping the message's own line breaks."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(arg if isinstance(arg, (int, float)) else printable(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: printable(v) for k, v in record.args.items()}
        return True


class EscapingFormatter(logging.Formatter):
    """Every handler's formatter: the whole formatted line has its control and invisible characters
    escaped, also where a library formatted a path or a name into its message itself (Lightning's
    "Restoring states from the checkpoint path at ..."). Line breaks are kept: tracebacks and tables
    have them; a break inside a name is escaped already by `EscapeArguments`."""

    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record), keep_newlines=True)


class BelowWarnings(logging.Filter):
    """Passes the records under WARNING: progress goes to stdout, warnings and errors to stderr."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.WARNING


class RunLogFile(logging.FileHandler):
    """The run's log file (train.log), appended to and never opened through a link (d2lexp.files)."""

    def _open(self):  # noqa: ANN202  (logging.FileHandler's own hook)
        from d2lexp.files import open_append

        return open_append(self.baseFilename)


def escape_logged_text() -> None:
    """Every handler of the root logger (the console and the run's log) escapes control characters
    in what records are made from (idempotent: call it after Hydra has set up logging)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, EscapeArguments) for f in handler.filters):
            handler.addFilter(EscapeArguments())


def quiet_lightning() -> None:
    escape_logged_text()
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
    # Slurm's tools installed on a machine whose run was not started by srun: nothing to say.
    warnings.filterwarnings("ignore", message=r"The `srun` command is available on your system but is not used")
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
