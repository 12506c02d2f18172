"""Score a trained checkpoint on the test split, without training:

    python -m d2lexp.eval ckpt_path=outputs/<date>/<time>            # a run folder: its last checkpoint
    python -m d2lexp.eval ckpt_path=outputs/<date>/<time>/checkpoints/epoch007.ckpt

The net is rebuilt from the checkpoint (d2lexp.nets: nothing in the file is run) and the data
from the settings the run was started with (d2lexp.overrides: read back as plain settings), with
any overrides of the command on top. A classifier gets its accuracy, loss and the pictures of
its predictions; a language model its perplexity and a generated sample. One line is printed,
and everything goes into a folder of the eval's own (outputs/eval/<date>/<time>/eval.json):
the run's own files are not touched.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from d2lexp.cli import Command, checkpoint_tool_line, fail, guarded
from d2lexp.config import CONFIG_PATH

log = logging.getLogger("d2lexp")
EVAL_FILE = "eval.json"


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """The eval's record (also written to eval.json in its folder)."""
    import lightning.pytorch as pl

    from d2lexp import build, files
    from d2lexp.callbacks.predictions import ClassifierPictures
    from d2lexp.checkpoint import find_checkpoint, load_checkpoint, net_from_checkpoint
    from d2lexp.console import quiet_lightning
    from d2lexp.metrics_file import strict_json_text
    from d2lexp.record.metrics import summary_line, to_float
    from d2lexp.tasks.classification import ClassificationTask
    from d2lexp.train import hydra_choices

    quiet_lightning()
    path = find_checkpoint(cfg.ckpt_path, cfg.paths.log_dir)
    checkpoint = load_checkpoint(path)
    net = net_from_checkpoint(checkpoint, path)
    data = build.data(cfg)
    build.check_net_takes_data(net, data.model_input())  # the run's data settings against the net: before any data
    task = build.task(cfg, net)
    if getattr(net, "vocab_size", None) is not None:  # a language model: the vocabulary it was trained with
        from d2lexp.predict import load_vocab

        data.vocab = load_vocab(checkpoint, str(path))
    output_dir = Path(cfg.paths.output_dir)
    pictures = ClassifierPictures(str(output_dir)) if isinstance(task, ClassificationTask) else None
    build.check_accelerator(cfg)
    trainer = pl.Trainer(
        accelerator=cfg.trainer.accelerator, devices=1, precision=cfg.trainer.precision, logger=False,
        callbacks=[pictures] if pictures else [], enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=str(output_dir),
    )  # fmt: skip
    start = time.perf_counter()
    trainer.test(task, datamodule=data, verbose=False)
    record: dict[str, Any] = {
        "status": "done",
        "checkpoint": str(path),
        "model": hydra_choices().get("model", type(net).__name__.lower()),
        "epochs": checkpoint["epoch"] + 1
        if isinstance(checkpoint.get("epoch"), int) and checkpoint["epoch"] >= 0
        else None,
        "seconds": time.perf_counter() - start,
        **{k: to_float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")},
    }
    if pictures is not None:
        record.update(pictures.record())
    if data.vocab is not None:
        from d2lexp.models.rnn import predict_chars

        record["sample"] = predict_chars(net.cpu(), data.vocab, cfg.sample_prefix, cfg.sample_chars)
    files.write_text(files.make_folder(output_dir) / EVAL_FILE, strict_json_text(record))
    log.info("%s -> %s", summary_line(record).replace(": done", ": eval"), output_dir / EVAL_FILE)
    return record


COMMAND = Command(
    script="d2lexp-eval",
    module="d2lexp.eval",
    purpose="score a trained checkpoint on the test split, without training, into a folder of its own.",
    usage="d2lexp-eval ckpt_path=<run folder or .ckpt> [key=value ...]",
    options=(
        ("ckpt_path=PATH", "a run folder (its last checkpoint), a .ckpt file, or last (the newest run's); required"),
        ("sample_prefix=TEXT", "a language model continues this text (default: time traveller)"),
        ("sample_chars=N", "and writes this many characters (default 50)"),
        ("key=value", "any of the run's settings, over those it recorded (data.test_subset=1000, trainer=gpu)"),
    ),
    examples=(
        ("d2lexp-eval ckpt_path=outputs/2026-11-30/12-00-00", "the run's last checkpoint: eval.json, its pictures"),
        ("d2lexp-eval ckpt_path=outputs/2026-11-30/12-00-00/checkpoints/epoch007.ckpt", "its best epoch's"),
    ),
)


WHICH = "Which checkpoint? Give a run folder or a .ckpt file: python -m d2lexp.eval ckpt_path=outputs/<date>/<time>"


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="eval")
def hydra_main(cfg: DictConfig) -> None:
    if not cfg.ckpt_path:
        fail(WHICH)
    guarded(lambda: evaluate(cfg))


def main() -> None:
    """`python -m d2lexp.eval` and `d2lexp-eval`: the run's own settings under the command's."""
    sys.argv[1:] = checkpoint_tool_line(COMMAND, "eval", WHICH)
    hydra_main()


if __name__ == "__main__":
    main()
