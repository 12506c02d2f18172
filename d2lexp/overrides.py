"""Command-line overrides: a misspelt key caught before Hydra starts, and a run's recorded
overrides read back safely, to resume or evaluate it with the settings it was started with.

A run's overrides are recorded in its `.hydra/overrides.yaml` and in its checkpoints. Both are
files a user may have been given, so what is read back is only ever composed with d2lexp's own
configs, and only as plain settings: an option of a config group (a file of conf/), or a key
set to a number, string, boolean, null or list of them. Keys of Hydra's own, keys that are
instructions to `instantiate` (`_target_`, ...), mappings and interpolations are refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from d2lexp.config import CONF_DIR
from d2lexp.errors import CheckpointError


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


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float)):
        return True
    if isinstance(value, str):
        return "${" not in value  # an interpolation can call a resolver
    return isinstance(value, list) and all(_plain(v) for v in value)


def checked_overrides(overrides: Any, source: str) -> list[str]:
    """`overrides` read from a file (`source`), each checked to be a plain setting (see the
    module's docstring); CheckpointError, one paragraph naming the file and the override, if not."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise CheckpointError(f"{source}: its recorded overrides are not a list of strings; the file is damaged.")

    def refuse(override: str, why: str) -> CheckpointError:
        return CheckpointError(
            f"{source}: its recorded override {override!r} {why}. The settings of a run are read back only as "
            "config options and plain values, and nothing they name is run; this file was not written by d2lexp, or "
            "was altered. Give the settings on the command line instead (~experiment and the overrides you want)."
        )

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as e:
        raise CheckpointError(f"{source}: its recorded overrides cannot be read ({e}).") from None
    for override, text in zip(parsed, overrides):
        key = override.key_or_group
        if key.startswith("hydra") or any(part.startswith("_") for part in key.replace("/", ".").split(".")):
            raise refuse(text, "sets a key of Hydra's or of instantiate's, not a setting")
        if override.is_sweep_override():
            raise refuse(text, "is a sweep, not one run's setting")
        if not override.is_delete() and not _plain(override.value()):
            raise refuse(text, "holds more than a plain value (a mapping or an interpolation)")
        if ".." in str(override.value()):
            raise refuse(text, "names a path outside d2lexp's configs")
    return list(overrides)


def recorded_overrides(checkpoint_path: Path) -> list[str] | None:
    """The overrides the run that wrote `checkpoint_path` was started with: its run folder's
    `.hydra/overrides.yaml` (plain YAML), else the ones the checkpoint carries; checked
    (`checked_overrides`). None when neither is there (a run built in a notebook)."""
    import yaml

    recorded = checkpoint_path.parent.parent / ".hydra" / "overrides.yaml"
    if recorded.is_file():
        try:
            return checked_overrides(yaml.safe_load(recorded.read_text()) or [], str(recorded))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            raise CheckpointError(
                f"{recorded} cannot be read ({e}); give the run's settings on the command line."
            ) from None
    from d2lexp.callbacks.run_config import OVERRIDES_KEY
    from d2lexp.checkpoint import load_checkpoint

    stored = load_checkpoint(checkpoint_path).get(OVERRIDES_KEY)
    return None if stored is None else checked_overrides(stored, str(checkpoint_path))


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def with_recorded_settings(args: list[str], own_folder: bool = True) -> list[str]:
    """A command line that resumes a run (`ckpt_path=<run folder or checkpoint>`), with the run's
    own recorded overrides first and the command's on top, continuing in the run's own folder:
    `python -m d2lexp ckpt_path=outputs/<date>/<time> trainer.max_epochs=20` needs nothing
    retyped (`own_folder=False`: a folder of the command's own, as an eval's). Other command lines
    come back as they are."""
    given = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in args if "=" in a and not a.startswith("-")}
    spec = given.get("ckpt_path")
    if not spec or spec in ("last", "auto", "null") or "-m" in args or "--multirun" in args:
        return args
    from d2lexp.checkpoint import find_checkpoint  # here: torch is imported only when a run is resumed

    checkpoint = find_checkpoint(spec, ".")
    if not checkpoint.is_file():
        return args  # the run says it cannot be read, in its own paragraph
    recorded = recorded_overrides(checkpoint) or []
    mine = {_key(a) for a in args if "=" in a or a.startswith("~")}
    extra = [o for o in recorded if _key(o) not in mine and _key(o) != "ckpt_path"]
    folder = checkpoint.parent.parent
    in_place = own_folder and (folder / ".hydra").is_dir() and "hydra.run.dir" not in given
    return [*extra, *args, *([f"hydra.run.dir={folder}"] if in_place else [])]
