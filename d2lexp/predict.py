"""Use a trained net: text from a language model, or the classes of your own images.

    python -m d2lexp.predict ckpt_path=outputs/<date>/<time> prefix="time traveller" num_chars=50
    python -m d2lexp.predict ckpt_path=outputs/<date>/<time> images=my_photos/ top=3

`ckpt_path`: a run folder (its last checkpoint), a .ckpt file, or `last` (the newest run's).

The net is rebuilt from the config saved in the checkpoint (d2lexp.checkpoint: nothing in it
runs). A language model's vocabulary comes from the checkpoint too. A classifier's images are
read as untrusted files (d2lexp.image_files: bounded before decoding) and made what the run's
data was (grayscale or colour, its size, scaled, normalised and resized as its data module did),
from the run's recorded settings (d2lexp.overrides, as an eval reads them); each is printed with
its top classes, named as the run's data names them.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import hydra
from omegaconf import DictConfig

from d2lexp.cli import Command, fail, guarded, refuse_unknown_keys, start
from d2lexp.config import CONFIG_PATH
from d2lexp.console import printable
from d2lexp.errors import CheckpointError, ConfigError
from d2lexp.overrides import command_line_values

log = logging.getLogger("d2lexp")


def load_vocab(checkpoint: dict, source: str):  # -> Vocab
    """The vocabulary a language-model run saved with its data module's state: a list of strings."""
    from d2lexp.data.text import Vocab

    for value in checkpoint.values():
        if isinstance(value, dict) and value.get("idx_to_token"):
            tokens = value["idx_to_token"]
            problem = Vocab.tokens_problem(tokens)
            if problem:
                raise CheckpointError(f"{source}: its stored vocabulary {problem}; the file is damaged or altered.")
            return Vocab.from_tokens_list(tokens)
    raise CheckpointError(f"{source} holds no vocabulary: it was not written by a language-model run.")


def generate(ckpt_path: str, prefix: str, num_chars: int, device: str = "cpu", log_dir: str = "outputs") -> str:
    from d2lexp.checkpoint import find_checkpoint, load_checkpoint, net_from_checkpoint
    from d2lexp.models.rnn import predict_chars

    ckpt_path = str(find_checkpoint(ckpt_path, log_dir))
    checkpoint = load_checkpoint(ckpt_path)
    net = net_from_checkpoint(checkpoint, ckpt_path).to(device)
    vocab = load_vocab(checkpoint, ckpt_path)
    if getattr(net, "vocab_size", None) != len(vocab):
        raise CheckpointError(
            f"{ckpt_path}: its vocabulary has {len(vocab)} tokens but its net reads {getattr(net, 'vocab_size', None)}; "
            "the file is damaged or altered."
        )
    unknown = sorted({c for c in prefix if vocab[c] == vocab.unk})
    if unknown:
        log.warning("Characters not in the vocabulary are read as <unk>: %s", "".join(unknown))
    import torch

    return predict_chars(net, vocab, prefix, num_chars, torch.device(device))


@dataclass(frozen=True)
class Classified:
    """One image's top classes: (class name, probability), most probable first."""

    path: Path
    top: list[tuple[str, float]]


@dataclass
class Classification:
    """What `classify` found: each image read, the files it could not read (one paragraph each),
    and a folder's files that are not images by their names (skipped)."""

    images: list[Classified]
    failed: list[str]
    skipped: list[Path]


def classify(
    ckpt_path: str | Path,
    images: str | Path,
    top: int = 3,
    device: str = "cpu",
    log_dir: str | Path = "outputs",
    invert: bool = False,
    batch_size: int = 64,
) -> Classification:
    """The classifier of `ckpt_path` on the image file or folder `images`: each image's `top` classes
    (see the module's docstring). D2lexpError (one paragraph) for a checkpoint that is not an image
    classifier's, or a single image that cannot be read."""
    import torch

    from d2lexp import build
    from d2lexp.checkpoint import find_checkpoint, load_checkpoint, net_from_checkpoint
    from d2lexp.data.images import ImageDataModule
    from d2lexp.image_files import ImageError, image_files, read_image
    from d2lexp.overrides import run_config

    if not isinstance(top, int) or isinstance(top, bool) or top < 1:
        raise ConfigError(f"top must be a positive whole number (the classes shown per image), got {top!r}.")
    path = find_checkpoint(ckpt_path, log_dir)
    net = net_from_checkpoint(load_checkpoint(path), path)
    if getattr(net, "vocab_size", None) is not None:
        raise ConfigError(f"{path} is a language model's: it continues text (prefix=...), it does not classify images.")
    data = build.data(run_config(path))
    if not isinstance(data, ImageDataModule) or not data.class_names:
        raise ConfigError(
            f"{path} was not trained on labelled images (its data: {type(data).__name__}): give an image "
            "classifier's run, e.g. one of python -m d2lexp model=lenet."
        )
    build.check_net_takes_data(net, data.model_input())
    names = list(data.class_names)
    files, skipped = image_files(images)
    channels, height, width = data.image_shape
    net = net.to(device)
    result = Classification([], [], skipped)
    for first in range(0, len(files), batch_size):
        read: list[tuple[Path, torch.Tensor]] = []
        for file in files[first : first + batch_size]:
            try:
                read.append((file, read_image(file, channels, (height, width))))
            except ImageError as e:
                if len(files) == 1:
                    raise
                result.failed.append(str(e))
        if not read:
            continue
        pixels = torch.stack([p for _, p in read])
        if invert:
            pixels = 255 - pixels
        with torch.no_grad():
            logits = net(data.on_after_batch_transfer(pixels.to(device), 0))
        if logits.dim() != 2 or logits.shape[1] != len(names):
            raise CheckpointError(
                f"{path}: its net gives {tuple(logits.shape[1:])} scores per image, not one per class of its data "
                f"({len(names)}); the file is damaged or altered."
            )
        probabilities = torch.softmax(logits.float(), dim=1).cpu()
        best = probabilities.topk(min(top, len(names)), dim=1)
        for (file, _), values, indices in zip(read, best.values.tolist(), best.indices.tolist()):
            result.images.append(Classified(file, [(names[i], p) for i, p in zip(indices, values)]))
    return result


def classification_lines(result: Classification) -> list[str]:
    """One line per image, `<file>: <class> <probability>, ...`; names and paths escaped (they come
    from files and the user's folders)."""
    return [
        f"{printable(c.path)}: " + ", ".join(f"{printable(name)} {p:.3f}" for name, p in c.top) for c in result.images
    ]


def _print_classes(cfg: DictConfig) -> None:
    result = classify(cfg.ckpt_path, cfg.images, cfg.top, cfg.device, cfg.log_dir, bool(cfg.invert))
    for line in classification_lines(result):
        print(line)
    if result.skipped:
        shown = ", ".join(printable(p.name) for p in result.skipped[:10])
        log.info("Skipped (not images by their names): %s%s", shown, " ..." if len(result.skipped) > 10 else "")
    for failure in result.failed:
        log.error("%s", failure)
    if result.failed:  # each image said why above; the others were classified
        sys.exit(1)


COMMAND = Command(
    script="d2lexp-predict",
    module="d2lexp.predict",
    purpose="a trained net on your input: a language model continues a text, a classifier names your images.",
    usage="d2lexp-predict ckpt_path=<run folder or .ckpt> [prefix=TEXT | images=<file or folder>] [key=value ...]",
    options=(
        ("ckpt_path=PATH", "a run folder (its last checkpoint), a .ckpt file, or last (the newest run's); required"),
        ("prefix=TEXT", "a language model continues this text (default: time traveller) ..."),
        ("num_chars=N", "... by this many characters (default 50)"),
        ("images=PATH", "a classifier names this image, or each image of this folder ..."),
        ("top=N", "... with its N most probable classes (default 3)"),
        ("invert=true", "for dark things on a light background (Fashion-MNIST's are light on black)"),
        ("device=NAME", "cpu (default) or cuda"),
    ),
    examples=(
        ('d2lexp-predict ckpt_path=last prefix="time traveller"', "the newest run, a language model, continues"),
        ("d2lexp-predict ckpt_path=outputs/2026-11-30/12-00-00 images=photos/", "each image's top 3 classes"),
    ),
)
WHICH = (
    "Which model? Give a run's checkpoint: a language model's to continue text, python -m d2lexp.predict "
    'ckpt_path=outputs/<date>/<time> prefix="time traveller", or a classifier\'s with images=<file or folder>.'
)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="predict")
def hydra_main(cfg: DictConfig) -> None:
    if not cfg.ckpt_path:
        fail(WHICH)
    if cfg.get("images"):
        guarded(lambda: _print_classes(cfg))
        return
    if not cfg.prefix:
        fail('prefix must be at least one character, e.g. prefix="time traveller".')
    guarded(lambda: print(printable(generate(cfg.ckpt_path, cfg.prefix, cfg.num_chars, cfg.device, cfg.log_dir))))


def main() -> None:
    """`python -m d2lexp.predict` and `d2lexp-predict`."""
    args = start(COMMAND, sys.argv[1:])
    spec = command_line_values(args).get("ckpt_path")
    if not spec or spec == "null":
        fail(WHICH)
    refuse_unknown_keys("predict", args)
    sys.argv[1:] = args
    hydra_main()


if __name__ == "__main__":
    main()
