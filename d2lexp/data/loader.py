"""Batches drawn from in-memory tensors by indexing: no Dataset, no per-item Python.

A whole split lives in a few tensors (uint8 images, int64 labels); a batch is
`tensor.index_select(0, indices)`, a single gather. The order of an epoch depends only on the
seed and the epoch number, so a resumed run sees the same batches as one that
was never interrupted, and each process of a distributed run takes its own
shard of the same permutation.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch


def _distributed_rank_and_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def seeded_generator(seed: int, *stream: int) -> torch.Generator:
    """A CPU generator whose state is a function of the seed and the stream keys alone."""
    seed &= 0xFFFF_FFFF_FFFF_FFFF  # SeedSequence takes non-negative entropy
    state = np.random.SeedSequence([seed & 0xFFFFFFFF, seed >> 32, *stream]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & 0x7FFF_FFFF_FFFF_FFFF)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of one epoch's shuffle: a function of (seed, epoch) alone."""
    return seeded_generator(seed, 0, epoch)


class EpochSampler:
    """The index order of one epoch: a seeded permutation (or 0..n-1), sharded by rank.

    Lightning calls `set_epoch` on a loader's `sampler` at the start of every
    epoch, as it does for `DistributedSampler`.
    """

    def __init__(self, num_items: int, shuffle: bool, seed: int = 0) -> None:
        self.num_items = num_items
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def num_local_items(self) -> int:
        _, world = _distributed_rank_and_world()
        return math.ceil(self.num_items / world)

    def indices(self) -> torch.Tensor | None:
        """This rank's indices for the current epoch; None means 'all, in order'."""
        rank, world = _distributed_rank_and_world()
        if not self.shuffle and world == 1:
            return None
        if self.shuffle:
            order = torch.randperm(self.num_items, generator=epoch_generator(self.seed, self.epoch))
        else:
            order = torch.arange(self.num_items)
        if world > 1:
            # Pad by wrapping around so every rank takes the same number of steps,
            # as torch's DistributedSampler does.
            total = self.num_local_items() * world
            order = torch.cat([order, order[: total - self.num_items]])[rank::world]
        return order


class ResumableLoader:
    """Base of d2lexp's loaders: an epoch's batches depend only on (seed, epoch), and the
    loader can stop and resume mid-epoch.

    Lightning saves `state_dict()` (epoch, batches handed out) in every checkpoint and
    gives it back through `load_state_dict` on resuming; the next epoch's iteration then
    skips the batches already trained on, so a resumed run sees exactly the batches an
    uninterrupted one would. Subclasses define `_batches(start)`.
    """

    def __init__(self, sampler: EpochSampler) -> None:
        self.sampler = sampler
        self.batch_sampler = None  # Lightning inspects DataLoader-like objects for both attributes
        self._handed_out = 0
        self._resume_at: tuple[int, int] | None = None

    def _batches(self, start: int) -> Iterator[Any]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[Any]:
        start = 0
        if self._resume_at is not None and self._resume_at[0] == self.sampler.epoch:
            start = self._resume_at[1]
        self._resume_at = None
        self._handed_out = start
        for batch in self._batches(start):
            self._handed_out += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.sampler.epoch, "batches": self._handed_out}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume_at = (int(state["epoch"]), int(state["batches"]))


class TensorBatchLoader(ResumableLoader):
    """Iterate over aligned tensors in minibatches; an iterable Lightning accepts as a dataloader.

    Unshuffled, single-process batches are views (slices) of the tensors, so
    evaluation copies nothing. Tensors may live on any device; indices follow them.
    """

    def __init__(
        self,
        tensors: Sequence[torch.Tensor],
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        if not tensors or any(len(t) != len(tensors[0]) for t in tensors):
            raise ValueError("TensorBatchLoader needs tensors of equal length")
        super().__init__(EpochSampler(len(tensors[0]), shuffle=shuffle, seed=seed))
        self.tensors = tuple(tensors)
        self.batch_size = batch_size
        self.drop_last = drop_last

    def __len__(self) -> int:
        n = self.sampler.num_local_items()
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _batches(self, start: int) -> Iterator[tuple[torch.Tensor, ...]]:
        order = self.sampler.indices()
        if order is not None:
            order = order.to(self.tensors[0].device, non_blocking=True)
        n = len(order) if order is not None else len(self.tensors[0])
        stop = n - n % self.batch_size if self.drop_last else n
        for first in range(start * self.batch_size, stop, self.batch_size):
            if order is None:
                yield tuple(t[first : first + self.batch_size] for t in self.tensors)
            else:
                index = order[first : first + self.batch_size]
                # index_select, not t[index]: the same gather, without advanced indexing's host-side
                # setup, which costs more than the gather itself (docs/performance.md).
                yield tuple(t.index_select(0, index) for t in self.tensors)
