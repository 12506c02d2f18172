"""A run's record: what it leaves behind for people and programs, assembled here and nowhere
else. metrics.json (kept current from the start: "running", then how it ended), the TensorBoard
HParams entry, and the one-line summary; `HEADLINE` lists the metrics all three (and the sweep
report) show.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from d2lexp.errors import RunInterrupted, TrainingDiverged
from d2lexp.run_folder import is_unwritable, run_stopped_unwritable

if TYPE_CHECKING:
    from d2lexp.build import Run

log = logging.getLogger("d2lexp")

METRICS_FILE = "metrics.json"
CURVES_FILE = "curves.png"


@dataclass(frozen=True)
class Headline:
    """A metric every view of a run shows, where the run has it."""

    key: str  # in metrics.json (and TensorBoard)
    label: str  # in the summary line and the sweep report's column
    fmt: str  # in the sweep report


HEADLINE = (
    Headline("train/loss", "train loss", "{:.4f}"),
    Headline("train/acc", "train acc", "{:.4f}"),
    Headline("val/acc_best", "best val acc", "{:.4f}"),
    Headline("test/acc", "test acc", "{:.4f}"),
    Headline("train/ppl", "perplexity", "{:.3f}"),
    Headline("val/ppl", "val perplexity", "{:.3f}"),
    Headline("param/w_error", "w error", "{:.2g}"),
    Headline("param/b_error", "b error", "{:.2g}"),
)
THROUGHPUT = ("train_examples_per_second", "train_tokens_per_second")
# Time to accuracy: the first epoch whose validation accuracy reached each of these, and when.
ACCURACY_MARKS = (0.85, 0.90, 0.92, 0.94)

# Config values that describe a run in the HParams tab (flattened dotted keys).
_HPARAM_GROUPS = ("model", "init", "data", "optimizer", "scheduler", "task")
_HPARAM_TRAINER_KEYS = ("max_epochs", "precision", "accelerator", "devices", "gradient_clip_val")
_HPARAM_SKIP = ("_target_", "_partial_", "data_dir", "seed", "download")


def to_float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _flatten(prefix: str, node: Any, out: dict[str, Any]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key not in _HPARAM_SKIP:
                _flatten(f"{prefix}.{key}" if prefix else str(key), value, out)
    elif isinstance(node, (bool, int, float, str)) or node is None:
        out[prefix] = "null" if node is None else node
    else:
        out[prefix] = str(node)


def hparams_of(cfg: DictConfig, choices: dict[str, str]) -> dict[str, Any]:
    """A flat dict of the run's defining settings: group choices, then their values."""
    container = OmegaConf.to_container(cfg, resolve=True)
    out: dict[str, Any] = {f"choice.{k}": v for k, v in choices.items() if v is not None}
    for group in _HPARAM_GROUPS:
        node = container.get(group)
        if node is not None:
            target = node.get("_target_") if isinstance(node, dict) else None
            if target:
                out[f"{group}.class"] = target.rsplit(".", 1)[-1]
            _flatten(group, node, out)
    for key in _HPARAM_TRAINER_KEYS:
        _flatten(f"trainer.{key}", container.get("trainer", {}).get(key), out)
    out["seed"] = container.get("seed")
    return out


def slurm_job() -> str | None:
    """The Slurm job this process runs in, as squeue and scancel name it: `<array job>_<task>` for a
    task of a job array (a sweep's jobs), else its job id; None outside Slurm."""
    array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array_job}_{task}" if array_job and task else os.environ.get("SLURM_JOB_ID")


def write_metrics(output_dir: str | Path, record: dict[str, Any]) -> Path:
    """Write `metrics.json` atomically (a crash never leaves half a file)."""
    path = Path(output_dir) / METRICS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    try:
        tmp.write_text(strict_json_text(record))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # no half-written leftovers, and a full disk gets its space back
        raise
    return path


def strict_json(record: dict[str, Any]) -> dict[str, Any]:
    """The record as strict JSON allows it: every non-finite number (NaN, infinity) becomes null,
    and `non_finite` says which were, e.g. {"train/loss": "inf", "history.val/loss[3]": "nan"}."""
    found: dict[str, str] = {}

    def clean(value: Any, where: str) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            found[where] = str(value)
            return None
        if isinstance(value, dict):
            return {k: clean(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return value

    cleaned = clean({k: v for k, v in record.items() if k != "non_finite"}, "")
    cleaned["non_finite"] = found or None
    return cleaned


def strict_json_text(record: dict[str, Any]) -> str:
    """The record as strict JSON text (see `strict_json`)."""
    return json.dumps(strict_json(record), indent=2, allow_nan=False) + "\n"


def read_metrics(run_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / METRICS_FILE).read_text())


def collapse(record: dict[str, Any]) -> dict[str, Any] | None:
    """A classifier whose validation accuracy ended under half its best had learned, then lost
    it: its net collapsed (dead ReLUs, say: NiN with the book's recipe, now and then). Returns the
    best and final accuracies and the best epoch, or None."""
    final, best = to_float(record.get("val/acc")), to_float(record.get("val/acc_best"))
    if final is None or best is None or not final < best / 2:
        return None
    history = record.get("history") or {}
    accuracies, epochs = history.get("val/acc") or [], history.get("epoch") or []
    best_epoch = next((e for e, a in zip(epochs, accuracies) if to_float(a) is not None and a >= best), None)
    return {"best": best, "best_epoch": best_epoch, "final": final}


def time_to_accuracy(history: dict[str, list]) -> dict[str, dict[str, float] | None] | None:
    """For each of ACCURACY_MARKS, the first epoch at which validation accuracy reached it and the
    seconds of fitting until that epoch's end; None for a mark never reached, and for a run with
    no validation accuracy (not a classifier)."""
    accuracies, epochs, seconds = history.get("val/acc"), history.get("epoch") or [], history.get("seconds") or []
    if not accuracies:
        return None
    reached: dict[str, dict[str, float] | None] = {}
    for mark in ACCURACY_MARKS:
        first = next((i for i, a in enumerate(accuracies) if isinstance(a, (int, float)) and a >= mark), None)
        at = None
        if first is not None and first < len(epochs):
            at = {"epoch": epochs[first], "seconds": seconds[first] if first < len(seconds) else None}
        reached[f"{mark:.2f}"] = at
    return reached


def collapse_warning(record: dict[str, Any], fell: dict[str, Any]) -> str:
    """What to tell the user about a run that collapsed: `fell` is what `collapse` found in its record."""
    at = "" if fell["best_epoch"] is None else f" (epoch {fell['best_epoch']})"
    kept = record.get("best_checkpoint") or "its best checkpoint"
    return (
        f"{record.get('model', 'the model')}: validation accuracy fell from its best, {fell['best']:.3f}{at}, to "
        f"{fell['final']:.3f} at the end: the training collapsed, and a test pass ran on the final weights. "
        f"The best epoch's weights are kept in {kept}. Another run, or a lower learning rate, may not collapse."
    )


def summary_line(record: dict[str, Any]) -> str:
    """'lenet: done, 10 epochs, train loss 0.469, train acc 0.824, ..., 8,800 examples/s, fit 80.1 s'."""
    parts = [f"{record.get('model', '?')}: {record.get('status', '?')}", f"{record.get('epochs', '?')} epochs"]
    for headline in HEADLINE:
        value = to_float(record.get(headline.key))
        if value is not None:
            parts.append(f"{headline.label} {_number(value)}")
    for key in THROUGHPUT:
        if record.get(key):
            parts.append(f"{record[key]:,.0f} {key.split('_')[1]}/s")
    if record.get("fit_seconds") is not None:
        parts.append(f"fit {record['fit_seconds']:.1f} s")
    if record.get("sample"):
        parts.append(repr(record["sample"]))
    return ", ".join(parts)


# What each epoch's line shows, where the run has it.
EPOCH_LINE = (
    ("train/loss", "train loss"), ("train/acc", "train acc"), ("val/loss", "val loss"), ("val/acc", "val acc"),
    ("train/ppl", "perplexity"), ("val/ppl", "val perplexity"),
)  # fmt: skip


def epoch_line(row: dict[str, float], max_epochs: Any, seconds: float) -> str:
    """'epoch 3/10: train loss 0.520, train acc 0.812, val loss 0.55, val acc 0.801, 9,800 examples/s, 8.1 s'."""
    of = f"/{max_epochs}" if isinstance(max_epochs, int) and max_epochs > 0 else ""
    parts = [f"{label} {_number(row[key])}" for key, label in EPOCH_LINE if row.get(key) is not None]
    for key in ("train/examples_per_second", "train/tokens_per_second"):
        if row.get(key):
            parts.append(f"{row[key]:,.0f} {key.split('/')[1].split('_')[0]}/s")
    return f"epoch {int(row['epoch']) + 1}{of}: " + ", ".join([*parts, f"{seconds:.1f} s"])


def _number(value: float) -> str:
    return f"{value:.3f}" if 1e-2 <= abs(value) < 1e3 else f"{value:.3g}"


def _metric_values(trainer: Any) -> dict[str, float]:
    """The trainer's epoch-level metrics as numbers (one device read each)."""
    values = ((k, to_float(v)) for k, v in trainer.callback_metrics.items() if not k.endswith("_step"))
    return {k: v for k, v in values if v is not None}


def _existing(path: str | None) -> str | None:
    """A checkpoint's path, if the file is still there (a user may have deleted it mid-run)."""
    return path if path and Path(path).is_file() else None


class CurvesDrawer:
    """Draws a run's curves.png (the book's figure of its epochs) on a thread of its own, so
    that the training thread does not wait for matplotlib: the file is brought up to date after
    each epoch, for a look at a running run, and drawn once more, at once, when the run ends."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor: ThreadPoolExecutor | None = None
        self._latest: tuple[dict[str, list], str] | None = None  # what the next drawing shows

    def draw_later(self, history: dict[str, list], title: str) -> None:
        queued = self._latest is not None  # a drawing is waiting: it will show this epoch too
        self._latest = (history, title)
        if queued:
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="d2lexp-curves")
        self._executor.submit(self._draw_latest)

    def _draw_latest(self) -> None:
        latest, self._latest = self._latest, None
        if latest is not None:
            try:
                self._draw(*latest)
            except OSError as e:  # a full disk: the training thread meets it too, and says so
                log.debug("curves.png not drawn: %s", e)

    def _draw(self, history: dict[str, list], title: str) -> Any:
        from d2lexp.plotting import curves_figure, save_figure

        figure = curves_figure(history, title)
        save_figure(figure, self.path)
        return figure

    def draw_now(self, history: dict[str, list], title: str) -> Any:
        """The final figure, drawn in the caller's thread once the drawings asked for are done."""
        self.close()
        return self._draw(history, title)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None


class RunRecord:
    """The record of one run, and its metrics.json. From the first process only in a
    distributed run; every other view of the run (the summary line, HParams) is made from it."""

    def __init__(self, cfg: DictConfig, choices: dict[str, str]) -> None:
        from lightning.pytorch.utilities import rank_zero_only

        self.cfg, self.choices = cfg, choices
        self.output_dir = Path(cfg.paths.output_dir)
        self.writes = rank_zero_only.rank == 0
        self._epoch_clock = time.perf_counter()  # when the epoch now running started
        self._curves = CurvesDrawer(self.output_dir / CURVES_FILE)
        self._fitting = False
        self.data: dict[str, Any] = {
            "status": "running",
            "output_dir": str(self.output_dir),
            "started_at": time.time(),
            "pid": os.getpid(),
            "experiment": choices.get("experiment"),
            "seed": cfg.get("seed"),
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
            model=self.choices.get("model", type(run.net).__name__.lower()),
            params=sum(p.numel() for p in run.net.parameters()),
            macs_per_example=run.macs_per_example,
            threads=torch.get_num_threads(),  # the CPU threads it computes with
        )
        if run.resume_from:
            self.data["resumed_from"] = run.resume_from
        self.save()
        self._epoch_clock = time.perf_counter()

    def epoch_ended(self, row: dict[str, float], history: dict[str, list]) -> None:
        """Each epoch, as it ends: one line in the log (the console and train.log, whether or not
        they are a terminal), and metrics.json's history brought up to date."""
        now = time.perf_counter()
        seconds, self._epoch_clock = now - self._epoch_clock, now
        self.data["history"] = history
        self.data["time_to_accuracy"] = time_to_accuracy(history)
        log.info("%s", epoch_line(row, self.cfg.trainer.get("max_epochs"), seconds))
        self.save()
        if self.writes:
            self._curves.draw_later(history, self.data.get("model", ""))

    def fitted(self, run: Run, seconds: float) -> None:
        """What fitting left: the epoch metrics (before a test pass replaces the trainer's)."""
        self.data["fit_seconds"] = seconds
        self.data.update(sorted(_metric_values(run.trainer).items()))

    def tested(self, run: Run) -> None:
        self.data.update(sorted(_metric_values(run.trainer).items()))

    def finish(self, run: Run) -> None:
        """The end of a run that trained: checkpoints, what the record callbacks measured,
        whether it collapsed, the HParams entry; a diverged run raises TrainingDiverged."""
        from d2lexp.callbacks.base import RecordingCallback  # here: the sweep launcher reads records without Lightning

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
            if isinstance(callback, RecordingCallback):
                self.data.update(callback.record())
        self.data["collapsed"] = collapse(self.data)
        self.data["time_to_accuracy"] = time_to_accuracy(self.data.get("history") or {})
        if self.writes and self.data.get("history"):
            self._curves.draw_now(self.data["history"], self.data.get("model", ""))
            self._to_tensorboard(trainer, self._curves.path)
        if self.data["collapsed"] and self.writes:
            log.warning(collapse_warning(self.data, self.data["collapsed"]))
        self._log_hparams(trainer)
        self._pictures_to_mlflow(trainer)
        if run.task.diverged:
            self.data["error"] = run.task.diverged
            raise TrainingDiverged(f"{self.data['model']} diverged: {run.task.diverged}")

    def _to_tensorboard(self, trainer: Any, picture: Path) -> None:
        from d2lexp.callbacks.base import tensorboard_writer
        from d2lexp.plotting import png_image

        writer = tensorboard_writer(trainer)
        if writer is not None:
            writer.add_image("curves", png_image(picture), global_step=trainer.global_step)

    def interrupted_message(self) -> str:
        """The paragraph for a run stopped before its end (Ctrl-C, a scheduler's SIGTERM)."""
        last = self.output_dir / "checkpoints" / "last.ckpt"
        kept = f" Its state is in {last}." if last.is_file() else ""
        return (
            f"The run was stopped ({self.data.get('error', 'interrupted')}).{kept} Resume it where it stopped with "
            f"ckpt_path={self.output_dir} (its own settings are used), or run the same command with ckpt_path=auto."
        )

    def _pictures_to_mlflow(self, trainer: Any) -> None:
        """The run folder's pictures (curves, predictions, ...) as artifacts of its MLflow run."""
        from lightning.pytorch.loggers import MLFlowLogger

        for logger in trainer.loggers:
            if isinstance(logger, MLFlowLogger) and trainer.is_global_zero:
                for picture in sorted(self.output_dir.glob("*.png")):
                    logger.experiment.log_artifact(logger.run_id, str(picture))

    def _log_hparams(self, trainer: Any) -> None:
        """The run's settings in every logger: in TensorBoard, one HParams entry with the run's
        headline metrics beside them."""
        from lightning.pytorch.loggers import TensorBoardLogger

        if not trainer.is_global_zero:
            return
        keys = [h.key for h in HEADLINE] + list(THROUGHPUT)
        metrics = {f"hparams/{k.replace('/', '_')}": self.data[k] for k in keys if self.data.get(k) is not None}
        settings = hparams_of(self.cfg, self.choices)
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.log_hyperparams(settings, metrics=metrics)
                logger.finalize("success")
            else:
                logger.log_hyperparams(settings)

    @contextmanager
    def fitting(self) -> Iterator[None]:
        """Around `Trainer.fit`, whose own SIGTERM handling stops at a step's end and saves."""
        self._fitting = True
        try:
            yield
        finally:
            self._fitting = False

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        if not self._fitting:  # outside fit (building, testing, recording): stop here, and say so
            raise SystemExit(128 + signum)

    @contextmanager
    def until_done(self) -> Iterator[None]:
        """Around a run: however it ends, metrics.json says so (done, diverged, interrupted,
        failed, with the reason), and a folder that stopped taking writes ends in one paragraph.
        A SIGTERM (a scheduler's time limit) ends the run as interrupted whenever it comes."""
        watching = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, self._on_sigterm) if watching else None
        try:
            yield
        except BaseException as e:
            self._curves.close()
            status, error = "failed", str(e) or type(e).__name__
            if isinstance(e, TrainingDiverged):
                status = "diverged"
            elif isinstance(e, KeyboardInterrupt):
                status, error = "interrupted", "Ctrl-C"
            elif isinstance(e, SystemExit):  # Lightning's SIGTERMException: a scheduler's time limit, `kill`, `timeout`
                status, error = "interrupted", "stopped by a signal (SIGTERM)"
            self.data.update(status=status, error=self.data.get("error") or error)
            unrecorded = self.save()
            if is_unwritable(e):
                raise run_stopped_unwritable(self.output_dir, e, recorded=unrecorded is None) from None
            if unrecorded is not None:
                log.error(
                    "Could not record the run's end in %s/%s: %s", self.output_dir, METRICS_FILE, unrecorded.strerror
                )
            if status == "interrupted":
                raise RunInterrupted(
                    self.interrupted_message(), 130 if isinstance(e, KeyboardInterrupt) else 143
                ) from None
            raise
        finally:
            if watching:
                signal.signal(signal.SIGTERM, previous)
        self.data["finished_at"] = time.time()
        unrecorded = self.save()
        if unrecorded is not None:
            raise run_stopped_unwritable(self.output_dir, unrecorded, recorded=False)
        if self.writes:
            log.info("%s -> %s", summary_line(self.data), self.output_dir)
