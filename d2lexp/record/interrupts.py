"""The signals that stop a run, and what each is reported as.

Ctrl-C (SIGINT), a scheduler's or `kill`'s SIGTERM and a closed terminal's SIGHUP all end a run
as `interrupted`, and the message and the exit code say which it was (130, 143, 129): Lightning
turns Ctrl-C into an exit of its own and SIGTERM into its SIGTERMException, so the signal itself
is remembered here as it arrives.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupts:
    """While `watching()`: remembers the signal that stops the run. Ctrl-C stops at once, as
    Python's own handler does; SIGTERM inside `fitting()` is Lightning's to handle (it stops at a
    step's end and saves), and outside it stops the run where it is."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._fitting = False

    @contextmanager
    def watching(self) -> Iterator[None]:
        watch = threading.current_thread() is threading.main_thread()  # handlers belong to the main thread
        previous = {s: signal.signal(s, self._on_signal) for s in _HANDLED} if watch else {}
        try:
            yield
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    @contextmanager
    def fitting(self) -> Iterator[None]:
        """Around `Trainer.fit`, whose own SIGTERM handling stops at a step's end and saves."""
        self._fitting = True
        try:
            yield
        finally:
            self._fitting = False

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.received = signum
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        if not self._fitting:  # outside fit (building, testing, recording): stop here, and say so
            raise SystemExit(128 + signum)

    def how_it_stopped(self, error: BaseException) -> tuple[str, int] | None:
        """(what stopped the run, the shell's exit code) if `error` is an interrupt; None for a failure."""
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        if self.received is not None and isinstance(error, (KeyboardInterrupt, SystemExit)):
            name = signal.Signals(self.received).name
            return (
                "Ctrl-C" if self.received == signal.SIGINT else f"stopped by a signal ({name})"
            ), 128 + self.received
        if isinstance(error, KeyboardInterrupt):
            return "Ctrl-C", 128 + signal.SIGINT
        if isinstance(error, SIGTERMException):  # Lightning's: a SIGTERM its own handler saw
            return "stopped by a signal (SIGTERM)", 128 + signal.SIGTERM
        if isinstance(error, SystemExit):
            code = error.code if isinstance(error.code, int) else 1
            return f"stopped (exit code {code})", code
        return None
