"""Lightning's ModelCheckpoint, cheaper on every training step."""

from __future__ import annotations

from functools import cached_property

from lightning.pytorch.callbacks import ModelCheckpoint as LightningModelCheckpoint


class ModelCheckpoint(LightningModelCheckpoint):
    """`lightning.pytorch.callbacks.ModelCheckpoint` with its `state_key` formatted once.

    Lightning formats every callback's `state_key` on every hook call, as a label for its
    profiler; ModelCheckpoint's is the repr of its settings, which with d2lexp's three
    checkpoint callbacks costs several percent of a short training step. The settings it
    is made of are fixed at construction, and the key (class name included) is the one
    Lightning writes, so checkpoints stay interchangeable.
    """

    @cached_property
    def state_key(self) -> str:  # type: ignore[override]
        return super().state_key
