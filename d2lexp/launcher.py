"""Sweeps whose jobs each run in a process of their own: `hydra/launcher=parallel`.

    python -m d2lexp -m hydra/launcher=parallel hydra.launcher.jobs_per_device=2 model=lenet,mlp,softmax

Every job is a fresh Python process (started with `spawn`), so a job that dies (the
out-of-memory killer's SIGKILL, a segfault) takes nothing down with it: the jobs beside it go on,
the ones after it still start, its row in the sweep report says `crashed` with the signal, and
the sweep exits non-zero. (Joblib's process pool cannot do this: one dead worker breaks the
whole pool, `TerminatedWorkerError`, and every job still in it is lost.)

`jobs_per_device` jobs run at a time on each device (`devices`: `auto` is every visible GPU,
or the CPU when there is none; or a list of GPU indices); each job sees only its GPU
(`CUDA_VISIBLE_DEVICES`) and gets its share of the CPU's threads (`threads_per_job`, default:
the CPU's cores divided among the jobs that run at once). The longest jobs start first (by
MACs per example x training examples x epochs, `job_cost`), so the sweep ends about when its
longest job does. Each job keeps its own seed, folder and record; with more than one at a time
their progress bars are off (they would draw over each other), and each epoch's line in the log
shows where they are. Before anything runs, every job's folder is made with a `metrics.json`
that says `pending`, so a job that never ran still has a row in the report.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import multiprocessing.connection
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from d2lexp.errors import D2lexpError
from d2lexp.metrics_file import read_metrics, write_metrics

log = logging.getLogger("d2lexp")


@dataclass(frozen=True)
class Slot:
    """Where one job runs: a GPU index (None: the CPU) and the CPU threads it may use."""

    gpu: int | None
    threads: int


def visible_gpus() -> list[int]:
    """The GPUs this machine shows, without initialising CUDA in this process."""
    import torch

    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


def slots(devices: Any, jobs_per_device: int | str, threads_per_job: int | None) -> list[Slot]:
    """One slot per job that may run at once. `jobs_per_device="auto"`: one per GPU, and on a
    CPU-only machine one per core, with one thread each: for the small nets CPUs train, two jobs of
    one thread finished a sweep sooner than one job of two (measured in docs/performance.md)."""
    gpus: list[int | None]
    if devices == "auto":
        gpus = list(visible_gpus()) or [None]
    elif devices == "cpu":
        gpus = [None]
    else:
        gpus = [int(d) for d in devices]
    if jobs_per_device == "auto":
        jobs_per_device = 1 if gpus != [None] else os.cpu_count() or 1
    if not isinstance(jobs_per_device, int) or jobs_per_device < 1:
        raise ValueError(f"hydra.launcher.jobs_per_device must be auto or at least 1, got {jobs_per_device!r}")
    at_once = len(gpus) * jobs_per_device
    threads = threads_per_job or max(1, (os.cpu_count() or 1) // at_once)
    return [Slot(gpu, threads) for _ in range(jobs_per_device) for gpu in gpus]


def job_cost(config: DictConfig) -> float:
    """How long a job should take, relatively: MACs per example x training examples per epoch x
    epochs, all known before it runs (0 where one is not: such jobs start last)."""
    from d2lexp import build
    from d2lexp.measure import model_stats

    try:
        data = build.data(config)
        macs = model_stats(lambda: build.net(config, start=False), data.model_input()).macs
    except Exception:  # a job that cannot be built: it fails by itself when it runs, and its row says why
        return 0.0
    epochs = config.trainer.get("max_epochs") or 0
    return float(macs) * float(data.train_examples() or 0) * float(max(epochs, 0))


def _describe_exit(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        hint = " (the out-of-memory killer sends this)" if name == "SIGKILL" else ""
        return f"its process was killed by {name}{hint} before the job could record its end"
    return f"its process ended with exit code {exitcode} before the job could record its end"


def _terminate_with_parent(parent: int) -> None:
    """Ask the kernel to send this process SIGTERM when its parent dies (Linux); if the parent is
    gone already, stop now."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the parent's own handlers stop its jobs
        pass
    if os.getppid() != parent:
        os._exit(128 + signal.SIGTERM)


def enter_slot(slot: Slot, parent: int) -> None:
    """What a job's (or a search worker's) own process does first: end with the process `parent`
    that started it, see only its slot's GPU, and compute with its slot's threads."""
    _terminate_with_parent(parent)
    if slot.gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(slot.gpu)
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(slot.threads)
    import torch

    torch.set_num_threads(slot.threads)


def _run_in_process(connection: Any, hydra_context: HydraContext, task: tuple[str, str], config: DictConfig,
                    singleton_state: dict[Any, Any], slot: Slot, parent: int) -> None:  # fmt: skip
    """The child process: its device and threads first, then Hydra's own `run_job`. It ends with the
    sweep's process: if that dies (killed, even by SIGKILL), the job gets a SIGTERM and stops as a
    terminated run does (its state saved, its record `interrupted`)."""
    enter_slot(slot, parent)
    import importlib

    module, name = task
    task_function = getattr(importlib.import_module(module), name)
    task_function = getattr(task_function, "__wrapped__", task_function)  # the function under @hydra.main
    # Hydra's singletons from the sweep's process; the resolvers are this process's own (the same ones,
    # registered here; closures do not cross a process boundary).
    from omegaconf.basecontainer import BaseContainer

    from d2lexp.config import register_with_hydra

    register_with_hydra()

    Singleton.set_state({"instances": singleton_state, "omegaconf_resolvers": BaseContainer._resolvers})
    setup_globals()
    result = run_job(hydra_context=hydra_context, task_function=task_function, config=config,
                     job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")  # fmt: skip
    # What the sweep needs back (the JobReturn itself holds configs that do not cross processes).
    failed = result.status == JobStatus.FAILED  # an error outside d2lexp's own handling: keep its text
    try:
        connection.send((not failed, str(result._return_value) if failed else result._return_value))
        connection.close()
    except OSError:  # the sweep's process is gone (BrokenPipeError): the job's metrics.json says how it ended
        pass


@dataclass
class _Job:
    number: int
    overrides: list[str]
    config: DictConfig | None  # None: it could not be composed (`problem` says why)
    folder: Path
    result: JobReturn | None = None
    problem: str | None = None


class _SweepStopped(Exception):
    """A signal (SIGTERM, SIGHUP) asked the sweep's process to stop."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _stop_sweep(signum: int, frame: Any) -> None:
    raise _SweepStopped(signum)


class ParallelLauncher(Launcher):
    """Hydra launcher: each job in its own process, `jobs_per_device` at a time on each device."""

    def __init__(
        self, jobs_per_device: int | str = "auto", devices: Any = "auto", threads_per_job: int | None = None
    ) -> None:
        self.jobs_per_device = jobs_per_device
        self.devices = OmegaConf.to_container(devices) if OmegaConf.is_config(devices) else devices
        self.threads_per_job = threads_per_job
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def _job(self, number: int, overrides: Sequence[str]) -> _Job:
        assert self.config is not None and self.hydra_context is not None
        try:
            config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        except Exception as e:  # a job whose config cannot be composed is a failed row; the others run
            folder = Path(str(self.config.hydra.sweep.dir)) / str(number)
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            return _Job(number, list(overrides), None, folder, problem=f"its config cannot be composed: {reason}")
        with open_dict(config):
            config.hydra.job.id = f"{config.hydra.job.name}_{number}"
            config.hydra.job.num = number
        folder = Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir)
        return _Job(number, list(overrides), config, folder)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        setup_globals()
        available = slots(self.devices, self.jobs_per_device, self.threads_per_job)
        jobs = [self._job(initial_job_idx + i, overrides) for i, overrides in enumerate(job_overrides)]
        for job in jobs:  # every job has a row from the start, even one that never gets to run
            write_metrics(job.folder, {"status": "pending", "job": job.number, "overrides": job.overrides})
            if job.config is not None and len(available) > 1 and job.config.get("callbacks"):
                with open_dict(job.config):
                    job.config.callbacks.progress_bar = None  # side by side, the bars would draw over each other
        for job in jobs:
            if job.problem is not None:
                self._record_failure(job, "failed", job.problem)
        runnable = [job for job in jobs if job.config is not None]
        log.info("Launching %d jobs, %d at a time, each in its own process (%d CPU threads each), the longest first",
                 len(runnable), len(available), available[0].threads)  # fmt: skip
        task = (self.task_function.__module__, self.task_function.__name__)
        context = multiprocessing.get_context("spawn")
        waiting, running = sorted(runnable, key=lambda job: -job_cost(job.config)), {}
        handled = (signal.SIGTERM, signal.SIGHUP)
        previous = {s: signal.signal(s, _stop_sweep) for s in handled}
        try:
            while waiting or running:
                while waiting and available:
                    job, slot = waiting.pop(0), available.pop(0)
                    log.info("\t#%d : %s", job.number, " ".join(filter_overrides(job.overrides)))
                    receiver, sender = context.Pipe(duplex=False)
                    process = context.Process(
                        target=_run_in_process, name=f"d2lexp-job-{job.number}",
                        args=(sender, self.hydra_context, task, job.config, Singleton.get_state()["instances"], slot,
                              os.getpid()),
                    )  # fmt: skip
                    process.start()
                    sender.close()
                    running[process.sentinel] = (job, slot, process, receiver)
                for sentinel in multiprocessing.connection.wait(list(running)):
                    job, slot, process, receiver = running.pop(sentinel)
                    job.result = self._result(job, process, receiver)
                    available.append(slot)
        except (KeyboardInterrupt, _SweepStopped) as e:
            signum = e.signum if isinstance(e, _SweepStopped) else signal.SIGINT
            self._stop(signum, running, waiting, jobs)
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
        return [job.result or self._return(job, math.nan) for job in jobs]

    def _stop(self, signum: int, running: dict[Any, Any], waiting: list[_Job], jobs: list[_Job]) -> None:
        """The sweep was asked to stop: its running jobs stop as terminated runs do (their state saved,
        their records `interrupted`), the waiting ones are `not run` rows, the report is written, and
        the command ends with the signal's exit code."""
        from d2lexp.report import write_report

        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        log.error("The sweep was stopped (%s): stopping its running jobs, which save their state.", name)
        for _, _, process, _ in running.values():
            if signum != signal.SIGINT:  # Ctrl-C reached every process of the terminal already
                process.terminate()
        for job, _, process, receiver in running.values():
            process.join(timeout=120)
            if process.is_alive():
                process.kill()
            job.result = self._result(job, process, receiver)
        for job in waiting:
            self._record_failure(job, "not run", f"the sweep was stopped ({name}) before it started")
        assert self.config is not None
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        try:
            paths = write_report(sweep_dir)
            log.error(
                "Its report, with each job as it stopped: %s. Resume a job with ckpt_path=<its folder>.", paths["md"]
            )
        except (OSError, D2lexpError) as e:
            log.error(
                "Its report could not be written (%s); write it later with: python -m d2lexp.report %s", e, sweep_dir
            )
        raise SystemExit(128 + signum)

    def _result(self, job: _Job, process: Any, receiver: Any) -> JobReturn:
        process.join()
        try:
            sent = receiver.recv() if receiver.poll() else None
        except (EOFError, OSError):
            sent = None
        receiver.close()
        if sent is None:
            self._record_failure(job, "crashed", _describe_exit(process.exitcode))
            return self._return(job, math.nan)
        completed, value = sent
        if not completed:
            self._record_failure(job, "failed", str(value).strip().splitlines()[0] if str(value).strip() else "failed")
            return self._return(job, math.nan)
        return self._return(job, value)

    def _record_failure(self, job: _Job, status: str, reason: str) -> None:
        """Say in the job's own metrics.json what became of it, where it could not say so itself (a
        job that recorded how it ended, e.g. `interrupted` by a SIGTERM, keeps its own word)."""
        try:
            record = read_metrics(job.folder)
            record = record if isinstance(record, dict) else {}
        except (OSError, ValueError):
            record = {}
        if record.get("status") in ("done", "failed", "diverged", "interrupted") and status == "crashed":
            log.error(
                "Job %d ended %s: %s.", job.number, record["status"], record.get("error") or "see its metrics.json"
            )
            return
        record.update(status=status, error=reason)
        log.error("Job %d %s: %s.", job.number, status, reason)
        try:
            write_metrics(job.folder, record)
        except OSError as e:
            log.error("Could not record this in %s/metrics.json: %s", job.folder, e.strerror or e)

    def _return(self, job: _Job, value: Any) -> JobReturn:
        """A finished job as Hydra's sweepers take it. A job that failed returns NaN, as d2lexp's failed
        jobs do, so the sweep goes on to its report; its metrics.json says what happened."""
        result = JobReturn(overrides=job.overrides, cfg=job.config, hydra_cfg=job.config,
                           working_dir=str(job.folder), task_name=str(job.config.hydra.job.name))  # fmt: skip
        result.status = JobStatus.COMPLETED
        result.return_value = value
        return result
