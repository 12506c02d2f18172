"""What d2lexp takes from files it did not write in this process: checkpoints, run and sweep
folders, data. Such files are shared like any data and may have been written by anyone, so they
are read as bounded data and may set only a run's defining settings, never where anything is
read or written, nor what runs.

What d2lexp trusts: the command line and the configs in `conf/`. What it does not: everything
below, and what holds for it:

- **Text files** (`.hydra/*.yaml`, `metrics.json`): read only up to a size (`MAX_TEXT_BYTES`),
  YAML without anchors or aliases, nesting, strings and whole numbers bounded (`read_yaml`,
  `read_json`); anything past a bound is refused with one paragraph, before it is parsed further.
- **Settings** a run recorded (its `.hydra/overrides.yaml`, or the overrides in its checkpoints):
  only the run's defining settings are taken (`SETTING_GROUPS`, `SETTING_KEYS`: model, data,
  augment, init, task, optimizer, scheduler, seed, and the trainer's training settings), as plain
  values (numbers, strings, booleans, null, lists of them) of bounded size. Paths, loggers,
  callbacks, launchers, anything of Hydra's, package syntax (`group@package`), interpolations and
  URIs are never taken from a file (`settings_from_file`). The command line may set anything.
- **Checkpoints**: see d2lexp.checkpoint (loaded as data, bounded, rebuilt from d2lexp's own
  registry) and d2lexp.resume (state restored after validation, never paths).
- **Writes**: see d2lexp.files (never through a link, never half-written).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from d2lexp.errors import CheckpointError
from d2lexp.files import NotRegularFile, read_regular

log = logging.getLogger("d2lexp")

MAX_TEXT_BYTES = 128 << 10  # a run's YAML files are a few KB (and a pure-Python YAML parse costs ~8 s/MB)
MAX_JSON_BYTES = 64 << 20  # a metrics.json with a long history is a few MB at most
MAX_DEPTH = 32  # nesting of mappings and lists
MAX_STRING = 4096  # characters in one string or YAML scalar
MAX_INT_DIGITS = 40  # whole numbers: well past any int64, far below Python's 4,300-digit limit
MAX_VALUE_ITEMS = 10_000  # elements in one setting's value (a list of lists counts every element)
MAX_OVERRIDES = 200  # settings a run records
MAX_OVERRIDE_LENGTH = 2000  # characters in one recorded override (Hydra's parser is quadratic in a list's length)

# The config groups whose option a file may choose (each option is a file of the user's own conf/),
# and those it may remove (the others cannot be left out: a run needs them).
SETTING_GROUPS = ("experiment", "model", "data", "augment", "init", "task", "optimizer", "scheduler")
REMOVABLE_GROUPS = ("experiment", "scheduler")
# The keys a file may set: whole groups (by prefix) and single keys.
SETTING_PREFIXES = ("model.", "data.", "augment.", "init.", "task.", "optimizer.", "scheduler.")
SETTING_KEYS = frozenset(
    {
        "seed", "test", "matmul_precision",
        "trainer.max_epochs", "trainer.min_epochs", "trainer.max_steps", "trainer.max_time", "trainer.precision",
        "trainer.gradient_clip_val", "trainer.gradient_clip_algorithm", "trainer.accumulate_grad_batches",
        "trainer.limit_train_batches", "trainer.limit_val_batches", "trainer.limit_test_batches",
        "trainer.check_val_every_n_epoch", "trainer.val_check_interval", "trainer.deterministic",
        "trainer.log_every_n_steps",
    }
)  # fmt: skip
# Under an allowed group, a key named for a place (data.data_dir, init.ckpt_path, ...) is still never
# taken from a file: where data is read from, and whether it is fetched, is the user's choice.
_PLACE_KEY = re.compile(r"(^|_)(dir|path|paths|file|files|root|url|uri|download|host|endpoint)$")
# Values that name a place, whatever the key: URIs (scheme://), absolute or home paths, parent folders.
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:(//|\\\\)")
_OPTION_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*$")


class UntrustedFileError(CheckpointError):
    """A file from outside (a checkpoint, a run or sweep folder) is refused: too large, malformed,
    or holding more than plain data."""


# ------------------------------------------------------------------------------------------------
# Bounded reading of YAML and JSON


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader without anchors or aliases (a few hundred bytes of aliases expand to
    gigabytes: the "billion laughs"), with nesting and scalars bounded."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def construct_yaml_int(self, node: Any) -> int:
        value = super().construct_yaml_int(node)
        if value.bit_length() > 128:  # 0xfff... passes the scalar's length bound: the number's own size counts
            raise yaml.YAMLError("it holds a whole number too large for any setting")
        return value

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise yaml.YAMLError("it uses YAML anchors or aliases, which d2lexp never writes")
        if isinstance(event, yaml.ScalarEvent) and len(event.value) > MAX_STRING:
            raise yaml.YAMLError(f"it holds a value of more than {MAX_STRING:,} characters")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.YAMLError(f"it is nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _read_bounded(path: Path, limit: int) -> str:
    """Up to `limit` bytes of a regular file (a FIFO or a device would block or never end: refused;
    a link is not followed)."""
    try:
        data = read_regular(path, limit)
    except NotRegularFile:
        raise UntrustedFileError(
            f"{path} is not a regular file (a FIFO, a device or a folder): it is not read"
        ) from None
    if len(data) > limit:
        raise UntrustedFileError(f"{path} is larger than {limit:,} bytes: it is not a file d2lexp wrote")
    return data.decode("utf-8")


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)


def read_yaml(path: str | Path, limit: int = MAX_TEXT_BYTES) -> Any:
    """The plain data of a YAML file from outside: UntrustedFileError (one paragraph naming the
    file) for one too large, too deep, with anchors or aliases, or not YAML; OSError if unreadable."""
    path = Path(path)
    text = _read_bounded(path, limit)
    try:
        loader = _BoundedLoader(text)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except (yaml.YAMLError, ValueError, RecursionError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UntrustedFileError(f"{path} cannot be read as a run's YAML file: {reason[:300]}.") from None


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"a whole number of more than {MAX_INT_DIGITS} digits")
    return int(text)


def read_json(path: str | Path, limit: int = MAX_JSON_BYTES) -> Any:
    """The data of a JSON file from outside (metrics.json), bounded like `read_yaml`: ValueError
    (one line) for a file too large, too deep or not JSON; OSError if unreadable."""
    path = Path(path)
    try:
        text = _read_bounded(path, limit)
    except UntrustedFileError as e:
        raise ValueError(str(e)) from None
    try:
        data = json.loads(text, parse_int=_bounded_int)
    except RecursionError:
        raise ValueError("it is nested too deeply") from None
    check_depth(data)
    return data


def check_depth(value: Any, limit: int = MAX_DEPTH) -> None:
    """ValueError if `value` nests mappings and lists more than `limit` deep."""
    pending = [(value, 1)]
    while pending:
        node, depth = pending.pop()
        if isinstance(node, (dict, list, tuple)):
            if depth > limit:
                raise ValueError(f"it is nested more than {limit} levels deep")
            children = node.values() if isinstance(node, dict) else node
            pending.extend((child, depth + 1) for child in children)


# ------------------------------------------------------------------------------------------------
# Plain values


def plain_value_problem(value: Any, depth: int = 0, budget: list[int] | None = None) -> str | None:
    """Why `value` is not a plain, bounded setting value (number, string, boolean, null, or a list
    of them); None if it is one."""
    budget = [MAX_VALUE_ITEMS] if budget is None else budget
    budget[0] -= 1
    if budget[0] < 0:
        return f"holds more than {MAX_VALUE_ITEMS:,} values"
    if value is None or isinstance(value, (bool, float)):
        return None
    if isinstance(value, int):
        return (
            None if len(str(abs(value))) <= MAX_INT_DIGITS else f"holds a number of more than {MAX_INT_DIGITS} digits"
        )
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            return f"holds a string of more than {MAX_STRING:,} characters"
        if "${" in value:
            return "holds an interpolation (${...}), which could call a resolver"
        if names_a_place(value):
            return f"names a place ({value[:80]!r}): a URI, an absolute path or a parent folder"
        return None
    if isinstance(value, (list, tuple)):
        if depth >= 4:
            return "holds lists nested more than 4 deep"
        for item in value:
            problem = plain_value_problem(item, depth + 1, budget)
            if problem:
                return problem
        return None
    return f"holds a {type(value).__name__}, not a plain value"


def names_a_place(text: str) -> bool:
    """Whether a string from a file looks like a URI or a path outside where it is used."""
    return bool(_URI.match(text)) or text.startswith(("/", "~", "\\")) or ".." in text.replace("\\", "/").split("/")


def is_place_key(key: str) -> bool:
    """Whether a setting's name says it holds a place (a folder, file, URL, or whether to fetch)."""
    return bool(_PLACE_KEY.search(key.rsplit(".", 1)[-1].lower()))


# ------------------------------------------------------------------------------------------------
# The settings a file may set


@dataclass
class FileSettings:
    """What a file's recorded overrides may set (`taken`), and what it held that d2lexp leaves to
    the command line (`left_out`)."""

    taken: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)


def _group_options(conf_dir: Path, group: str) -> set[str]:
    folder = conf_dir / group
    return {str(p.relative_to(folder).with_suffix("")) for p in folder.rglob("*.yaml")} if folder.is_dir() else set()


def setting_allowed(key: str) -> bool:
    """Whether a file may set the dotted `key` (see the module's docstring)."""
    if any(part.startswith("_") or not part for part in key.split(".")):
        return False  # instructions to instantiate (_target_, _partial_, _args_)
    if is_place_key(key):
        return False
    return key in SETTING_KEYS or key.startswith(SETTING_PREFIXES)


def settings_from_file(overrides: Any, source: str, conf_dir: str | Path) -> FileSettings:
    """The overrides a run recorded (`source`: the file they were read from), split into those a
    file may set and those it may not; UntrustedFileError (one paragraph naming the file and the
    override) for one that is malformed, oversized, or holds more than a plain value."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    def refuse(override: str, why: str) -> UntrustedFileError:
        return UntrustedFileError(
            f"{source} is refused: its recorded setting {override[:200]!r} {why}. A file may set a run's model, data, "
            "augmentation, initialisation, task, optimizer, scheduler, seed and training length as plain values "
            "(numbers, strings, booleans, lists of them), nothing else; this file was not written by d2lexp, or was "
            "altered. Give the settings on the command line instead (~experiment and the overrides you want)."
        )

    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise UntrustedFileError(f"{source}: its recorded overrides are not a list of strings; the file is damaged.")
    if len(overrides) > MAX_OVERRIDES:
        raise UntrustedFileError(f"{source} records more than {MAX_OVERRIDES:,} overrides; it is not a run's record.")
    result = FileSettings()
    parser = OverridesParser.create()
    conf = Path(conf_dir)
    for text in overrides:
        if len(text) > MAX_OVERRIDE_LENGTH:
            raise refuse(text, f"is longer than {MAX_OVERRIDE_LENGTH:,} characters")
        try:
            (override,) = parser.parse_overrides([text])
        except (HydraException, ValueError, RecursionError) as e:
            raise refuse(
                text, f"cannot be read ({str(e).strip().splitlines()[0][:200] if str(e).strip() else e})"
            ) from None
        key = override.key_or_group
        if override.package is not None:
            raise refuse(text, "uses package syntax (group@package), which can place a config anywhere")
        if override.is_sweep_override():
            raise refuse(text, "is a sweep, not one run's setting")
        if key in SETTING_GROUPS:  # a group's option (model=vgg11) or its removal (~experiment)
            if override.is_delete() and key not in REMOVABLE_GROUPS:
                raise refuse(text, f"removes the {key} group, which a run needs")
            value = None if override.is_delete() else override.value()
            if value is None and not override.is_delete() and key not in REMOVABLE_GROUPS:
                raise refuse(text, f"removes the {key} group, which a run needs")
            if value is not None and not (isinstance(value, str) and _OPTION_NAME.match(value)):
                raise refuse(text, "does not name an option of the group")
            if value is not None and value not in _group_options(conf, key):
                raise refuse(text, f"names {value!r}, which is not an option of conf/{key}/")
            result.taken.append(text)
            continue
        if not setting_allowed(key):
            if any(part.startswith("_") for part in key.split(".")):
                raise refuse(text, "sets a key of Hydra's instantiate (_target_, ...), not a setting")
            result.left_out.append(text)
            continue
        if not override.is_delete():
            problem = plain_value_problem(override.value())
            if problem:
                raise refuse(text, problem)
        result.taken.append(text)
    return result
