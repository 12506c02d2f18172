"""RunRecord: the record of one run, kept in its metrics.json from the start ("running") to how it
ended (done, diverged, interrupted, failed: with the reason), and shown through `outputs`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from d2lexp.errors import RunInterrupted, TrainingDiverged
from d2lexp.metrics_file import METRICS_FILE, write_metrics
from d2lexp.record.interrupts import Interrupts
from d2lexp.record.metrics import collapse, time_to_accuracy, to_float
from d2lexp.record.outputs import Console, Curves, Loggers
from d2lexp.run_folder import is_unwritable, run_stopped_unwritable

if TYPE_CHECKING:
    from d2lexp.build import Run

log = logging.getLogger("d2lexp")


def _metric_values(trainer: Any) -> dict[str, float]:
    """The trainer's epoch-level metrics as numbers (one device read each)."""
    values = ((k, to_float(v)) for k, v in trainer.callback_metrics.items() if not k.endswith("_step"))
    return {k: v for k, v in values if v is not None}


def slurm_job() -> str | None:
    """The Slurm job this process runs in, as squeue and scancel name it: `<array job>_<task>` for a
    task of a job array (a sweep's jobs), else its job id; None outside Slurm."""
    array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array_job}_{task}" if array_job and task else os.environ.get("SLURM_JOB_ID")


def _existing(path: str | None) -> str | None:
    """A checkpoint's path, if the file is still there (a user may have deleted it mid-run)."""
    return path if path and Path(path).is_file() else None


class RunRecord:
    """The record of one run in `folder`, and its metrics.json. Written by the first process only
    in a distributed run; every other view of the run (the log's lines, curves.png, the loggers'
    entries) is made from it. `settings`: the run's settings for the loggers (outputs.hparams_of)."""

    def __init__(self, folder: str | Path, choices: dict[str, str], seed: Any, max_epochs: Any,
                 settings: dict[str, Any]) -> None:  # fmt: skip
        from lightning.pytorch.utilities import rank_zero_only

        self.output_dir = Path(folder)
        self.model_choice = choices.get("model")
        self.writes = rank_zero_only.rank == 0
        self.interrupts = Interrupts()
        self._epoch_clock = time.perf_counter()  # when the epoch now running started
        self._console = Console(max_epochs)
        self._curves = Curves(self.output_dir)
        self._loggers = Loggers(settings, self.output_dir)
        self.data: dict[str, Any] = {
            "status": "running",
            "output_dir": str(self.output_dir),
            "started_at": time.time(),
            "pid": os.getpid(),
            "experiment": choices.get("experiment"),
            "seed": seed,
        }
        if job := slurm_job():  # which Slurm job ran it (a requeued job keeps its id): for squeue, sacct, its logs
            self.data["slurm_job"] = job

    def save(self) -> OSError | None:
        """Write metrics.json; a folder that no longer takes writes is returned, not raised, so
        the caller can say what stopped the run first."""
        if self.writes:
            try:
                write_metrics(self.output_dir, self.data)
            except OSError as e:
                return e
        return None

    def started(self, run: Run) -> None:
        """What the run is, before it trains: metrics.json says "running" from here on, so a run
        killed from now on shows as interrupted in reports."""
        import torch

        self.data.update(
            model=self.model_choice or type(run.net).__name__.lower(),
            params=sum(p.numel() for p in run.net.parameters()),
            macs_per_example=run.macs_per_example,
            threads=torch.get_num_threads(),  # the CPU threads it computes with
        )
        if run.resume_from:
            self.data["resumed_from"] = run.resume_from
        self.save()
        self._epoch_clock = time.perf_counter()

    def epoch_ended(self, row: dict[str, float], history: dict[str, list]) -> None:
        """Each epoch, as it ends: its line in the log, metrics.json's history brought up to date,
        curves.png redrawn."""
        now = time.perf_counter()
        seconds, self._epoch_clock = now - self._epoch_clock, now
        self.data["history"] = history
        self.data["time_to_accuracy"] = time_to_accuracy(history)
        self._console.epoch(row, seconds)
        self.save()
        if self.writes:
            self._curves.epoch(history, self.data.get("model", ""))

    def fitted(self, run: Run, seconds: float) -> None:
        """What fitting left: the last epoch's metrics (before a test pass replaces the trainer's),
        taken from the run's history, so a resumed run that had nothing left to train keeps them."""
        from d2lexp.callbacks.history import EpochHistory

        history = next((c for c in run.trainer.callbacks if isinstance(c, EpochHistory)), None)
        last = dict(history.epochs[-1]) if history is not None and history.epochs else {}
        for key in ("epoch", "seconds"):
            last.pop(key, None)
        self.data["fit_seconds"] = seconds + (history.seconds_before_resume if history is not None else 0.0)
        self.data.update(sorted(last.items()))
        self.data.update(sorted(_metric_values(run.trainer).items()))
        if run.resume_from and history is not None and history.epochs_started_here == 0:
            self._throughput_from_history(history.as_columns())
            if self.writes:
                log.info(
                    "The run had already trained its %d epochs: nothing was left to train, and its record is rebuilt "
                    "from its checkpoint%s. Give a larger trainer.max_epochs to train on.",
                    len(history.epochs), " and a new test pass" if run.tests else "",
                )  # fmt: skip

    def _throughput_from_history(self, history: dict[str, list]) -> None:
        """The run's training rate from its epochs' rates (as Throughput computes it: the first epoch,
        warm-up, left out when there are more), for a resumed run that trained no epoch itself."""
        for unit in ("examples", "tokens"):
            rates = [r for r in history.get(f"train/{unit}_per_second", []) if isinstance(r, (int, float)) and r > 0]
            if rates:
                steady = rates[1:] or rates
                self.data[f"train_{unit}_per_second"] = len(steady) / sum(1 / r for r in steady)

    def tested(self, run: Run) -> None:
        self.data.update(sorted(_metric_values(run.trainer).items()))

    def finish(self, run: Run) -> None:
        """The end of a run that trained: checkpoints, what the record callbacks measured,
        whether it collapsed, the outputs; a diverged run raises TrainingDiverged."""
        from d2lexp.callbacks.base import RecordingCallback  # here: programs that read records need no Lightning

        trainer = run.trainer

        def checkpoint(keeps: Any) -> str | None:  # the file of the first checkpoint callback that `keeps`
            return _existing(next((c.best_model_path for c in trainer.checkpoint_callbacks if keeps(c)), None))

        self.data.update(
            status="diverged" if run.task.diverged else "done",
            epochs=trainer.current_epoch,
            global_step=trainer.global_step,
            world_size=trainer.world_size,
            best_checkpoint=checkpoint(lambda c: c.monitor is not None),  # the best epoch by the objective
            last_checkpoint=checkpoint(lambda c: c.filename == "last"),  # the newest state
        )
        for callback in trainer.callbacks:
            if isinstance(callback, RecordingCallback):  # what one measured; a value it has none of stays as it was
                self.data.update(
                    {k: v for k, v in callback.record().items() if v is not None or self.data.get(k) is None}
                )
        self.data["collapsed"] = collapse(self.data)
        self.data["time_to_accuracy"] = time_to_accuracy(self.data.get("history") or {})
        if self.writes:
            self._curves.finished(self.data, trainer)
            self._console.finished(self.data)
        self._loggers.finished(self.data, trainer)
        if run.task.diverged:
            self.data["error"] = run.task.diverged
            raise TrainingDiverged(f"{self.data['model']} diverged: {run.task.diverged}")

    def interrupted_message(self) -> str:
        """The paragraph for a run stopped before its end (Ctrl-C, a scheduler's SIGTERM)."""
        last = self.output_dir / "checkpoints" / "last.ckpt"
        kept = f" Its state is in {last}." if last.is_file() else ""
        return (
            f"The run was stopped ({self.data.get('error', 'interrupted')}).{kept} Resume it where it stopped with "
            f"ckpt_path={self.output_dir} (its own settings are used), or run the same command with ckpt_path=auto."
        )

    @contextmanager
    def until_done(self) -> Iterator[None]:
        """Around a run: however it ends, metrics.json says so (done, diverged, interrupted,
        failed, with the reason), and a folder that stopped taking writes ends in one paragraph.
        Interrupts (d2lexp.record.interrupts) are reported as what they were."""
        try:
            with self.interrupts.watching():
                yield
        except BaseException as e:
            self._curves.close()
            status, error = "failed", str(e) or type(e).__name__
            stopped = self.interrupts.how_it_stopped(e)
            if isinstance(e, TrainingDiverged):
                status = "diverged"
            elif stopped is not None:
                status, error = "interrupted", stopped[0]
            self.data.update(status=status, error=self.data.get("error") or error)
            unrecorded = self.save()
            if is_unwritable(e):
                raise run_stopped_unwritable(self.output_dir, e, recorded=unrecorded is None) from None
            if unrecorded is not None:
                log.error(
                    "Could not record the run's end in %s/%s: %s", self.output_dir, METRICS_FILE, unrecorded.strerror
                )
            if stopped is not None:
                raise RunInterrupted(self.interrupted_message(), stopped[1]) from None
            raise
        self.data["finished_at"] = time.time()
        unrecorded = self.save()
        if unrecorded is not None:
            raise run_stopped_unwritable(self.output_dir, unrecorded, recorded=False)
        if self.writes:
            self._console.ended(self.data, self.output_dir)
