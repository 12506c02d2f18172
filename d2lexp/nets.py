"""The nets d2lexp can rebuild from a file: a fixed registry, never a name read from the file.

A checkpoint stores the config its net was built from (`d2lexp_config["model"]`: a `_target_`
and constructor arguments). Passing that to `hydra.utils.instantiate` would let whoever wrote
the file choose any importable callable, with arguments of their choosing: a shared
checkpoint could run code as the user who loads it. So a stored model config is only ever
*looked up* here: its `_target_` must name a registered net (`@register_net`, d2lexp.models.registry:
each registers where it is defined), and every argument must be a bounded plain value (number, string, boolean, null, or a list of them). Anything else is refused, and
nothing of it is run or imported.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from torch import nn

from d2lexp.config import CONF_DIR
from d2lexp.errors import CheckpointError
from d2lexp.models.registry import NetBuilder, registered_nets
from d2lexp.models.shapes import probing
from d2lexp.trust import plain_value_problem

# By the dotted name a config's `_target_` gives (what conf/model/*.yaml write and checkpoints store).
NETS: dict[str, NetBuilder] = registered_nets()


def _unregistered_model_options(conf_dir: Path) -> list[str]:
    """The options of conf/model whose d2lexp net is not registered (`@register_net`)."""
    import yaml

    missing = []
    for path in sorted((conf_dir / "model").glob("*.yaml")):
        node = yaml.safe_load(path.read_text()) or {}
        target = (node.get("model") or node).get("_target_") if isinstance(node, dict) else None
        if isinstance(target, str) and target.startswith("d2lexp.") and target not in NETS:
            missing.append(f"{path.stem} ({target})")
    return missing


_missing = _unregistered_model_options(Path(CONF_DIR))
if _missing:  # found on import, not by a failing test: a net must register where it is defined
    raise ImportError(
        f"conf/model names nets that are not registered: {', '.join(_missing)}. Decorate each with "
        "@register_net (d2lexp.models.registry) where it is defined, so its checkpoints can be loaded."
    )

PlainValue = int | float | str | bool | None | list


def _describe(value: Any) -> str:
    if isinstance(value, Mapping):
        target = value.get("_target_")
        return f"a config node naming {target!r} to call" if target else "a mapping"
    return f"a {type(value).__name__}"


def checked_net_config(node: Any, source: str, key: str = "model") -> tuple[NetBuilder, dict[str, PlainValue]]:
    """The registered builder a stored model config names, and its arguments, checked to be
    plain values that the builder takes; CheckpointError (one paragraph naming `source` and the
    key) for anything else. Nothing is called or imported here."""

    def refuse(where: str, why: str) -> CheckpointError:
        return CheckpointError(
            f"{source} is refused: {where} {why}. A d2lexp checkpoint names one of d2lexp's own nets "
            f"({', '.join(sorted(n.rsplit('.', 1)[1] for n in NETS))}) with plain values (numbers, strings, "
            "booleans, lists of them) as its settings, and nothing in it is ever run or imported. Load only "
            "checkpoints written by a d2lexp run; this file was not, or was altered."
        )

    if not isinstance(node, Mapping):
        raise refuse(f"its stored config's `{key}`", f"is {_describe(node)}, not a model config")
    target = node.get("_target_")
    if not isinstance(target, str) or target not in NETS:
        raise refuse(f"{key}._target_", f"names {target!r}, which is not one of d2lexp's nets")
    builder = NETS[target]
    parameters = inspect.signature(builder).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    arguments: dict[str, PlainValue] = {}
    for name, value in node.items():
        if name == "_target_":
            continue
        where = f"{key}.{name}"
        if not isinstance(name, str) or name.startswith("_"):
            raise refuse(where, "is an instruction to Hydra's instantiate (calls, partials, positional arguments)")
        problem = plain_value_problem(value) if not isinstance(value, Mapping) else f"holds {_describe(value)}"
        if problem:
            raise refuse(where, problem if problem.startswith("holds") else f"holds a value that {problem}")
        if name not in parameters and not takes_any:
            raise refuse(where, f"is not a setting of {target.rsplit('.', 1)[1]}")
        arguments[name] = list(value) if isinstance(value, tuple) else value
    return builder, arguments


class NetTooLarge(CheckpointError):
    """A net being built outgrew the budget of the weights a file holds."""


@contextlib.contextmanager
def size_budget(max_values: int, max_tensors: int) -> Iterator[None]:
    """While a net is built: abandon it (NetTooLarge) the moment its parameters and buffers hold
    more than `max_values` values, or it has more than `max_tensors` of them, or more modules than
    could hold them. Settings such as `ResNet(stages=[200000])` are then refused after a few blocks,
    not after gigabytes."""
    from torch.nn.modules import module as torch_module

    counts = {"values": 0, "tensors": 0, "modules": 0}
    probe_counts = {"probe": 0, "values": 0, "tensors": 0}
    max_modules = 8 * max_tensors + 64  # activations, pools and containers hold no tensors of their own

    def tensor_added(module: nn.Module, name: str, tensor: Any) -> None:
        # A shape probe (models.shapes: a VGG or AlexNet sizing its dense layer, a NiN, GoogLeNet, ResNet or DenseNet
        # checking its input size) builds a throwaway copy of part of the net: added to the net's own, those nets were
        # refused as twice their size. Each probe is held to the same budget on its own (it is never larger than the
        # net), so a huge one is still stopped after a few layers.
        if tensor is None:
            return
        probe = probing()
        if probe != probe_counts["probe"]:
            probe_counts.update(probe=probe, values=0, tensors=0)
        held = probe_counts if probe else counts
        held["values"] += tensor.numel()
        held["tensors"] += 1
        if held["values"] > max_values or held["tensors"] > max_tensors:
            raise NetTooLarge("the net outgrew the weights the file holds")

    def module_added(module: nn.Module, name: str, submodule: Any) -> None:
        counts["modules"] += 1
        if counts["modules"] > max_modules:
            raise NetTooLarge("the net outgrew the weights the file holds")

    handles = [
        torch_module.register_module_parameter_registration_hook(tensor_added),
        torch_module.register_module_buffer_registration_hook(tensor_added),
        torch_module.register_module_module_registration_hook(module_added),
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def rebuild(
    node: Any, source: str, max_values: int | None = None, max_tensors: int | None = None, key: str = "model"
) -> nn.Module:
    """The registered net a stored model config names, built with its checked arguments. With
    `max_values` (and `max_tensors`): the values (tensors) the file holds for it; a net that would
    hold more is refused before it is built (`size_budget`)."""
    builder, arguments = checked_net_config(node, source, key)
    budget = size_budget(max_values, max_tensors or 0) if max_values is not None else contextlib.nullcontext()
    try:
        with budget:
            return builder(**arguments)
    except NetTooLarge:
        raise CheckpointError(
            f"{source} is refused: its stored `{key}` settings describe a {builder.__name__} larger than the weights "
            "the file holds. The file was not written by a d2lexp run, or was altered."
        ) from None
    except (TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(
            f"{source}: its stored `{key}` settings do not build {builder.__name__} ({str(e)[:300]}). "
            "The file may be damaged or come from another version of d2lexp."
        ) from None
