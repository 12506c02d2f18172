"""What a run's record is shown as, beside metrics.json: a line in the log for each epoch and one
at the end (`Console`), the book's figure of the epochs (`Curves`: curves.png, drawn off the
training thread, and in TensorBoard), and the loggers' entries (`Loggers`: the run's settings, in
TensorBoard an HParams entry with its headline metrics; the run's pictures as MLflow artifacts).
RunRecord tells each of them what happened; none of them writes metrics.json.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from d2lexp.record.metrics import METRICS, collapse_warning, epoch_line, summary_line

log = logging.getLogger("d2lexp")

CURVES_FILE = "curves.png"

# Config values that describe a run in the HParams tab (flattened dotted keys).
_HPARAM_GROUPS = ("model", "init", "data", "optimizer", "scheduler", "task")
_HPARAM_TRAINER_KEYS = ("max_epochs", "precision", "accelerator", "devices", "gradient_clip_val")
_HPARAM_SKIP = ("_target_", "_partial_", "data_dir", "seed", "download")


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
    """A flat dict of the run's defining settings, for the loggers: group choices, then their values."""
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


class Console:
    """The run's lines in the log (the console and train.log, whether or not they are a terminal)."""

    def __init__(self, max_epochs: Any) -> None:
        self.max_epochs = max_epochs

    def epoch(self, row: dict[str, float], seconds: float) -> None:
        log.info("%s", epoch_line(row, self.max_epochs, seconds))

    def finished(self, record: dict[str, Any]) -> None:
        if record.get("collapsed"):
            log.warning(collapse_warning(record, record["collapsed"]))

    def ended(self, record: dict[str, Any], folder: Path) -> None:
        log.info("%s -> %s", summary_line(record), folder)


class Curves:
    """Draws a run's curves.png (the book's figure of its epochs) on a thread of its own, so that
    the training thread does not wait for matplotlib: the file is brought up to date after each
    epoch, for a look at a running run, and drawn once more, at once, when the run ends."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / CURVES_FILE
        self._executor: ThreadPoolExecutor | None = None
        self._latest: tuple[dict[str, list], str] | None = None  # what the next drawing shows

    def epoch(self, history: dict[str, list], title: str) -> None:
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

    def _draw(self, history: dict[str, list], title: str) -> None:
        from d2lexp.plotting import curves_figure, save_figure

        save_figure(curves_figure(history, title), self.path)

    def finished(self, record: dict[str, Any], trainer: Any) -> None:
        """The final figure, drawn at once once the drawings asked for are done, and in TensorBoard."""
        from d2lexp.callbacks.base import tensorboard_writer
        from d2lexp.plotting import png_image

        self.close()
        if not record.get("history"):
            return
        self._draw(record["history"], record.get("model", ""))
        writer = tensorboard_writer(trainer)
        if writer is not None:
            writer.add_image("curves", png_image(self.path), global_step=trainer.global_step)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None


class Loggers:
    """The run's settings in every logger: in TensorBoard one HParams entry with the run's headline
    metrics beside them; in MLflow the run folder's pictures as artifacts."""

    def __init__(self, settings: dict[str, Any], folder: Path) -> None:
        self.settings, self.folder = settings, folder

    def finished(self, record: dict[str, Any], trainer: Any) -> None:
        from lightning.pytorch.loggers import MLFlowLogger, TensorBoardLogger

        if not trainer.is_global_zero:
            return
        metrics = {
            f"hparams/{m.key.replace('/', '_')}": record[m.key]
            for m in METRICS
            if m.hparams and record.get(m.key) is not None
        }
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.log_hyperparams(self.settings, metrics=metrics)
                logger.finalize("success")
            else:
                logger.log_hyperparams(self.settings)
            if isinstance(logger, MLFlowLogger):
                for picture in sorted(self.folder.glob("*.png")):
                    logger.experiment.log_artifact(logger.run_id, str(picture))
