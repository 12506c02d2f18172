"""Store the run's resolved config in every checkpoint, as plain Python types."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl

CHECKPOINT_KEY = "d2lexp_config"


class RunConfigInCheckpoint(pl.Callback):
    """Adds `checkpoint["d2lexp_config"]`: the resolved config as dicts, lists and scalars.

    No Hydra or OmegaConf objects go into the file, so it loads under torch's
    default `weights_only=True`, and the net can be rebuilt from it without Lightning.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[CHECKPOINT_KEY] = self.config
