"""Where a search's work runs: processes on this machine (`search.launcher=local`), or Slurm jobs
(`search.launcher=slurm`). Both take calls (a module-level function and its plain arguments), run
at most `search.workers` of them at once, and give back each one's result (a dict), or what became
of it: `crashed` (its process was killed), `failed` (it raised), `interrupted` (Ctrl-C, SIGTERM)."""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from d2lexp.errors import RunInterrupted

log = logging.getLogger("d2lexp")

Call = tuple[Callable[..., dict[str, Any]], tuple[Any, ...]]


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


def _call(function: Callable[..., dict[str, Any]], arguments: tuple[Any, ...]) -> dict[str, Any]:
    try:
        return function(*arguments)
    except RunInterrupted as e:
        return {"status": "interrupted", "error": _first_line(e)}
    except KeyboardInterrupt:
        return {"status": "interrupted", "error": "Ctrl-C"}
    except Exception as e:  # noqa: BLE001  (what became of the call is its result)
        log.exception("%s failed", getattr(function, "__name__", "the call"))
        return {"status": "failed", "error": _first_line(e)}


def _call_in_process(sender: Any, function: Any, arguments: tuple[Any, ...], slot: Any, parent: int) -> None:
    """A local worker's process: its device and threads first (as the parallel launcher's jobs)."""
    from d2lexp.launcher import enter_slot
    from d2lexp.search.trial import log_as_worker

    enter_slot(slot, parent)
    log_as_worker()
    result = _call(function, arguments)
    try:
        sender.send(result)
        sender.close()
    except OSError:  # the search's process is gone
        pass


class _Stopped(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _stop(signum: int, frame: Any) -> None:
    raise _Stopped(signum)


class LocalWorkers:
    """Each call in a fresh process (spawned: nothing of the search's process is shared), `workers`
    at a time, each with its share of the CPU's threads (`threads`; default: the cores divided among
    the workers) or, on a machine with GPUs, one GPU of its own in turn. A process killed (the
    out-of-memory killer) is that call's result, `crashed`; the others go on."""

    def __init__(self, workers: int, threads: int | None = None) -> None:
        from d2lexp.launcher import slots, visible_gpus

        gpus = len(visible_gpus())
        self.slots = slots("auto", -(-workers // gpus) if gpus else workers, threads)[:workers]

    def run(self, calls: Sequence[Call]) -> list[dict[str, Any]]:
        from d2lexp.launcher import _describe_exit

        context = multiprocessing.get_context("spawn")
        results: list[dict[str, Any] | None] = [None] * len(calls)
        waiting, running, free = list(enumerate(calls)), {}, list(self.slots)
        previous = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGHUP)}
        try:
            while waiting or running:
                while waiting and free:
                    (index, (function, arguments)), slot = waiting.pop(0), free.pop(0)
                    receiver, sender = context.Pipe(duplex=False)
                    process = context.Process(target=_call_in_process, args=(sender, function, arguments, slot, os.getpid()),
                                              name=f"d2lexp-search-{index}")  # fmt: skip
                    process.start()
                    sender.close()
                    running[process.sentinel] = (index, slot, process, receiver)
                for sentinel in multiprocessing.connection.wait(list(running)):
                    index, slot, process, receiver = running.pop(sentinel)
                    results[index] = self._result(process, receiver, _describe_exit)
                    free.append(slot)
        except (KeyboardInterrupt, _Stopped) as e:
            signum = e.signum if isinstance(e, _Stopped) else signal.SIGINT
            for _, _, process, _ in running.values():
                if signum != signal.SIGINT:  # Ctrl-C reached every process of the terminal already
                    process.terminate()
            for _, _, process, _ in running.values():  # each stops as a terminated run does: its state saved
                process.join(timeout=120)
                if process.is_alive():
                    process.kill()
            raise RunInterrupted(f"The search was stopped ({'Ctrl-C' if signum == signal.SIGINT else signal.Signals(signum).name}).",
                                 128 + signum) from None  # fmt: skip
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
        return [r or {"status": "failed", "error": "no result"} for r in results]

    @staticmethod
    def _result(process: Any, receiver: Any, describe: Callable[[int | None], str]) -> dict[str, Any]:
        process.join()
        try:
            sent = receiver.recv() if receiver.poll() else None
        except (EOFError, OSError):
            sent = None
        receiver.close()
        return sent if isinstance(sent, dict) else {"status": "crashed", "error": describe(process.exitcode)}


def _call_in_slurm_job(function: Callable[..., dict[str, Any]], arguments: tuple[Any, ...]) -> dict[str, Any]:
    """A Slurm worker: with as many threads as the job has cores (d2lexp.slurm)."""
    from d2lexp.search.trial import log_as_worker
    from d2lexp.slurm import _compute_with_the_cores_given

    _compute_with_the_cores_given()
    log_as_worker()
    return _call(function, arguments)


class SlurmWorkers:
    """Each call a Slurm job (submitit; pip install -e '.[cluster]'), all submitted at once (Slurm
    runs as many at a time as the cluster gives: `search.workers` jobs are submitted for a search's
    workers), waited for through Slurm's controller as d2lexp's Slurm launcher does: a job cancelled
    or killed without a result is `interrupted` or `crashed`. Workers on other machines share the
    study through its storage: the journal file in the search's folder on a shared file system, or
    an RDB (search.storage)."""

    def __init__(self, folder: Path, settings: Any) -> None:
        self.folder, self.settings = folder, settings

    def _executor(self) -> Any:
        import submitit

        executor = submitit.AutoExecutor(folder=str(self.folder / ".submitit" / "%j"), cluster="slurm")
        s = self.settings
        parameters = {"timeout_min": s.timeout_min, "cpus_per_task": s.cpus_per_task, "mem_gb": s.mem_gb,
                      "nodes": 1, "tasks_per_node": 1, "name": "d2lexp-search"}  # fmt: skip
        if s.gpus_per_node:
            parameters["gpus_per_node"] = s.gpus_per_node
        if s.partition:
            parameters["slurm_partition"] = s.partition
        if s.account:
            parameters["slurm_account"] = s.account
        executor.update_parameters(**parameters)
        return executor

    def run(self, calls: Sequence[Call]) -> list[dict[str, Any]]:
        from d2lexp.slurm import RESULT_GRACE_S, _ended_without_result, _has_result, slurm_states

        executor = self._executor()
        jobs = [executor.submit(_call_in_slurm_job, function, arguments) for function, arguments in calls]
        log.info("Submitted %d Slurm jobs (%s); their logs: %s", len(jobs), ", ".join(j.job_id for j in jobs),
                 self.folder / ".submitit")  # fmt: skip
        results: dict[int, dict[str, Any]] = {}
        ended_at: dict[int, float] = {}
        interval, asked = 2.0, time.time()
        try:
            while len(results) < len(jobs):
                for index, job in enumerate(jobs):
                    if index not in results and _has_result(job):
                        try:
                            results[index] = job.result()
                        except Exception as e:  # noqa: BLE001  (submitit's own failure to run it)
                            results[index] = {"status": "failed", "error": _first_line(e)}
                if len(results) < len(jobs) and time.time() - asked >= interval:
                    states = slurm_states([jobs[i].job_id for i in range(len(jobs)) if i not in results]) or {}
                    for index, job in enumerate(jobs):
                        state = states.get(job.job_id, "").split(" ")[0]
                        if index in results or (state and state not in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT",
                                                                        "OUT_OF_MEMORY", "NODE_FAIL", "UNKNOWN")):  # fmt: skip
                            continue
                        ended_at.setdefault(index, time.time())
                        if time.time() - ended_at[index] >= RESULT_GRACE_S and not _has_result(job):
                            status, reason = _ended_without_result(state or "UNKNOWN")
                            results[index] = {"status": status, "error": f"{reason}; Slurm job {job.job_id}"}
                    interval, asked = min(interval * 1.5, 30.0), time.time()
                if len(results) < len(jobs):
                    time.sleep(1.0)
        except KeyboardInterrupt:
            log.error("The search stopped waiting; its jobs go on in Slurm (scancel %s to stop them).",
                      " ".join(j.job_id for j in jobs))  # fmt: skip
            raise
        return [results[i] for i in range(len(jobs))]
