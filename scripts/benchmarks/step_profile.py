"""Where a training step's time goes, from torch's profiler over a window of steady-state
steps: how long the device computed (its kernels and copies), how often the host waited
for the device, and which kernels and host-side ops cost the most.

A step whose wall time (measured without the profiler) is well over its device time is
bound by the host: Python, framework bookkeeping and kernel launches, or a wait on the
device that stops the host from queueing the next step's work ahead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from d2lexp.callbacks.throughput import synchronize

# CUDA runtime calls that block the host until the device (or a stream) has caught up.
HOST_WAITS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "cudaMemcpy")


def _summary(prof: profile, steps: int, seconds: float, top: int = 8) -> dict[str, Any]:
    events = prof.key_averages()
    on_host = [e for e in events if e.device_type == DeviceType.CPU]
    # Kernels, copies and fills; not the device-side spans of annotated regions (record_function,
    # e.g. "Optimizer.step#SGD.step"), which overlap the kernels they enclose.
    host_keys = {e.key for e in on_host}
    on_device = [
        e for e in events
        if e.device_type != DeviceType.CPU and not getattr(e, "is_user_annotation", False) and e.key not in host_keys
    ]  # fmt: skip
    device_us = sum(e.self_device_time_total for e in on_device)
    waits = {e.key: e.count / steps for e in on_host if e.key in HOST_WAITS}
    kernels = sorted(on_device, key=lambda e: e.self_device_time_total, reverse=True)[:top]
    host_ops = sorted(on_host, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return {
        "steps": steps,
        "profiled_wall_ms_per_step": seconds * 1e3 / steps,
        "device_ms_per_step": device_us / 1e3 / steps if on_device else None,  # None: nothing ran on an accelerator
        # the window ends with one device sync of the profiler's own: 1/steps of these
        "host_waits_per_step": waits,
        "device_launches_per_step": sum(e.count for e in on_device) / steps,
        # a CUDA graph's replay is one launch from the host for all of its kernels (counted above)
        "graph_replays_per_step": sum(e.count for e in on_host if e.key == "cudaGraphLaunch") / steps,
        "top_kernels_ms_per_step": {e.key[:120]: e.self_device_time_total / 1e3 / steps for e in kernels},
        "top_host_ops_ms_per_step": {e.key[:120]: e.self_cpu_time_total / 1e3 / steps for e in host_ops},
    }


def _activities(device: torch.device) -> list[ProfilerActivity]:
    return [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if device.type == "cuda" else [])]


def profile_loop(step: Callable[[], None], device: torch.device, steps: int) -> dict[str, Any]:
    """Profile `steps` calls of an already warmed-up `step`."""
    with profile(activities=_activities(device)) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        synchronize(device)
        seconds = time.perf_counter() - start
    return _summary(prof, steps, seconds)


def profile_d2lexp(cfg: Any, device: torch.device, warmup: int, steps: int) -> dict[str, Any]:
    """Profile steps `warmup` .. `warmup + steps` of d2lexp's real pipeline (one epoch of
    `cfg`, which must have at least that many training batches), callbacks and all."""
    import lightning.pytorch as pl

    from d2lexp.train import train

    window: dict[str, Any] = {}

    class Window(pl.Callback):
        def on_train_batch_start(
            self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
        ) -> None:
            if trainer.global_step == warmup and "prof" not in window:
                synchronize(device)
                window["prof"] = profile(activities=_activities(device)).__enter__()
                window["start"] = time.perf_counter()

        def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
            if trainer.global_step == warmup + steps and "seconds" not in window:
                synchronize(device)
                window["seconds"] = time.perf_counter() - window["start"]
                window["prof"].__exit__(None, None, None)
                trainer.should_stop = True

    train(cfg, callbacks=[Window()])
    if "seconds" not in window:
        raise RuntimeError(f"the run ended before step {warmup + steps}: give it more training batches")
    return _summary(window["prof"], steps, window["seconds"])
