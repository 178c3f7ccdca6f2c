"""The train sampler: K copies over K ranks (repeated augmentation), a plain shuffle for K = 1, seeded, resumable."""
from collections import Counter

import numpy as np
import pytest

from ops.data.repeated_aug import TrainSampler, item_rng, split_key
from ops.engine.distributed import DistInfo


def ranks(n, world, repeats, seed=0, epoch=0):
    out = []
    for rank in range(world):
        sampler = TrainSampler(n, DistInfo(rank=rank, world_size=world), seed, repeats)
        sampler.set_epoch(epoch)
        out.append(list(sampler))
    return out


def test_each_selected_video_goes_to_k_ranks_as_k_copies():
    n, world, k = 30, 3, 3
    per_rank = ranks(n, world, k)
    assert [len(keys) for keys in per_rank] == [10, 10, 10]  # ceil(n / world), as without repetition
    where = {}
    for rank, keys in enumerate(per_rank):
        for key in keys:
            index, copy = split_key(key, n)
            where.setdefault(index, []).append((rank, copy))
    assert len(where) == n // k  # n / K distinct videos this epoch
    for placed in where.values():
        assert sorted(r for r, _ in placed) == [0, 1, 2] and sorted(c for _, c in placed) == [0, 1, 2]


def test_epochs_shuffle_differently_and_cover_the_set():
    n = 24
    seen = set()
    orders = []
    for epoch in range(12):
        keys = ranks(n, 2, 3, epoch=epoch)
        orders.append(keys)
        seen |= {split_key(key, n)[0] for rank_keys in keys for key in rank_keys}
    assert orders[0] != orders[1] and seen == set(range(n))
    assert ranks(n, 2, 3, epoch=5) == orders[5]  # seeded: the same again


def test_skip_resumes_inside_an_epoch_and_k1_is_a_plain_shuffle():
    info = DistInfo(rank=1, world_size=2)
    sampler = TrainSampler(17, info, 4, 2)
    sampler.set_epoch(3)
    full = list(sampler)
    sampler.set_epoch(3, skip=5)
    assert list(sampler) == full[5:] and len(sampler) == len(full) - 5
    plain = [TrainSampler(17, DistInfo(rank=r, world_size=2), 4) for r in range(2)]
    for sampler in plain:
        sampler.set_epoch(3)
    keys = [list(sampler) for sampler in plain]
    assert all(len(k) == 9 for k in keys) and set(keys[0] + keys[1]) == set(range(17))  # 17 + 1 wrapped round
    with pytest.raises(ValueError):
        TrainSampler(17, info, 4, 0)


def test_copies_get_their_own_augmentation_and_copy_zero_keeps_the_plain_seed():
    n = 10
    plain = np.random.default_rng((0, 2, 7)).random(4)
    assert np.array_equal(item_rng(0, 2, 7, n).random(4), plain)
    assert not np.array_equal(item_rng(0, 2, 7 + n, n).random(4), plain)
    assert np.array_equal(item_rng(0, 2, 7 + 2 * n, n).random(4), item_rng(0, 2, 7 + 2 * n, n).random(4))
    assert Counter(split_key(k, n)[0] for k in (7, 17, 27)) == {7: 3}
