"""The `speed` config group's switches, one per feature of d2lexp.speed, with their defaults (written
here only: conf/speed/default.yaml takes them through its schema, d2lexp.config)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Speed:
    """Switched off, a run trains the same net the same way, only slower."""

    # torch.compile the net: false, true, a mode (reduce-overhead: fused kernels and CUDA graphs) or
    # cudagraphs (CUDA graphs alone); the first steps pay for it.
    compile: bool | str = False
    # Conv nets in channels-last memory format (auto: nets with 2-D convolutions).
    channels_last: bool | str = "auto"
    # cuDNN autotuning (trainer.benchmark) for the shapes of full batches only.
    autotune_main_shapes: bool = True
    # Checkpoints written on a background thread while training goes on.
    background_checkpoints: bool = True
    # Lightning's no-op profiler, without its cost per hook.
    lean_profiler: bool = True
