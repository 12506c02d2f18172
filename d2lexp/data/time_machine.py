"""H. G. Wells' The Time Machine as character tokens (d2l ch. 9.2-9.3), the corpus of the
book's language models."""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
import re
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import torch

from d2lexp.data.base import DataModule
from d2lexp.data.loader import TensorBatchLoader
from d2lexp.data.text import SequenceLoader, Vocab, tokenize
from d2lexp.errors import CheckpointError, ConfigError, DataError

log = logging.getLogger(__name__)

URL = "http://d2l-data.s3-accelerate.amazonaws.com/timemachine.txt"  # the book's data hub
SHA1 = "090b5e7e70c295757f55df93cb0a180b9691891a"


def text_path(data_dir: str | Path) -> Path:
    return Path(data_dir).expanduser() / "timemachine" / "timemachine.txt"


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def ensure_time_machine(data_dir: str | Path, download: bool = True) -> Path:
    """`<data_dir>/timemachine/timemachine.txt`, downloaded from the book's data hub if missing."""
    path = text_path(data_dir)
    if path.is_file():
        return path
    if not download:
        raise DataError(
            f"The Time Machine is not at {path}. Set D2LEXP_DATA=/path/to/datasets or pass paths.data_dir=... "
            "(a folder holding timemachine/timemachine.txt), or allow data.download=true where the network is reachable."
        )
    log.info("Downloading The Time Machine from %s to %s", URL, path)
    try:
        with urllib.request.urlopen(URL, timeout=60) as response:
            data = response.read()
    except Exception as e:
        reason = " ".join(f"{type(e).__name__}: {e}".split())
        raise DataError(
            f"The Time Machine is not at {path} and downloading it from {URL} failed ({reason}). "
            "Point the run at a copy: set D2LEXP_DATA=/path/to/datasets or pass paths.data_dir=..., a folder "
            "holding timemachine/timemachine.txt; or run once where the network is reachable."
        ) from None
    if _sha1(data) != SHA1:
        raise DataError(f"The file downloaded from {URL} has SHA-1 {_sha1(data)}, not the book's {SHA1}; not saved.")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return path


# The settings each pipeline reads (the others leave them unused).
PIPELINE_SETTINGS = {"course": ("sampling", "max_tokens", "val_fraction"), "d2l_1": ("num_train", "num_val")}
PIPELINES = ("course", "d2l_1")


def read_time_machine(path: str | Path, join_lines: bool = False) -> list[str]:
    """The book's cleaning: every run of non-letters becomes one space; lower case. Per line,
    stripped (d2l 0.17, whose corpus then glues the lines: "wells" + "i" -> "wellsi"), or with
    `join_lines` the whole text as one line, so a line break becomes a space (d2l 1.0)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"Cannot read {path} ({type(e).__name__}: {e}). Replace it with the book's file.") from None
    if join_lines:
        return [re.sub("[^A-Za-z]+", " ", text).lower()]
    return [re.sub("[^A-Za-z]+", " ", line).strip().lower() for line in text.splitlines()]


def load_corpus(path: str | Path, max_tokens: int = -1, pipeline: str = "course") -> tuple[torch.Tensor, Vocab]:
    """Character indices of the whole book and the vocabulary, as the `pipeline`'s edition makes
    them: "course" (d2l 0.17: lines glued, most frequent characters first) or "d2l_1" (d2l 1.0:
    lines joined by a space, alphabetical order)."""
    d2l_1 = pipeline == "d2l_1"
    tokens = tokenize(read_time_machine(path, join_lines=d2l_1), "char")
    vocab = Vocab(tokens, order="alphabetical" if d2l_1 else "frequency")
    corpus = [vocab[token] for line in tokens for token in line]
    if max_tokens > 0:
        corpus = corpus[:max_tokens]
    if len(corpus) < 2:
        raise DataError(f"{path} holds no text to learn from; replace it with the book's file.")
    return torch.tensor(corpus, dtype=torch.long), vocab


def overlapping_windows(corpus: torch.Tensor, num_steps: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `count` windows of `num_steps` + 1 tokens, one starting at every token (d2l
    1.0's TimeMachine): inputs and the targets shifted by one, gathered by indexing."""
    index = torch.arange(count, device=corpus.device)[:, None] + torch.arange(num_steps + 1, device=corpus.device)
    windows = corpus[index]
    return windows[:, :-1], windows[:, 1:]


class TimeMachineDataModule(DataModule):
    """Character-level language-model minibatches of The Time Machine.

    `sampling="sequential"`: row i of each minibatch continues row i of the previous one, so
    a model may carry its hidden state across minibatches (`self.sequential` tells the task);
    `"random"`: independent subsequences. `max_tokens` keeps the first tokens only (the book
    uses 10,000). `val_fraction` > 0 holds out the end of the corpus for validation; the book
    reports training perplexity only.

    `pipeline="d2l_1"` is the current English edition's (d2l.ai 1.0) instead: lines joined by a
    space, an alphabetical vocabulary, and overlapping windows, one starting at every token; the
    first `num_train` windows train (shuffled each epoch, each on its own: no state carries
    over), the next `num_val` validate and test. `sampling`, `max_tokens` and `val_fraction`
    belong to the course's pipeline.
    """

    item_unit = "tokens"

    def __init__(
        self,
        data_dir: str = "./data",
        batch_size: int = 32,
        num_steps: int = 35,
        sampling: str = "sequential",
        max_tokens: int = 10_000,
        val_fraction: float = 0.0,
        download: bool = True,
        seed: int = 0,
        on_device: bool | str = "auto",
        pipeline: str = "course",
        num_train: int = 10_000,
        num_val: int = 5_000,
    ) -> None:
        super().__init__()
        if pipeline not in PIPELINES:
            raise ConfigError(f"data.pipeline must be one of {', '.join(PIPELINES)}, got {pipeline!r}.")
        for key, value in (
            ("data.batch_size", batch_size),
            ("data.num_steps", num_steps),
            ("data.num_train", num_train),
            ("data.num_val", num_val),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{key} must be a positive integer, got {value!r}.")
        if sampling not in ("sequential", "random"):
            raise ConfigError(f"data.sampling must be 'sequential' or 'random', got {sampling!r}.")
        if not 0.0 <= val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction must be in [0, 1), got {val_fraction!r}.")
        given = {"sampling": sampling, "max_tokens": max_tokens, "val_fraction": val_fraction, "num_train": num_train,
                 "num_val": num_val}  # fmt: skip
        defaults = inspect.signature(type(self).__init__).parameters
        for other, keys in PIPELINE_SETTINGS.items():  # a setting of the other pipeline would be silently unused
            changed = [k for k in keys if other != pipeline and given[k] != defaults[k].default]
            if changed:
                raise ConfigError(
                    f"data.{changed[0]} is a setting of the {other} pipeline; with data.pipeline={pipeline} it would "
                    f"change nothing. Leave it out, or set data.pipeline={other}."
                )
        self.data_dir, self.batch_size, self.num_steps = data_dir, batch_size, num_steps
        self.sampling, self.max_tokens, self.val_fraction = sampling, max_tokens, val_fraction
        self.download, self.seed, self.on_device = download, seed, on_device
        self.pipeline, self.num_train, self.num_val = pipeline, num_train, num_val
        self.windows: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # the d2l_1 pipeline's
        self.vocab: Vocab | None = None  # from the text, or restored from a checkpoint
        self.corpus: dict[str, torch.Tensor] = {}

    @property
    def sequential(self) -> bool:
        """Whether a minibatch continues the previous one (the hidden state may carry over)."""
        return self.pipeline == "course" and self.sampling == "sequential"

    def prepare_data(self) -> None:
        ensure_time_machine(self.data_dir, self.download)

    def setup(self, stage: str | None = None) -> None:
        if self.corpus or self.windows:
            return
        path = ensure_time_machine(self.data_dir, self.download)
        max_tokens = self.max_tokens if self.pipeline == "course" else -1
        corpus, vocab = load_corpus(path, max_tokens, self.pipeline)
        self.vocab = self.vocab or vocab  # a vocabulary restored from a checkpoint wins
        corpus = corpus.to(self.data_device(self.on_device))  # minibatches are cut where the model runs
        if self.pipeline == "d2l_1":
            self._setup_windows(corpus, path)
            return
        num_val = int(len(corpus) * self.val_fraction)
        self.corpus["train"] = corpus[: len(corpus) - num_val]
        self.corpus["val"] = corpus[len(corpus) - num_val :]
        needed = self.batch_size * self.num_steps + 1
        if len(self.corpus["train"]) < needed:
            raise ConfigError(
                f"The corpus has {len(self.corpus['train'])} training tokens, fewer than one minibatch needs "
                f"({needed} = data.batch_size x data.num_steps + 1). Raise data.max_tokens or lower those."
            )

    def _setup_windows(self, corpus: torch.Tensor, path: Path) -> None:
        available = len(corpus) - self.num_steps
        if self.num_train + self.num_val > available:
            raise ConfigError(
                f"{path} gives {available} windows of data.num_steps={self.num_steps} tokens, fewer than "
                f"data.num_train + data.num_val = {self.num_train + self.num_val}. Lower those."
            )
        inputs, targets = overlapping_windows(corpus, self.num_steps, self.num_train + self.num_val)
        self.windows["train"] = inputs[: self.num_train], targets[: self.num_train]
        self.windows["val"] = inputs[self.num_train :], targets[self.num_train :]

    def train_dataloader(self) -> SequenceLoader | TensorBatchLoader:
        if self.windows:
            return TensorBatchLoader(self.windows["train"], self.batch_size, shuffle=True, seed=self.seed)
        return SequenceLoader(self.corpus["train"], self.batch_size, self.num_steps, self.sequential, self.seed)

    def val_dataloader(self) -> Any:
        if self.windows:
            return TensorBatchLoader(self.windows["val"], self.batch_size)
        if len(self.corpus["val"]) < self.batch_size * self.num_steps + 1:
            return []
        return SequenceLoader(self.corpus["val"], self.batch_size, self.num_steps, True, self.seed, shuffle=False)

    def test_dataloader(self) -> SequenceLoader | TensorBatchLoader:
        """The held-out text, read in order; the training text where none is held out (the book
        reports the perplexity of the text it trains on). The d2l_1 pipeline: its validation windows."""
        if self.windows:
            return TensorBatchLoader(self.windows["val"], self.batch_size)
        held_out = len(self.corpus["val"]) >= self.batch_size * self.num_steps + 1
        text = self.corpus["val"] if held_out else self.corpus["train"]
        return SequenceLoader(text, self.batch_size, self.num_steps, sequential=True, seed=self.seed, shuffle=False)

    def train_examples(self) -> int | None:
        """Tokens an epoch trains on: the capped corpus, less the validation text (d2l_1: the
        training windows' tokens)."""
        if self.pipeline == "d2l_1":
            return self.num_train * self.num_steps
        return int(self.max_tokens * (1 - self.val_fraction)) if self.max_tokens > 0 else None

    def example_input(self) -> torch.Tensor:
        return torch.zeros(1, self.num_steps, dtype=torch.long)

    def state_dict(self) -> dict[str, Any]:
        """Saved in checkpoints: the vocabulary, so text can be generated from a checkpoint alone."""
        return {"idx_to_token": list(self.vocab.idx_to_token)} if self.vocab else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if isinstance(state_dict, dict) and state_dict.get("idx_to_token"):
            problem = Vocab.tokens_problem(state_dict["idx_to_token"])
            if problem:
                raise CheckpointError(f"The checkpoint's vocabulary {problem}; the file is damaged or altered.")
            self.vocab = Vocab.from_tokens_list(state_dict["idx_to_token"])
