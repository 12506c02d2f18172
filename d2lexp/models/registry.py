"""The nets a checkpoint may name. Each registers where it is defined, with `@register_net`, under
the dotted name a config's `_target_` gives it (`d2lexp.models.lenet.LeNet`); a checkpoint's net is
rebuilt from this registry and nowhere else (d2lexp.nets). A net of one's own registers the same way.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import TypeVar

from torch import nn

NetBuilder = Callable[..., nn.Module]
Builder = TypeVar("Builder", bound=NetBuilder)

_NETS: dict[str, NetBuilder] = {}
# The packages whose modules define d2lexp's nets: all are imported before the registry is read.
_PACKAGES = ("d2lexp.models", "d2lexp.scratch")


def register_net(builder: Builder) -> Builder:
    """Class decorator (or function decorator, for a builder function): `builder` may be named by
    checkpoints, by its dotted name."""
    _NETS[f"{builder.__module__}.{builder.__qualname__}"] = builder
    return builder


def registered_nets() -> dict[str, NetBuilder]:
    """Every registered net by its dotted name, once the modules of d2lexp's nets are imported."""
    for package_name in _PACKAGES:
        package = importlib.import_module(package_name)
        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package_name}.{module.name}")
    return dict(_NETS)
