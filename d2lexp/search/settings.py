"""The settings of a hyperparameter search (`search.*`, typed: a misspelt key or a wrong type is
refused while the config is composed). The presets in conf/hparams_search/ set them; their
meaning is in d2lexp.search's docstring and docs/search.md."""

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

# OmegaConf reads typing.Dict and typing.Optional, and annotations that are types, not strings.


@dataclass
class Halving:
    """The book's synchronous successive halving (d2l.ai 1.0, section 19.4): every trial trains
    `min_epochs`, the best 1/eta of them go on to eta times as many epochs, and so on up to
    `max_epochs` (a rung of its own if it is not a power of eta times min_epochs)."""

    min_epochs: int = 2
    max_epochs: int = 10
    eta: int = 2


@dataclass
class SlurmWorkers:
    """Each worker a Slurm job (search.launcher=slurm), through submitit."""

    partition: Optional[str] = None
    account: Optional[str] = None
    timeout_min: int = 60
    cpus_per_task: int = 1
    gpus_per_node: Optional[int] = None
    mem_gb: int = 4


@dataclass
class SearchSettings:
    """trials: trials in all. workers: trials at once (processes on this machine sharing the study,
    or Slurm jobs). sampler, pruner: Optuna's (`_target_` nodes). halving: the book's synchronous
    successive halving instead of a pruner. params: the search space, by setting
    ({low, high, log} or {choices}). storage: the study's; null is a journal file in the search's
    own folder (study.journal), or an RDB URL (sqlite:///..., postgresql://...)."""

    trials: int = 10
    workers: int = 2
    launcher: str = "local"  # local (processes on this machine) or slurm
    sampler: Any = None
    pruner: Any = None
    halving: Optional[Halving] = None
    params: Dict[str, Any] = field(default_factory=dict)
    storage: Optional[str] = None
    study_name: str = "search"
    threads_per_worker: Optional[int] = None  # (null: the CPU's cores shared among the workers)
    slurm: SlurmWorkers = field(default_factory=SlurmWorkers)
