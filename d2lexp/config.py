"""Typed schemas for the config groups users edit most, registered with Hydra.

A yaml file in `conf/trainer/` lists `/schema@_here_: trainer` in its defaults,
so a value of the wrong type (`trainer.max_epochs=abc`) or a misspelt key fails
while the config is composed, naming the key, before any work starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class TrainerSchema:
    """The `lightning.pytorch.Trainer` arguments d2lexp exposes, with their types."""

    _target_: str = "lightning.pytorch.Trainer"
    accelerator: str = "auto"
    devices: Any = 1
    strategy: Any = "auto"
    num_nodes: int = 1
    precision: Any = "32-true"
    max_epochs: Optional[int] = 10
    min_epochs: Optional[int] = None
    max_steps: int = -1
    max_time: Optional[str] = None
    limit_train_batches: Any = None
    limit_val_batches: Any = None
    limit_test_batches: Any = None
    limit_predict_batches: Any = None
    val_check_interval: Any = None
    check_val_every_n_epoch: Optional[int] = 1
    num_sanity_val_steps: int = 0
    log_every_n_steps: int = 50
    enable_checkpointing: bool = True
    enable_progress_bar: bool = True
    enable_model_summary: bool = True
    accumulate_grad_batches: int = 1
    gradient_clip_val: Optional[float] = None
    gradient_clip_algorithm: Optional[str] = None
    deterministic: Any = None
    benchmark: Optional[bool] = None
    inference_mode: bool = True
    use_distributed_sampler: bool = True
    sync_batchnorm: bool = False
    reload_dataloaders_every_n_epochs: int = 0
    detect_anomaly: bool = False
    profiler: Any = None
    fast_dev_run: Any = False
    overfit_batches: Any = 0.0
    barebones: bool = False
    default_root_dir: Optional[str] = None


def register_schemas() -> None:
    """Make the schemas visible to Hydra's composition (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(group="schema", name="trainer", node=TrainerSchema)


register_schemas()
