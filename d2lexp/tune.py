"""A learning-rate range test: `python -m d2lexp.tune [overrides]`.

The configured run (any model, data, optimizer: `experiment=d2l/lenet`) trains from its start for
`lr_find.num_training` steps while its learning rate rises from `lr_find.min_lr` to `lr_find.max_lr`;
the loss against the rate is drawn, and the middle of the decade of rates over which the
smoothed loss falls most is suggested (Smith's range test). The loop is Lightning's
`Tuner.lr_find`, on d2lexp's own task and data (its TensorBatchLoader is a loader Lightning takes
as it is). What it records is read with two corrections: Lightning 2.6 keeps only a smoothed
curve whose bias correction is one step off (its first points are about half the loss), from
which each step's loss is recovered exactly (d2lexp.lr_range); and it suggests the curve's
steepest point against the rate itself, which favours the smallest rates and follows one step's
noise, where a whole decade's fall is used here (Lightning's suggestion is kept in lr_find.json
beside it). The run's net, optimizer and data are built as training builds them (the run's
learning-rate schedule set aside: the test's own replaces it; d2lexp.build), and nothing of a training run is written (lr_find's snapshot of the
start, which it restores at the end, stays in memory). Everything goes into a folder of the
tune's own: outputs/tune/<date>/<time>/lr_find.png and lr_find.json.
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, open_dict

from d2lexp.cli import Command, guarded, refuse_unknown_keys, start
from d2lexp.config import CONFIG_PATH
from d2lexp.errors import ConfigError

log = logging.getLogger("d2lexp")
PLOT_FILE, RESULT_FILE = "lr_find.png", "lr_find.json"


def find_lr(cfg: DictConfig) -> dict[str, Any]:
    """The range test's record (also written to lr_find.json in its folder), with the suggested rate."""
    import lightning.pytorch as pl
    from lightning.pytorch.tuner import Tuner

    from d2lexp import build, files
    from d2lexp.console import quiet_lightning
    from d2lexp.lr_range import InMemoryCheckpoints, lightning_step_losses, lr_figure, smooth, suggest
    from d2lexp.metrics_file import strict_json_text
    from d2lexp.plotting import save_figure

    quiet_lightning()
    options = cfg.lr_find
    if not 0 < options.min_lr < options.max_lr:
        raise ConfigError(f"lr_find needs 0 < min_lr < max_lr, got {options.min_lr} and {options.max_lr}.")
    if options.num_training < 2:
        raise ConfigError(f"lr_find.num_training must be at least 2 steps, got {options.num_training}.")
    if options.mode not in ("exponential", "linear"):
        raise ConfigError(f"lr_find.mode is exponential or linear, got {str(options.mode)[:40]!r}.")
    build.check_run_settings(cfg)
    build.check_accelerator(cfg)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    output_dir = files.make_folder(Path(cfg.paths.output_dir))
    data = build.data(cfg)
    net = build.net(cfg)
    with open_dict(cfg):  # the range test's own schedule replaces the run's (which may need the run's length)
        cfg.scheduler = None
    task = build.task(cfg, net)
    # No validation (the test reads the training loss), no checkpoints, no loggers: nothing of a run is written.
    trainer = pl.Trainer(
        accelerator=cfg.trainer.accelerator, devices=1, precision=cfg.trainer.precision, logger=False, callbacks=[],
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=str(output_dir), plugins=[InMemoryCheckpoints()], max_epochs=-1, limit_val_batches=0,
        num_sanity_val_steps=0, gradient_clip_val=cfg.trainer.get("gradient_clip_val"),
    )  # fmt: skip
    finder = Tuner(trainer).lr_find(
        task, datamodule=data, min_lr=options.min_lr, max_lr=options.max_lr, num_training=options.num_training,
        mode=options.mode, early_stop_threshold=options.early_stop_threshold, update_attr=False,
    )  # fmt: skip
    lrs = list(finder.results.get("lr") or []) if finder is not None else []
    losses = lightning_step_losses(list(finder.results.get("loss") or [])) if finder is not None else []
    if len(lrs) < 2 or len(lrs) != len(losses):
        raise ConfigError("The learning-rate range test recorded no steps: give it more training data or steps.")
    smoothed = smooth(losses)
    suggestion = suggest(lrs, smoothed)
    record = {
        "status": "done",
        "model": cfg.model._target_.rsplit(".", 1)[-1],
        "configured_lr": _float(cfg.optimizer.get("lr")),
        "suggested_lr": suggestion,
        "lightning_suggested_lr": _float(finder.suggestion()) if finder is not None else None,
        "steps": len(lrs),
        **{k: options[k] for k in ("min_lr", "max_lr", "num_training", "mode", "early_stop_threshold")},
        "lr": [_float(v) for v in lrs],
        "loss": [_float(v) for v in losses],
        "smoothed_loss": [_float(v) for v in smoothed],
    }
    save_figure(lr_figure(record), output_dir / PLOT_FILE)
    files.write_text(output_dir / RESULT_FILE, strict_json_text(record))
    if suggestion is not None:
        shown = f"{suggestion:.3g}"
    else:  # suggest() reads the curve past the first 10 steps and before the last
        shown = "none (too few steps: raise lr_find.num_training)" if len(lrs) < 14 else "none (the loss never fell)"
    log.info(
        "%s: suggested learning rate %s (configured: %s), from %d steps -> %s",
        record["model"], shown, "none" if record["configured_lr"] is None else f"{record['configured_lr']:.3g}",
        len(lrs), output_dir / PLOT_FILE,
    )  # fmt: skip
    return record


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


COMMAND = Command(
    script="d2lexp-tune",
    module="d2lexp.tune",
    purpose="a learning-rate range test (Lightning's lr_find) of the configured run: a plot and a suggested rate.",
    usage="d2lexp-tune [group=option ...] [key=value ...]",
    options=(
        ("lr_find.min_lr=X, lr_find.max_lr=Y", "the range of rates tried (default 1e-5 to 10)"),
        ("lr_find.num_training=N", "steps of the test (default 100)"),
        ("lr_find.mode=exponential|linear", "how the rate rises from step to step"),
        ("key=value", "any training setting: the run whose rate is tested (experiment=d2l/lenet, data.batch_size=128)"),
    ),
    examples=(
        ("d2lexp-tune experiment=d2l/lenet", "LeNet's rate: outputs/tune/<date>/<time>/lr_find.png, lr_find.json"),
        ("d2lexp-tune model=resnet18 optimizer=adam", "any model, any optimizer"),
    ),
)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="tune")
def hydra_main(cfg: DictConfig) -> None:
    guarded(lambda: find_lr(cfg))


def main() -> None:
    """`python -m d2lexp.tune` and `d2lexp-tune`."""
    args = start(COMMAND, sys.argv[1:])
    refuse_unknown_keys("tune", args)
    sys.argv[1:] = args
    hydra_main()


if __name__ == "__main__":
    main()
