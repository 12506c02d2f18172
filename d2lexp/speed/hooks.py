"""Lightning's per-hook bookkeeping at the cost of a plain attribute."""

from __future__ import annotations

from typing import Any


class LeanHookBookkeeping:
    """Lightning sets a module's `_current_fx_name` around every hook it calls, some 50 times a
    training step; nn.Module's `__setattr__` checks each value for parameters, buffers and
    submodules first, wasted on a string. A mixin of `d2lexp.tasks.base.Task`, with no switch:
    it changes nothing but the cost of setting that attribute."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)
