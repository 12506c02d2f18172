"""What every d2lexp command shares, so that they behave alike: `--help` in d2lexp's own words
(purpose, options, examples), `--version`, a command line bounded before anything reads it, and
how a command ends: a refused input is one paragraph on stderr and exit code 1; Ctrl-C and SIGTERM
end it with 130 and 143. `python -m d2lexp.<tool>` and the console script `d2lexp-<tool>` are the
same function (each tool's `main`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from d2lexp.console import printable
from d2lexp.errors import CHECKPOINT_HOW_TO_FIX, D2lexpError
from d2lexp.overrides import command_line_problem


@dataclass(frozen=True)
class Command:
    """A d2lexp command: its names, what it is for, its options and examples (for `--help`)."""

    script: str  # the console script, d2lexp-eval
    module: str  # python -m d2lexp.eval
    purpose: str
    usage: str
    options: tuple[tuple[str, str], ...] = ()
    examples: tuple[tuple[str, str], ...] = ()
    more: str = ""  # the rest of the help (d2lexp's own: its groups and presets)

    def help(self) -> str:
        width = max((len(o) for o, _ in self.options), default=0)
        lines = [f"{self.script} (python -m {self.module}): {self.purpose}", "", f"Usage: {self.usage}"]
        if self.options:
            lines += ["", "Options:", *(f"  {o:<{width}}  {text}" for o, text in self.options)]
        if self.examples:
            width = max(len(e) for e, _ in self.examples)
            lines += ["", "Examples:", *(f"  {e:<{width}}  {text}" for e, text in self.examples)]
        if self.more:
            lines += ["", self.more]
        lines += [
            "",
            "Every command: --help, --version. Documentation: README.md and docs/ (https://d2l.ai for the book).",
        ]
        return "\n".join(lines)


def version() -> str:
    """'d2lexp 0.1.0 (torch 2.14.1, lightning 2.6.6, hydra-core 1.3.8, Python 3.11.7)', read from the
    installed distributions' metadata: nothing is imported."""
    import platform
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    from d2lexp import __version__

    def of(name: str) -> str:
        try:
            return installed(name)
        except PackageNotFoundError:
            return "not installed"

    parts = ", ".join(f"{name} {of(name)}" for name in ("torch", "lightning", "hydra-core"))
    return f"d2lexp {__version__} ({parts}, Python {platform.python_version()})"


def fail(message: object, code: int = 1) -> NoReturn:
    """End the command: `message` as one paragraph on stderr (escaped: it may quote a file), and `code`."""
    print(printable(message, keep_newlines=True), file=sys.stderr)
    sys.exit(code)


def start(command: Command, argv: list[str]) -> list[str]:
    """The command line `argv`, once the common flags are answered (`--help`, `--version`: printed,
    exit 0) and its size checked (one paragraph, exit 1)."""
    if "--help" in argv or "-h" in argv:
        print(command.help())
        sys.exit(0)
    if "--version" in argv:
        print(version())
        sys.exit(0)
    problem = command_line_problem(argv)
    if problem:
        fail(problem)
    return argv


def refuse_unknown_keys(config_name: str, args: list[str]) -> None:
    """A misspelt or unknown key of the command line `args` (for the config `config_name`) ends the
    command in one paragraph naming the nearest key, before Hydra composes anything."""
    from d2lexp.overrides import unknown_key_message

    message = unknown_key_message(config_name, args)
    if message:
        fail(message)


def checkpoint_tool_line(command: Command, config_name: str, which: str) -> list[str]:
    """The command line of a tool that reads a trained run (eval, export): its common flags answered,
    the run's own recorded settings under the command's, and a missing checkpoint or an unknown
    setting refused in one paragraph before Hydra makes the tool's folder."""
    from d2lexp.overrides import command_line_values, with_recorded_settings

    args = start(command, sys.argv[1:])
    spec = command_line_values(args).get("ckpt_path")
    if not spec or spec == "null":
        fail(which)
    if spec != "last" and not Path(spec).expanduser().exists():  # said without loading torch
        fail(f"ckpt_path={Path(spec).expanduser()} does not exist or is not a file. {CHECKPOINT_HOW_TO_FIX}")
    try:
        args = with_recorded_settings(args, own_folder=False)
        if spec != "last":
            from d2lexp.checkpoint import find_checkpoint, load_checkpoint

            path = find_checkpoint(spec, ".")
            if not path.is_file():
                load_checkpoint(path)  # says so, in one paragraph
    except D2lexpError as e:
        fail(e)
    refuse_unknown_keys(config_name, args)
    return args


def guarded(body: Callable[[], None]) -> None:
    """Run a command's `body`: a d2lexp error ends it in one paragraph and exit 1; Ctrl-C or a SIGTERM
    ends it with 130 or 143, saying which."""
    from d2lexp.record.interrupts import Interrupts

    interrupts = Interrupts()
    try:
        with interrupts.watching():
            body()
    except D2lexpError as e:
        fail(e)
    except (KeyboardInterrupt, SystemExit) as e:
        stopped = (
            interrupts.how_it_stopped(e)
            if interrupts.received is not None or isinstance(e, KeyboardInterrupt)
            else None
        )
        if stopped is None:
            raise
        fail(f"{command_name()} was stopped ({stopped[0]}).", stopped[1])


def command_name() -> str:
    return sys.argv[0].rsplit("/", 1)[-1] if sys.argv and sys.argv[0] else "d2lexp"
