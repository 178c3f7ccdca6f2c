"""Repeated augmentation (Hoffer et al., 2020; DeiT's RASampler): each selected video
appears K times in one epoch, as K differently augmented clips spread over the processes.

Per epoch (seed + epoch, so every rank draws the same order): shuffle the N videos,
repeat each K times in place (a a a b b b ...), and deal the list round-robin to the
ranks, so the K copies of a video land on K different ranks when there are at least
K of them (on fewer ranks, some copies meet in one rank's batch). Each rank takes
ceil(N / world_size) items (as DistributedSampler does, padding by wrapping round): an
epoch has the same number of steps as without repetition and sees about N / K distinct
videos, each K times; over epochs the shuffles cover the whole set.

The sampler yields sample KEYS, ``copy * N + index`` (copy 0..K-1), so the copies can
be augmented differently: the dataset splits a key with :func:`split_key` and seeds its
per-sample generator with :func:`item_rng`, which for copy 0 is the generator it has
without repetition, ``default_rng((seed, epoch, index))``; with K = 1 every key is the
plain index and nothing changes.
"""
from __future__ import annotations

from typing import Iterator, List, Tuple

import numpy as np
import torch

from ops.engine.distributed import DistInfo


def split_key(key: int, n: int) -> Tuple[int, int]:
    """A sampler key -> (index of the video, copy number)."""
    copy, index = divmod(int(key), n)
    return index, copy


def item_rng(seed: int, epoch: int, key: int, n: int) -> np.random.Generator:
    """The per-sample generator of ``key``: a pure function of (seed, epoch, index, copy),
    the same as without repetition for copy 0."""
    index, copy = split_key(key, n)
    return np.random.default_rng((seed, epoch, index) if copy == 0 else (seed, epoch, index, copy))


class TrainSampler(torch.utils.data.Sampler):
    """The training sampler: sample keys (see :func:`split_key`) for one rank, ``repeats``
    copies of each selected video (1: a plain shuffle split across ranks like
    DistributedSampler); ``set_epoch(epoch, skip)``: ``skip`` items of this rank's list left
    out at the start, to resume inside an epoch."""

    def __init__(self, n: int, info: DistInfo, seed: int, repeats: int = 1) -> None:
        if repeats < 1:
            raise ValueError(f"--repeated-aug must be >= 1, not {repeats}")
        self.n, self.info, self.seed, self.repeats = n, info, seed, repeats
        self.epoch, self.skip = 0, 0
        self.per_rank = -(-n // info.world_size)

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def epoch_order(self) -> List[int]:
        """The whole epoch's keys before they are dealt to the ranks (length per_rank x world_size)."""
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        perm = torch.randperm(self.n, generator=g)
        order = (perm[:, None] + self.n * torch.arange(self.repeats)).flatten().tolist()
        total = self.per_rank * self.info.world_size
        while len(order) < total:  # a tiny set with K * N < world_size: wrap around
            order += order
        return order[:total]

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_order()[self.info.rank::self.info.world_size][self.skip:])

    def __len__(self) -> int:
        return self.per_rank - self.skip
