"""Sweeps on a Slurm cluster: `hydra/launcher=slurm` (GPUs) or `hydra/launcher=slurm_cpu`.

    python -m d2lexp -m hydra/launcher=slurm_cpu hydra.launcher.partition=cpu seed=1,2,3

hydra-submitit-launcher's launcher (pip install -e '.[cluster]'), with what d2lexp's sweeps need:

- **Every job has a row.** Before anything is submitted, each job's folder gets a metrics.json
  that says `pending`. The sweep waits for every job however it ends: a job cancelled
  (`scancel`), timed out, out of memory or on a failed node ends without a result, and its row
  says so in its own metrics.json (`interrupted` or `crashed`, the Slurm state in the reason)
  (the plugin's launcher stops the sweep before its report at such a job, or, on a cluster
  without accounting, waits for it forever). The state comes from Slurm's controller (`squeue`),
  so no accounting database is needed (submitit alone asks `sacct`).
- **Time limits requeue, and resume exactly.** Slurm sends USR2 `signal_delay_s` before the
  time limit; submitit re-pickles the job and requeues it (`scontrol requeue`, at most
  `max_num_timeout` times). Slurm then sends SIGTERM, which a d2lexp run answers at the end of
  its current step by writing `last.ckpt`; the requeued job reruns the same Hydra job, in the
  same folder, and goes on from there (`ckpt_path=auto`, set for a job whose folder has a
  `last.ckpt`: a fresh sweep's job folders have none). A preemption or an `scontrol requeue`
  takes the same SIGTERM path. Submitit's handler would also exit at once, wherever the run
  is, even half-way through an optimizer step, and the checkpoint saved on that exit would not
  resume exactly: that exit is left out (`_requeue_then_stop_at_the_step_end`).
- **DDP across a job's tasks** (`tasks_per_node` > 1, `trainer=slurm` or `slurm_cpu`): Slurm starts
  every process; the first writes the run's folder, the others log to files of their own in it
  (`train_ddp_process_1.log`, as Lightning's own DDP processes do) and write no `.hydra/`.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides, run_job, setup_globals
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as SubmititSlurmLauncher
from omegaconf import DictConfig, OmegaConf, open_dict

from d2lexp.metrics_file import read_metrics, write_metrics

log = logging.getLogger("d2lexp")

# Slurm's states of a job that has ended for good. PREEMPTED and REQUEUED are not among them:
# a preempted job is requeued (PreemptMode=REQUEUE), and its row waits for its rerun.
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE"}
# Of those, the ones that stopped a job from outside: its state is whole and it can be resumed.
STOPPED = {"CANCELLED", "TIMEOUT", "DEADLINE"}
# How long a job that Slurm says has ended may take to show its result file (a shared file
# system shows files late); submitit waits as long.
RESULT_GRACE_S = 15


@dataclass
class _Job:
    number: int
    overrides: list[str]
    config: DictConfig
    folder: Path
    submitted: Any = None  # the submitit Job
    ended_at: float | None = None  # when Slurm first said it ended without a result on disk
    result: JobReturn | None = None


def slurm_states(job_ids: Sequence[str]) -> dict[str, str] | None:
    """Each job's state as Slurm's controller has it (`RUNNING`, `CANCELLED`, ...), for the jobs it
    still knows (it forgets an ended job after MinJobAge, 5 minutes by default); None if the
    controller did not answer."""
    if not job_ids:
        return {}
    try:
        listed = subprocess.run(
            ["squeue", "--noheader", "--array", "--states=all", "--format=%i %T", f"--jobs={','.join(job_ids)}"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return None
    # It lists the jobs it knows, and exits 1 saying "Invalid job id" if it knows none of them.
    if listed.returncode != 0 and "Invalid job id" not in listed.stderr:
        return None
    states = dict(line.split() for line in listed.stdout.splitlines() if len(line.split()) == 2)
    return {job: states[job] for job in job_ids if job in states}


def _has_result(job: Any) -> bool:
    """Whether every task of the submitit job has written its result (a value, or the error it raised)."""
    return all(job.task(i).paths.result_pickle.exists() for i in range(job.num_tasks))


def _ended_without_result(state: str) -> tuple[str, str]:
    """The status and reason of a job Slurm ended before it could record its end."""
    reasons = {
        "CANCELLED": "cancelled in Slurm (scancel)",
        "TIMEOUT": "stopped at its Slurm time limit and not requeued (hydra.launcher.timeout_min, max_num_timeout)",
        "DEADLINE": "stopped at its Slurm deadline",
        "OUT_OF_MEMORY": "ran out of memory (hydra.launcher.mem_gb)",
        "NODE_FAIL": "its node failed",
        "BOOT_FAIL": "its node failed to boot",
    }
    reason = reasons.get(state, f"its process ended ({state}) before the job could record its end")
    return ("interrupted" if state in STOPPED else "crashed"), reason


def _requeue_then_stop_at_the_step_end() -> None:
    """Keep submitit's answer to Slurm's warning signal (re-pickle the job, requeue it) but not its
    immediate exit: raised wherever the run is, half-way through an optimizer step say, it would
    save a checkpoint that does not resume exactly. The requeue sends SIGTERM, which the run
    answers where its step ends. Not requeued (it timed out `max_num_timeout` times, or
    `scontrol` failed): the run goes on until the time limit's SIGTERM, which stops it the same
    way, resumable by hand; an error raised here would stop it mid-step."""
    import submitit

    warning_signal = submitit.JobEnvironment._usr_sig()  # USR2 unless SUBMITIT_PREEMPT_SIGNAL says otherwise
    submitits_handler = signal.getsignal(warning_signal)
    if not callable(submitits_handler):
        return

    requeued = "Requeued: the run stops at the end of this step, and its requeued job goes on from there."

    def requeue(signum: int, frame: Any) -> None:
        try:
            submitits_handler(signum, frame)
        except SystemExit:
            log.warning(requeued)
        except subprocess.CalledProcessError as e:
            if e.returncode == -signal.SIGTERM:  # Slurm stopping this job for the requeue reached scontrol first
                log.warning(requeued)
            else:
                log.warning("The job was not requeued (%s); the run goes on until the time limit stops it.", e)
        except Exception as e:
            log.warning("The job was not requeued (%s); the run goes on until the time limit stops it.", e)

    signal.signal(warning_signal, requeue)


def _compute_with_the_cores_given() -> None:
    """As many compute threads as the task has cores (hydra.launcher.cpus_per_task). Where Slurm
    does not bind tasks to cores (TaskPlugin=task/none, as on scripts/slurm_local.sh's cluster),
    PyTorch would take every core of the node, and the jobs beside it would fight over them (two
    LeNet jobs of 2 threads each on 2 cores: 4x the fit time, docs/slurm.md). The user's own
    OMP_NUM_THREADS wins."""
    cores = os.environ.get("SLURM_CPUS_PER_TASK")
    if cores and not os.environ.get("OMP_NUM_THREADS"):
        import torch

        for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # for the processes it starts, too
            os.environ[variable] = cores
        torch.set_num_threads(int(cores))


class SlurmLauncher(SubmititSlurmLauncher):
    """Hydra launcher: each job of a sweep a Slurm job (a task of a job array), through submitit."""

    def __call__(self, sweep_overrides: list[str], job_dir_key: str, job_num: int, job_id: str,
                 singleton_state: dict[type, Singleton]) -> JobReturn:  # fmt: skip
        """One job of the sweep, in each of its Slurm tasks (the plugin's, with DDP's other
        processes given logs of their own, and submitit's requeue kept without its exit)."""
        import submitit
        from submitit.core.logger import get_logger

        submitit_log = get_logger()
        assert self.hydra_context is not None and self.config is not None and self.task_function is not None
        _requeue_then_stop_at_the_step_end()
        _compute_with_the_cores_given()
        Singleton.set_state(singleton_state)
        setup_globals()
        config = self.hydra_context.config_loader.load_sweep_config(self.config, sweep_overrides)
        environment = submitit.JobEnvironment()
        with open_dict(config.hydra):
            config.hydra.job.id = environment.job_id
            config.hydra.job.num = job_num
            if environment.global_rank > 0:  # named as Lightning names its own DDP processes' logs
                config.hydra.job.name = f"{config.hydra.job.name}_ddp_process_{environment.global_rank}"
                config.hydra.output_subdir = None  # the first process writes .hydra/
        folder = Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir)
        if (folder / "checkpoints" / "last.ckpt").is_file():
            # This job ran before and was requeued: it goes on from its own state, whatever it started from.
            submitit_log.info(f"Requeued: resuming from {folder / 'checkpoints' / 'last.ckpt'}")  # in the job's log
            config.ckpt_path = "auto"
        return run_job(hydra_context=self.hydra_context, task_function=self.task_function, config=config,
                       job_dir_key=job_dir_key, job_subdir_key="hydra.sweep.subdir")  # fmt: skip

    def _executor(self) -> Any:
        """The submitit executor with this config's parameters, as the plugin's launcher builds it."""
        import submitit

        params = dict(self.params)
        executor = submitit.AutoExecutor(
            cluster=self._EXECUTOR, folder=params.pop("submitit_folder"),
            **{f"{self._EXECUTOR}_max_num_timeout": params.pop("max_num_timeout")},
        )  # fmt: skip
        shared = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in shared else f"{self._EXECUTOR}_{k}": v for k, v in params.items()})
        return executor

    def _job(self, number: int, overrides: Sequence[str]) -> _Job:
        assert self.config is not None and self.hydra_context is not None
        config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(config):
            config.hydra.job.num = number
        return _Job(number, list(overrides), config, Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir))

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.config is not None
        executor = self._executor()
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        jobs = [self._job(initial_job_idx + i, overrides) for i, overrides in enumerate(job_overrides)]
        for job in jobs:  # every job has a row from the start, even one that never gets to run
            write_metrics(job.folder, {"status": "pending", "job": job.number, "overrides": job.overrides})
        arguments = [(job.overrides, "hydra.sweep.dir", job.number, f"job_id_for_{job.number}", Singleton.get_state())
                     for job in jobs]  # fmt: skip
        for job, submitted in zip(jobs, executor.map_array(self, *zip(*arguments))):
            job.submitted = submitted
            log.info(
                "\t#%d : %s (Slurm job %s)", job.number, " ".join(filter_overrides(job.overrides)), submitted.job_id
            )
        log.info("Submitted %d jobs to Slurm; their logs: %s", len(jobs), self.params["submitit_folder"])
        try:
            self._wait(jobs)
        except KeyboardInterrupt:
            log.error("The sweep stopped waiting; its jobs go on in Slurm (scancel to stop them). Their rows: "
                      "python -m d2lexp.report %s", sweep_dir)  # fmt: skip
            raise
        return [job.result for job in jobs]  # type: ignore[misc]

    def _wait(self, jobs: list[_Job]) -> None:
        """Until every job has ended: with its result (looked for every second), or without one
        (Slurm's controller asked at growing intervals, from 2 s to 30 s: a long sweep asks rarely)."""
        waiting, interval, asked = list(jobs), 2.0, time.time()
        while waiting:
            for job in [job for job in waiting if _has_result(job.submitted)]:
                job.result = self._result(job)
                waiting.remove(job)
            if waiting and time.time() - asked >= interval:
                self._record_the_ended(waiting)
                interval, asked = min(interval * 1.5, 30.0), time.time()
                if any(job.ended_at for job in waiting):  # one ended: its result's grace is what to wait
                    interval = min(interval, RESULT_GRACE_S)
            if waiting:
                time.sleep(1.0)

    def _record_the_ended(self, waiting: list[_Job]) -> None:
        """Take out of `waiting` the jobs Slurm says have ended without a result, recording how."""
        states = slurm_states([job.submitted.job_id for job in waiting])
        if states is None:  # the controller did not answer: ask again later
            return
        for job in list(waiting):
            # Slurm's controller forgets an ended job after a while: then accounting (sacct) may know.
            state = (states.get(job.submitted.job_id) or job.submitted.state).split()[0]  # sacct: "CANCELLED by 0"
            if state not in ENDED and state != "UNKNOWN":
                job.ended_at = None  # running again (requeued after it ended)
                continue
            # Ended, or forgotten by both (no accounting): its result may still be on its way.
            job.ended_at = job.ended_at or time.time()
            if time.time() - job.ended_at >= RESULT_GRACE_S and not _has_result(job.submitted):
                job.result = self._record_end(job, state)
                waiting.remove(job)

    def _result(self, job: _Job) -> JobReturn:
        """A job with a result: the first task's (the others' are the same run's)."""
        try:
            result = job.submitted.results()[0]
        except Exception as e:  # the job raised outside d2lexp's own handling (Hydra's set-up, say)
            return self._failed(job, "failed", str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
        if result.status == JobStatus.FAILED:  # Hydra's run_job caught an error: keep its text, go on
            return self._failed(job, "failed", str(result._return_value).strip().splitlines()[0])
        return result

    def _record_end(self, job: _Job, state: str) -> JobReturn:
        status, reason = _ended_without_result(state)
        return self._failed(job, status, f"{reason}; Slurm job {job.submitted.job_id}, {state}")

    def _failed(self, job: _Job, status: str, reason: str) -> JobReturn:
        """Say in the job's own metrics.json what became of it (it could not say so itself), and
        return NaN for it, as d2lexp's failed jobs do: the sweep goes on to its report."""
        try:
            record = read_metrics(job.folder)
            record = record if isinstance(record, dict) else {}
        except (OSError, ValueError):
            record = {}
        if record.get("status") == "pending" and status == "interrupted":
            status = "not run"  # stopped before it started
        if record.get("status") in (None, "pending", "running", "interrupted"):  # not a final word of the run's own
            record.update(status=status, error=reason)
            try:
                write_metrics(job.folder, record)
            except OSError as e:
                log.error("Could not record this in %s/metrics.json: %s", job.folder, e.strerror or e)
        log.error("Job %d %s: %s.", job.number, record.get("status", status), reason)
        result = JobReturn(overrides=job.overrides, cfg=job.config, hydra_cfg=job.config,
                           working_dir=str(job.folder), task_name=str(job.config.hydra.job.name))  # fmt: skip
        result.status = JobStatus.COMPLETED
        result.return_value = math.nan
        return result
