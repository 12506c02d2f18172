"""Where d2lexp's configs are, and the typed schemas of the groups users edit most.

A schema types a config group's keys, so a value of the wrong type (`trainer.max_epochs=abc`,
`data.batch_size=abc`) or a misspelt key fails while the config is composed, naming the key,
before any work starts. Each schema is *derived* from the signature of the constructor the group
builds (its keyword arguments, their types and defaults), read from the constructor's source
without importing it: a default is written once, in the constructor, and a YAML file sets only
what d2lexp chooses differently (tests/test_config.py holds every schema to the imported signature). A YAML file such as
`conf/trainer/default.yaml` lists `/schema@_here_: trainer` in its defaults to be typed.
Out-of-range values (`data.batch_size=-1`, `optimizer.lr=-1`) are refused by the constructors
themselves, also before any work starts.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
from collections.abc import Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore


def _config_folder() -> tuple[str, str]:
    """Where d2lexp's configs are: (the folder, how Hydra's main finds it). In a source checkout
    (an editable install, or the source on the path), the checkout's conf/ beside this package;
    installed from a wheel, the package `d2lexp.conf` (pyproject.toml maps conf/ there), found
    through the package wherever the command runs."""
    checkout = Path(__file__).resolve().parent.parent / "conf"
    if (checkout / "config.yaml").is_file() and (checkout / "recipe").is_dir():
        return str(checkout), str(checkout)
    from importlib.resources import files

    return str(files("d2lexp.conf")), "pkg://d2lexp.conf"


# The configs every d2lexp command composes (CONF_DIR: a folder, for Hydra's compose API and the help;
# CONFIG_PATH: what Hydra's main is given).
CONF_DIR, CONFIG_PATH = _config_folder()


def in_multirun() -> bool:
    """Whether this is a job of a `-m` sweep."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:
        return False


@dataclasses.dataclass(frozen=True)
class ComposedJob:
    """What a run started from Python (d2lexp.api) says of itself where a command-line run asks
    Hydra (HydraConfig, which the API leaves unset): its config-group choices (model=lenet, ...)
    and the overrides it was composed with."""

    choices: dict[str, str]
    overrides: list[str]


# The run d2lexp.api is running in this thread, if any.
composed_job: ContextVar[ComposedJob | None] = ContextVar("d2lexp_composed_job", default=None)


_PRIMITIVES = {"bool": bool, "int": int, "float": float, "str": str}


@dataclasses.dataclass(frozen=True)
class Argument:
    """One keyword argument of a constructor, as its source declares it."""

    name: str
    annotation: ast.expr | None
    default: Any = dataclasses.MISSING  # MISSING: none; `_OBJECT`: one no config can hold


_OBJECT = object()


def _source_file(module: str) -> Path:
    """The file of `module`, found without importing it (nor its package: importing Lightning takes
    seconds, and a mistyped command line is refused in under one)."""
    top, *rest = module.split(".")
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"{top} is not an installed package")
    base = Path(next(iter(spec.submodule_search_locations))).joinpath(*rest)
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def arguments_from_source(module: str, name: str) -> list[Argument]:
    """The keyword arguments of class `name`'s `__init__` in `module`, read from its source."""
    tree = ast.parse(_source_file(module).read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name)
    init = next((n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
    if init is None:  # a dataclass: its fields, in order
        return [
            Argument(
                n.target.id, n.annotation, ast.literal_eval(n.value) if n.value is not None else dataclasses.MISSING
            )
            for n in cls.body
            if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
        ]
    positional = init.args.posonlyargs + init.args.args
    defaults = [dataclasses.MISSING] * (len(positional) - len(init.args.defaults)) + list(init.args.defaults)
    pairs = list(zip(positional, defaults)) + list(zip(init.args.kwonlyargs, init.args.kw_defaults))
    found = []
    for argument, default in pairs:
        if argument.arg == "self":
            continue
        if isinstance(default, ast.expr):
            try:
                default = ast.literal_eval(default)
            except ValueError:  # a default that is an object (a class's instance, a constant's name)
                default = _OBJECT
        elif default is None:  # a keyword-only argument without a default
            default = dataclasses.MISSING
        found.append(Argument(argument.arg, argument.annotation, default))
    if init.args.kwarg is not None and cls.bases:  # `**options` passed on to its base class: the base's are its own too
        base = ast.unparse(cls.bases[0]).rsplit(".", 1)[-1]
        imported = {a.asname or a.name: n.module for n in tree.body if isinstance(n, ast.ImportFrom) for a in n.names}
        if base in imported and imported[base]:
            known = {a.name for a in found}
            found += [a for a in arguments_from_source(imported[base], base) if a.name not in known]
    return found


def _config_type(annotation: ast.expr | None) -> Any:
    """The type OmegaConf can check for an annotation: a primitive, Optional of one, a List of one;
    Any where it allows several primitives or none (`Union[int, float]`, a Literal, a class): the
    constructor then checks the value itself."""
    if annotation is None:
        return Any
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):  # a quoted annotation
        return _config_type(ast.parse(annotation.value, mode="eval").body)
    if isinstance(annotation, ast.Name) and annotation.id in _PRIMITIVES:
        return _PRIMITIVES[annotation.id]
    members: list[ast.expr] | None = None
    if isinstance(annotation, ast.BinOp) and isinstance(annotation.op, ast.BitOr):
        members = [annotation.left, annotation.right]
    elif isinstance(annotation, ast.Subscript):
        outer = ast.unparse(annotation.value).rsplit(".", 1)[-1]
        inner = annotation.slice.elts if isinstance(annotation.slice, ast.Tuple) else [annotation.slice]
        if outer == "Optional":
            members = [*inner, ast.Constant(None)]
        elif outer == "Union":
            members = list(inner)
        elif outer in ("list", "List", "Sequence", "tuple", "Tuple") and inner:
            item = _config_type(inner[0])
            same = all(
                _config_type(i) == item for i in inner if not (isinstance(i, ast.Constant) and i.value is Ellipsis)
            )
            return List[item] if item in _PRIMITIVES.values() and same else Any  # noqa: UP006  (OmegaConf reads typing.List)
    if members is None:
        return Any
    flat: list[ast.expr] = []
    for member in members:  # `int | float | None` nests
        if isinstance(member, ast.BinOp) and isinstance(member.op, ast.BitOr):
            flat += [member.left, member.right]
        else:
            flat.append(member)
    optional = any(isinstance(m, ast.Constant) and m.value is None for m in flat)
    # A tensor is never a config's value; any other class may be (a `_target_` node builds it).
    kept = [m for m in flat if not (isinstance(m, ast.Constant) and m.value is None) and not _names_a_tensor(m)]
    kinds = {_config_type(m) for m in kept}
    if len(kinds) != 1 or not kinds <= set(_PRIMITIVES.values()):
        return Any
    one = kinds.pop()
    return Optional[one] if optional else one  # noqa: UP045  (OmegaConf reads typing.Optional)


def _names_a_tensor(annotation: ast.expr) -> bool:
    return ast.unparse(annotation).rsplit(".", 1)[-1] == "Tensor"


def schema_of(
    target: str,
    *,
    module: str | None = None,
    exclude: Sequence[str] = (),
    partial: bool = False,
    instantiated: bool = True,
    extra: Sequence[tuple[str, type, Any]] = (),
) -> type:
    """A dataclass that types the keyword arguments of the class `target` names (all but `exclude`),
    with their defaults, read from its source (`module`: where it is defined, if `target` names it
    by a shorter path); `_target_` (and `_partial_`) for Hydra's instantiate, if `instantiated`;
    then `extra` (name, type, default): d2lexp's own settings of the group, which d2lexp.build
    takes out before the constructor is called."""
    where, name = (module or target.rsplit(".", 1)[0]), target.rsplit(".", 1)[1]
    fields: list[tuple[str, Any, Any]] = [("_target_", str, dataclasses.field(default=target))] if instantiated else []
    if partial:
        fields.append(("_partial_", bool, dataclasses.field(default=True)))
    for argument in arguments_from_source(where, name):
        if argument.name in exclude:
            continue
        kind, default = _config_type(argument.annotation), argument.default
        if default is dataclasses.MISSING:
            fields.append((argument.name, kind, dataclasses.field(default=dataclasses.MISSING)))
        elif default is _OBJECT:  # the key is typed, and None stands for the constructor's own default
            fields.append((argument.name, Any, dataclasses.field(default=None)))
        elif isinstance(default, (list, tuple)):
            fields.append((argument.name, kind, dataclasses.field(default_factory=lambda d=default: list(d))))
        else:
            fields.append((argument.name, kind, dataclasses.field(default=default)))
    fields += [(key, kind, dataclasses.field(default=default)) for key, kind, default in extra]
    schema = dataclasses.make_dataclass(f"{name}Settings", fields, kw_only=True)
    return schema


# Every optimizer's own setting of d2lexp's: how many times faster the net's output layer learns
# (the book's fine-tuning: 10; d2lexp.build.optimizer).
OPTIMIZER_EXTRA = (("output_lr_scale", float, 1.0),)

# The schemas of the groups users edit most, by the name their YAML files give them.
SCHEMAS: dict[str, tuple[str, dict[str, Any]]] = {
    # The Trainer's arguments but what d2lexp builds itself (callbacks, loggers, plugins).
    "trainer": ("lightning.pytorch.Trainer",
                {"module": "lightning.pytorch.trainer.trainer", "exclude": ("callbacks", "logger", "plugins")}),
    "fashion_mnist": ("d2lexp.data.fashion_mnist.FashionMNISTDataModule", {"exclude": ("augment",)}),
    "canvases": ("d2lexp.data.canvases.FashionMNISTCanvases", {"exclude": ("augment",)}),
    "bananas": ("d2lexp.data.bananas.BananasDataModule", {"exclude": ("augment",)}),
    "voc": ("d2lexp.data.voc.VOCSegmentationDataModule", {"exclude": ("augment",)}),
    "time_machine": ("d2lexp.data.time_machine.TimeMachineDataModule", {}),
    "sgd": ("torch.optim.SGD", {"module": "torch.optim.sgd", "exclude": ("params",), "partial": True, "extra": OPTIMIZER_EXTRA}),
    "adam": ("torch.optim.Adam", {"module": "torch.optim.adam", "exclude": ("params",), "partial": True, "extra": OPTIMIZER_EXTRA}),
    "adamw": ("torch.optim.AdamW", {"module": "torch.optim.adamw", "exclude": ("params",), "partial": True, "extra": OPTIMIZER_EXTRA}),
    "sgd_scratch": ("d2lexp.scratch.optim.SGD", {"exclude": ("params",), "partial": True, "extra": OPTIMIZER_EXTRA}),
    "speed": ("d2lexp.speed.Speed", {"module": "d2lexp.speed.switches", "instantiated": False}),
}  # fmt: skip


def register_with_hydra() -> None:
    """What d2lexp's configs need before they compose (idempotent): the schemas (config group
    `schema`) and the `new_run_folder` resolver, which claims a run's folder as Hydra names it
    (d2lexp.run_folder; cached: Hydra reads the name more than once, and a sweep's jobs share it)."""
    from omegaconf import OmegaConf

    from d2lexp.run_folder import new_run_folder

    store = ConfigStore.instance()
    for name, (target, options) in SCHEMAS.items():
        schema = schema_of(target, **options)
        # A module-level name, so the config store pickles (a sweep's jobs start in processes of their own).
        schema.__name__ = schema.__qualname__ = f"{name.title().replace('_', '')}Settings"
        schema.__module__ = __name__
        globals()[schema.__name__] = schema
        store.store(group="schema", name=name, node=schema)
    from d2lexp.search.settings import SearchSettings  # written by hand: a search's settings are its own

    store.store(group="schema", name="search", node=SearchSettings)
    OmegaConf.register_new_resolver("new_run_folder", new_run_folder, use_cache=True, replace=True)


register_with_hydra()  # every composition reads CONF_DIR from here first
