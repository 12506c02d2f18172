"""Command-line overrides: a misspelt key caught before Hydra starts, and a run's recorded
overrides read back safely, to resume or evaluate it with the settings it was started with.

A run's overrides are recorded in its `.hydra/overrides.yaml` and in its checkpoints. Both are
files a user may have been given, so what is read back is only ever composed with d2lexp's own
configs, and only as plain settings: an option of a config group (a file of conf/), or a key
set to a number, string, boolean, null or list of them. Keys of Hydra's own, keys that are
instructions to `instantiate` (`_target_`, ...), mappings and interpolations are refused.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from d2lexp.config import CONF_DIR
from d2lexp.console import printable
from d2lexp.errors import CheckpointError
from d2lexp.trust import FileSettings


def unknown_key_message(config_name: str, args: list[str], config_dir: str = CONF_DIR) -> str | None:
    """One paragraph for a command line that sets a key the config does not have
    (`trainer.max_epoch=3`), naming the closest keys it does have; None when every key exists.

    Hydra's own message suggests `+trainer.max_epoch=3`, which would add the misspelt key and
    train with the setting the user meant to change left as it was. This composes the config
    once more (a tenth of a second), so only command lines that set keys pay for it.
    """
    import difflib
    import re

    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import ConfigCompositionException, OverrideParseException
    from omegaconf import OmegaConf

    try:
        parsed = OverridesParser.create().parse_overrides([a for a in args if not a.startswith("-")])
    except OverrideParseException:
        return None  # Hydra says what is wrong with the syntax
    overrides = []
    for override in parsed:
        if override.key_or_group.startswith("hydra"):
            continue
        if override.is_sweep_override():  # a sweep's first value stands for all of them
            first = next(override.sweep_string_iterator(), None)
            key = override.input_line.split("=", 1)[0]
            overrides.append(f"{key}={first}")
        else:
            overrides.append(override.input_line)
    if not any("=" in o and not o.startswith(("+", "~")) for o in overrides):
        return None
    with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
        try:
            compose(config_name=config_name, overrides=overrides)
            return None
        except ConfigCompositionException as e:
            found = re.search(r"Could not override '([^']+)'", str(e))
            if not found:
                return None
            key = found.group(1)
            rest = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != key]
            try:
                config = compose(config_name=config_name, overrides=rest)
            except ConfigCompositionException:
                return None

    def keys(node: object, prefix: str = "") -> list[str]:
        if not isinstance(node, dict):
            return []
        return [k for name, value in node.items() for k in (f"{prefix}{name}", *keys(value, f"{prefix}{name}."))]

    known = keys(OmegaConf.to_container(config, resolve=False))
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
    if close:
        others = f" (or {', '.join(close[1:])})" if close[1:] else ""
        suggestion = f"Did you mean {close[0]}{others}?"
    else:
        suggestion = "`python -m d2lexp --cfg job` lists the keys it has."
    return (
        f"{key} is not a setting of this config, so the command line cannot change it. {suggestion} "
        "(To add a key of your own on purpose, write it with a leading +.)"
    )


MAX_ARGUMENT = 100_000  # characters in one command-line argument
MAX_DIGITS = 1000  # in one number on the command line (Python refuses to read more than 4,300)


def command_line_problem(args: list[str]) -> str | None:
    """One paragraph for a command line too large to read safely; None for any other."""
    import re

    for arg in args:
        if len(arg) > MAX_ARGUMENT:
            return f"A command-line argument of {len(arg):,} characters is more than d2lexp reads ({MAX_ARGUMENT:,})."
        if re.search(rf"\d{{{MAX_DIGITS + 1}}}", arg):
            key = printable(arg.split("=", 1)[0][:60])
            return f"{key} is given a number of more than {MAX_DIGITS:,} digits; no setting takes one that large."
    return None


def hydra_quoted(text: str) -> str:
    """`text` as a quoted Hydra override value that reads back as exactly `text`: commas, quotes,
    brackets, `=`, `#` and `${...}` (which Hydra would otherwise resolve) are taken literally."""
    import re

    text = re.sub(r"(\\+)(?='|\$\{|$)", lambda m: m.group(1) * 2, text)  # backslashes before a quote, ${ or the end
    return "'" + text.replace("'", "\\'").replace("${", "\\${") + "'"


def run_folder_of(checkpoint: Path) -> Path | None:
    """The run folder that wrote `checkpoint` (`<run>/checkpoints/<name>.ckpt`), if it is in one."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else None


def recorded_settings(checkpoint_path: Path) -> FileSettings | None:
    """The settings the run that wrote `checkpoint_path` was started with, as far as a file may
    set them (d2lexp.trust.settings_from_file): its run folder's `.hydra/overrides.yaml` with those
    of each later resume (`.hydra/resume_N/`) on top, else the overrides the checkpoint carries.
    None when neither is there (a run built in a notebook)."""
    from d2lexp.trust import read_yaml, settings_from_file

    folder = run_folder_of(checkpoint_path)
    hydra_dir = folder / ".hydra" if folder is not None else None
    if hydra_dir is not None and (hydra_dir / "overrides.yaml").is_file():
        recorded = [hydra_dir / "overrides.yaml"]
        for number in range(1, 1000):  # each resume's command, in order
            later = hydra_dir / f"resume_{number}" / "overrides.yaml"
            if not later.is_file():
                break
            recorded.append(later)
        settings = FileSettings()
        for file in recorded:
            try:
                overrides = read_yaml(file)
            except (OSError, UnicodeDecodeError) as e:
                raise CheckpointError(
                    f"{file} cannot be read ({e}); give the run's settings on the command line."
                ) from None
            layer = settings_from_file(overrides or [], str(file), CONF_DIR)
            replaced = {_key(o) for o in layer.taken + layer.left_out}
            settings.taken = [o for o in settings.taken if _key(o) not in replaced] + layer.taken
            settings.left_out = [o for o in settings.left_out if _key(o) not in replaced] + layer.left_out
        return settings
    from d2lexp.callbacks.run_config import OVERRIDES_KEY
    from d2lexp.checkpoint import load_checkpoint

    stored = load_checkpoint(checkpoint_path).get(OVERRIDES_KEY)
    return None if stored is None else settings_from_file(stored, str(checkpoint_path), CONF_DIR)


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def literal_paths(args: list[str]) -> list[str]:
    """The command line with `ckpt_path`'s value quoted (unless it is already): a path is a path,
    so a folder named with commas, brackets, `=` or `${...}` means that folder."""
    quoted = []
    for arg in args:
        key, _, value = arg.partition("=")
        if key == "ckpt_path" and value and value[0] not in "'\"" and value not in ("last", "auto", "null"):
            arg = f"ckpt_path={hydra_quoted(value)}"
        quoted.append(arg)
    return quoted


def command_line_values(args: list[str]) -> dict[str, str]:
    """key -> value of the command line's overrides, quoted values read back."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    given = {}
    for arg in args:
        if "=" not in arg or arg.startswith("-"):
            continue
        key, value = arg.split("=", 1)
        if value[:1] in ("'", '"'):
            with contextlib.suppress(HydraException, ValueError):
                value = str(OverridesParser.create().parse_overrides([arg])[0].value()).replace("\\${", "${")
        given[key] = value
    return given


def with_recorded_settings(args: list[str], own_folder: bool = True) -> list[str]:
    """A command line that resumes a run (`ckpt_path=<run folder or checkpoint>`), with the run's
    own recorded settings first (those a file may set: d2lexp.trust) and the command's on top,
    continuing in the run's own folder: `python -m d2lexp ckpt_path=outputs/<date>/<time>
    trainer.max_epochs=20` needs nothing retyped (`own_folder=False`: a folder of the command's
    own, as an eval's). What the run recorded but a file may not set (loggers, paths, devices, ...)
    is named on stderr and left to the command line. Other command lines come back as they are,
    with `ckpt_path` quoted (`literal_paths`)."""
    args = literal_paths(args)
    given = command_line_values(args)
    spec = given.get("ckpt_path")
    if not spec or spec in ("last", "auto", "null") or "-m" in args or "--multirun" in args:
        return args
    from d2lexp.checkpoint import find_checkpoint  # here: torch is imported only when a run is resumed

    checkpoint = find_checkpoint(spec, ".")
    if not checkpoint.is_file():
        return args  # the run says it cannot be read, in its own paragraph
    recorded = recorded_settings(checkpoint) or FileSettings()
    mine = {_key(a) for a in args if "=" in a or a.startswith("~")}
    extra = [o for o in recorded.taken if _key(o) not in mine]
    left_out = [o for o in recorded.left_out if _key(o) not in mine and _key(o) != "ckpt_path"]
    if left_out:
        shown = ", ".join(printable(o) for o in left_out[:8]) + (
            f" and {len(left_out) - 8} more" if len(left_out) > 8 else ""
        )
        print(
            f"Resuming with the run's recorded model, data and training settings. Not taken from its files (they may "
            f"set no paths, loggers, callbacks or devices; give these on the command line if you want them): {shown}.",
            file=sys.stderr,
        )
    folder = run_folder_of(checkpoint)
    in_place = own_folder and folder is not None and (folder / ".hydra").is_dir() and "hydra.run.dir" not in given
    return [*extra, *args, *([f"hydra.run.dir={hydra_quoted(str(folder))}"] if in_place else [])]
