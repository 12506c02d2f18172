"""Store the run's resolved config, and the command-line overrides it was started with, in every
checkpoint, as plain Python types."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl

CONFIG_KEY = "d2lexp_config"
OVERRIDES_KEY = "d2lexp_overrides"


class RunConfigInCheckpoint(pl.Callback):
    """Adds `checkpoint["d2lexp_config"]`: the resolved config as dicts, lists and scalars, and
    `checkpoint["d2lexp_overrides"]`: the overrides (strings) the run was started with.

    No Hydra or OmegaConf objects go into the file, so it loads under torch's default
    `weights_only=True`, the net can be rebuilt from it without Lightning (d2lexp.nets), and the
    run resumed or evaluated with its own settings (d2lexp.overrides).
    """

    def __init__(self, config: dict[str, Any], overrides: list[str] | None = None) -> None:
        self.config, self.overrides = config, overrides

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[CONFIG_KEY] = self.config
        if self.overrides is not None:
            checkpoint[OVERRIDES_KEY] = list(self.overrides)
