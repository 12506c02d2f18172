"""torch.compile for the net's training batches (`speed.compile`)."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch

from d2lexp.errors import ConfigError
from d2lexp.speed.memory_format import ChannelsLastInputs

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CUDA_GRAPHS_ONLY = "cudagraphs"


def compile_options(setting: bool | str | None) -> dict[str, Any] | None:
    """`torch.compile`'s keyword arguments for a `speed.compile` setting, None for no compiling.

    false/null: eager; true: torch.compile's defaults; one of its modes by name; or `cudagraphs`.
    `reduce-overhead` generates fused kernels (Inductor) and replays the net's forward and
    backward as CUDA graphs, which takes away the per-kernel launch cost that bounds small
    nets on a GPU. `cudagraphs` replays the net's own kernels as CUDA graphs, with no code
    generation: it takes away the launch cost alone, and compiles in seconds where Inductor
    takes a minute or more for a net of many layers. Shapes are static (`dynamic=False`): the
    compiled net sees one input shape (see `CompiledForMainShape`).
    """
    if setting is None or setting is False:
        return None
    if setting is True:
        return {"dynamic": False}
    if setting == CUDA_GRAPHS_ONLY:
        return {"backend": CUDA_GRAPHS_ONLY, "dynamic": False}
    if isinstance(setting, str) and setting in COMPILE_MODES:
        return {"mode": setting, "dynamic": False}
    raise ConfigError(
        f"speed.compile={setting!r} is not a compile setting. Use false (no torch.compile), true "
        f"(torch.compile's defaults), one of its modes ({', '.join(COMPILE_MODES)}) or "
        f"{CUDA_GRAPHS_ONLY} (CUDA graphs of the net's own kernels, no code generation); for example "
        "speed.compile=reduce-overhead for fused kernels and CUDA graphs on a GPU."
    )


class CompiledForMainShape:
    """Calls the compiled net for training batches of the first batch's shape, and `eager` for
    everything else: each new graph costs a compile as long as the first (seconds to minutes) to
    save a little host time, so an epoch's last, smaller batch (one step an epoch) and evaluation
    (in eval mode and without gradients the net is another graph, run once an epoch) run eager."""

    def __init__(self, task: pl.LightningModule, compiled: Any, eager: Any) -> None:
        self.task, self.compiled, self.eager = task, compiled, eager
        self.shape: tuple[int, ...] | None = None

    def __call__(self, x: torch.Tensor, *rest: Any) -> Any:
        if self.task.training:
            if self.shape is None:
                self.shape = tuple(x.shape)
            if tuple(x.shape) == self.shape:
                return self.compiled(x, *rest)
        return self.eager(x, *rest)


class CompileNet(pl.Callback):
    """Compiles the task's net when fitting starts, after the callbacks before it.

    After Lightning's model summary, which runs the net under FlopCounterMode: torch before 2.14
    skips a compiled call made under a dispatch mode and then skips its code for good
    (pytorch/pytorch#190286), so the net trained eager. `torch.compile(net)`, not `net.compile()`:
    before torch 2.14 the latter compiled nothing for a net whose forward is torch's own, as
    nn.Sequential's (pytorch/pytorch#150915); kept out of the module tree, the state_dict keys
    stay the plain net's. Dynamo first forgets the nets compiled before in this process (a
    sweep's earlier jobs): every nn.Sequential net is compiled through one shared wrapper
    function, and dynamo compiles a function for at most 8 nets; the 9th would silently train
    eager. This also frees their CUDA-graph memory pools.
    """

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options

    def on_fit_start(self, trainer: pl.Trainer, task: pl.LightningModule) -> None:
        # The net's own call: the task's `apply_net`, or the one its channels-last inputs go to.
        holder = task.apply_net if isinstance(task.apply_net, ChannelsLastInputs) else task
        if isinstance(holder.apply_net, CompiledForMainShape):
            return  # compiled by an earlier fit of this task
        torch._dynamo.reset()
        holder.apply_net = CompiledForMainShape(task, torch.compile(task.net, **self.options), holder.apply_net)
