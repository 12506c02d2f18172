"""Typed schemas for the config groups users edit most (trainer, data, optimizer), registered
with Hydra.

A yaml file such as `conf/trainer/default.yaml` lists `/schema@_here_: trainer` in its
defaults, so a value of the wrong type (`trainer.max_epochs=abc`, `data.batch_size=abc`)
or a misspelt key fails while the config is composed, naming the key, before any work
starts. Out-of-range values (`data.batch_size=-1`, `optimizer.lr=-1`) are refused by the
data module and the optimizer as they are built, also before any work starts. A test
keeps every schema's fields in step with the constructor it describes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore

# The configs every d2lexp command composes: the repository's conf/.
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def in_multirun() -> bool:
    """Whether this is a job of a `-m` sweep."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:
        return False


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


@dataclass
class FashionMNISTSchema:
    _target_: str = "d2lexp.data.fashion_mnist.FashionMNISTDataModule"
    data_dir: str = "./data"
    batch_size: int = 256
    eval_batch_size: Optional[int] = None
    val_size: int = 0
    resize: Optional[int] = None
    normalize: bool = False
    mean: float = 0.2860
    std: float = 0.3530
    train_subset: Optional[int] = None
    test_subset: Optional[int] = None
    download: bool = True
    seed: int = 0
    on_device: Any = "auto"


@dataclass
class TimeMachineSchema:
    _target_: str = "d2lexp.data.time_machine.TimeMachineDataModule"
    data_dir: str = "./data"
    batch_size: int = 32
    num_steps: int = 35
    sampling: str = "sequential"
    max_tokens: int = 10_000
    val_fraction: float = 0.0
    download: bool = True
    seed: int = 0
    on_device: Any = "auto"
    pipeline: str = "course"
    num_train: int = 10_000
    num_val: int = 5_000


@dataclass
class SGDSchema:
    _target_: str = "torch.optim.SGD"
    _partial_: bool = True
    lr: float = 0.1
    momentum: float = 0.0
    dampening: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False


@dataclass
class AdamSchema:
    _target_: str = "torch.optim.Adam"
    _partial_: bool = True
    lr: float = 0.001
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.0
    amsgrad: bool = False


@dataclass
class ScratchSGDSchema:
    _target_: str = "d2lexp.scratch.optim.SGD"
    _partial_: bool = True
    lr: float = 0.1


@dataclass
class SpeedSchema:
    """conf/speed/default.yaml: one switch per feature of d2lexp.speed."""

    compile: Any = False
    channels_last: Any = "auto"
    autotune_main_shapes: bool = True
    background_checkpoints: bool = True
    lean_profiler: bool = True


SCHEMAS: dict[str, type] = {
    "speed": SpeedSchema,
    "trainer": TrainerSchema,
    "fashion_mnist": FashionMNISTSchema,
    "time_machine": TimeMachineSchema,
    "sgd": SGDSchema,
    "adam": AdamSchema,
    "sgd_scratch": ScratchSGDSchema,
}


def register_schemas() -> None:
    """Make the schemas visible to Hydra's composition (idempotent)."""
    cs = ConfigStore.instance()
    for name, node in SCHEMAS.items():
        cs.store(group="schema", name=name, node=node)


register_schemas()
