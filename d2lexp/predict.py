"""Generate text with a trained language model:

    python -m d2lexp.predict ckpt_path=outputs/<date>/<time> prefix="time traveller" num_chars=50

`ckpt_path`: a run folder (its last checkpoint), a .ckpt file, or `last` (the newest run's).

The net is rebuilt from the config saved in the checkpoint and the vocabulary comes from
the checkpoint too: no data and no training config are needed.
"""

from __future__ import annotations

import logging
import sys

import hydra
import torch
from omegaconf import DictConfig

from d2lexp.config import CONFIG_PATH
from d2lexp.console import printable
from d2lexp.errors import CheckpointError, D2lexpError

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
    return predict_chars(net, vocab, prefix, num_chars, torch.device(device))


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="predict")
def main(cfg: DictConfig) -> None:
    if not cfg.ckpt_path:
        log.error(
            "Which model? Give the checkpoint of a language-model run: python -m d2lexp.predict "
            'ckpt_path=outputs/<date>/<time> prefix="time traveller".'
        )
        sys.exit(1)
    if not cfg.prefix:
        log.error('prefix must be at least one character, e.g. prefix="time traveller".')
        sys.exit(1)
    try:
        print(printable(generate(cfg.ckpt_path, cfg.prefix, cfg.num_chars, cfg.device, cfg.log_dir)))
    except D2lexpError as e:
        log.error("%s", e)
        sys.exit(1)


if __name__ == "__main__":
    main()
