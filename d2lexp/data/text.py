"""Text as tokens (d2l ch. 9.2-9.3): tokenising, a vocabulary, and the book's two ways of
cutting a long corpus into minibatches of subsequences."""

from __future__ import annotations

import collections
import itertools
from collections.abc import Iterable, Iterator, Sequence

import torch

from d2lexp.data.loader import EpochSampler, ResumableLoader, epoch_generator

# Bounds on a vocabulary read back from a checkpoint (a word vocabulary of a large corpus fits).
MAX_VOCAB = 1_000_000
MAX_TOKEN = 256


def tokenize(lines: Sequence[str], token: str = "char") -> list[list[str]]:
    """Split lines into word or character tokens."""
    if token == "word":
        return [line.split() for line in lines]
    if token == "char":
        return [list(line) for line in lines]
    raise ValueError(f"unknown token type {token!r}: use 'word' or 'char'")


class Vocab:
    """Token <-> index, with `<unk>` for anything unseen. `order="frequency"` (the course's d2l
    0.17): `<unk>` and the reserved tokens first, then the most frequent; `"alphabetical"` (d2l
    1.0): all of them sorted, so `<unk>` comes after the space."""

    def __init__(
        self,
        tokens: Iterable[str] | Iterable[Sequence[str]] = (),
        min_freq: int = 0,
        reserved_tokens: Sequence[str] = (),
        order: str = "frequency",
    ) -> None:
        if order not in ("frequency", "alphabetical"):
            raise ValueError(f"unknown vocabulary order {order!r}: use 'frequency' or 'alphabetical'")
        tokens = list(tokens)
        if tokens and isinstance(tokens[0], (list, tuple)):
            tokens = [token for line in tokens for token in line]
        counter = collections.Counter(tokens)
        # Frequency first, then the token itself: the same order on every run.
        self.token_freqs = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
        self.idx_to_token = ["<unk>", *reserved_tokens]
        seen = set(self.idx_to_token)
        for token, freq in self.token_freqs:
            if freq >= min_freq and token not in seen:
                self.idx_to_token.append(token)
                seen.add(token)
        if order == "alphabetical":
            self.idx_to_token.sort()
        self.token_to_idx = {token: idx for idx, token in enumerate(self.idx_to_token)}

    @staticmethod
    def tokens_problem(idx_to_token: object) -> str | None:
        """Why `idx_to_token` (read from a checkpoint) is not a vocabulary; None if it is one."""
        if not isinstance(idx_to_token, (list, tuple)) or not all(isinstance(t, str) for t in idx_to_token):
            return "is not a list of strings"
        if not 0 < len(idx_to_token) <= MAX_VOCAB:
            return f"has {len(idx_to_token):,} tokens, not 1 to {MAX_VOCAB:,}"
        if any(len(t) > MAX_TOKEN for t in idx_to_token) or len(set(idx_to_token)) != len(idx_to_token):
            return f"holds a token longer than {MAX_TOKEN} characters, or one twice"
        return None

    @classmethod
    def from_tokens_list(cls, idx_to_token: Sequence[str]) -> Vocab:
        """Rebuild a vocabulary from its index order (as saved in a checkpoint)."""
        vocab = cls()
        vocab.idx_to_token = list(idx_to_token)
        vocab.token_to_idx = {token: idx for idx, token in enumerate(vocab.idx_to_token)}
        return vocab

    def __len__(self) -> int:
        return len(self.idx_to_token)

    def __getitem__(self, tokens: str | Sequence[str]) -> int | list[int]:
        if isinstance(tokens, str):
            return self.token_to_idx.get(tokens, self.unk)
        return [self[token] for token in tokens]

    def to_tokens(self, indices: int | Sequence[int]) -> str | list[str]:
        if isinstance(indices, int):
            return self.idx_to_token[indices]
        return [self.idx_to_token[int(index)] for index in indices]

    @property
    def unk(self) -> int:
        return self.token_to_idx.get("<unk>", 0)


def seq_data_iter_random(
    corpus: torch.Tensor, batch_size: int, num_steps: int, generator: torch.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Random sampling: subsequences from a random offset, in random order; neighbouring
    minibatches are not adjacent in the text. Targets are the inputs shifted by one."""
    offset = int(torch.randint(0, num_steps, (1,), generator=generator))
    corpus = corpus[offset:]
    num_subseqs = (len(corpus) - 1) // num_steps
    order = torch.randperm(num_subseqs, generator=generator)
    starts = (torch.arange(0, num_subseqs * num_steps, num_steps)[order]).to(corpus.device)
    window = torch.arange(num_steps, device=corpus.device)
    for i in range(0, batch_size * (num_subseqs // batch_size), batch_size):
        index = starts[i : i + batch_size, None] + window
        yield corpus[index], corpus[index + 1]


def seq_data_iter_sequential(
    corpus: torch.Tensor, batch_size: int, num_steps: int, generator: torch.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Sequential partitioning: the corpus (from a random offset) split into `batch_size`
    rows read left to right, so row i of one minibatch continues row i of the previous one."""
    offset = int(torch.randint(0, num_steps + 1, (1,), generator=generator))
    num_tokens = ((len(corpus) - offset - 1) // batch_size) * batch_size
    Xs = corpus[offset : offset + num_tokens].reshape(batch_size, -1)
    Ys = corpus[offset + 1 : offset + 1 + num_tokens].reshape(batch_size, -1)
    for i in range(0, num_steps * (Xs.shape[1] // num_steps), num_steps):
        yield Xs[:, i : i + num_steps], Ys[:, i : i + num_steps]


class SequenceLoader(ResumableLoader):
    """Minibatches of (inputs, targets) from a token tensor, by either scheme, reshuffled each
    epoch by (seed, epoch) through the `sampler.set_epoch` hook Lightning calls; with
    `shuffle=False` the same batches every time (evaluation: a score that depends only on the
    weights)."""

    def __init__(
        self,
        corpus: torch.Tensor,
        batch_size: int,
        num_steps: int,
        sequential: bool,
        seed: int = 0,
        shuffle: bool = True,
    ) -> None:
        super().__init__(EpochSampler(len(corpus), shuffle=shuffle, seed=seed))
        self.corpus, self.batch_size, self.num_steps, self.sequential = corpus, batch_size, num_steps, sequential

    def __len__(self) -> int:
        if self.sequential:  # the offset can cost one window: count the worst case
            return ((len(self.corpus) - self.num_steps - 1) // self.batch_size) // self.num_steps
        return ((len(self.corpus) - self.num_steps) // self.num_steps) // self.batch_size

    def _batches(self, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = epoch_generator(self.sampler.seed, self.sampler.epoch if self.sampler.shuffle else 0)
        scheme = seq_data_iter_sequential if self.sequential else seq_data_iter_random
        # A fixed number of batches per epoch, whatever the offset: Lightning counts on len().
        batches = itertools.islice(scheme(self.corpus, self.batch_size, self.num_steps, generator), len(self))
        return itertools.islice(batches, start, None)
