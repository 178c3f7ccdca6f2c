"""Exact frame indices of every sampling mode (0-based; +1 gives the frame file)."""
import numpy as np
import pytest

from ops.data.sampling import dense_indices, sample_indices, segment_indices


def test_val_centres_match_tsm_worked_example():
    assert (segment_indices(30, 8) + 1).tolist() == [2, 6, 10, 14, 17, 21, 25, 29]


def test_new_length_5_starts_and_consecutive_frames():
    idx = segment_indices(30, 8, 5).reshape(8, 5)
    assert (idx[:, 0] + 1).tolist() == [2, 5, 9, 12, 15, 18, 22, 25]
    assert (np.diff(idx, axis=1) == 1).all()


def test_new_length_clamps_at_last_frame():
    idx = segment_indices(6, 2, 5)
    assert idx.max() == 5 and len(idx) == 10


def test_twice_sample_appends_segment_starts():
    idx = segment_indices(30, 8, twice=True) + 1
    assert idx[:8].tolist() == [2, 6, 10, 14, 17, 21, 25, 29]
    assert idx[8:].tolist() == [1, 4, 8, 12, 16, 19, 23, 27]


def test_train_seeded_offsets_inside_each_segment():
    idx = segment_indices(30, 8, train=True, rng=np.random.default_rng(0))
    assert idx.tolist() == segment_indices(30, 8, train=True, rng=np.random.default_rng(0)).tolist()
    avg = 30 // 8
    assert all(k * avg <= i < (k + 1) * avg for k, i in enumerate(idx))
    assert (idx + 1).tolist() == [3, 5, 8, 10, 13, 16, 19, 22]


@pytest.mark.parametrize("n", [3, 5, 8])
def test_short_videos_same_rule_in_val_and_test(n):
    val = sample_indices(n, mode="val", num_segments=8)
    test = sample_indices(n, mode="test", num_segments=8)
    assert val.tolist() == test.tolist()
    assert val.max() <= n - 1 and val[0] == 0 and (np.diff(val) >= 0).all()
    assert (segment_indices(5, 8) + 1).tolist() == [1, 1, 2, 3, 3, 4, 5, 5]


def test_short_video_train_spreads_instead_of_frame_one():
    assert (segment_indices(5, 8, train=True) + 1).tolist() == [1, 1, 2, 2, 3, 4, 4, 5]


def test_clip_index_rule_every_clip():
    # clip i of n samples each segment at fraction (i + 0.5) / n of its length
    n_frames, t, n = 80, 4, 10
    for i in range(n):
        expected = [int(np.floor(20 * (k + (i + 0.5) / n))) for k in range(t)]
        assert segment_indices(n_frames, t, clip_index=i, num_clips=n).tolist() == expected
    assert segment_indices(30, 8, clip_index=1, num_clips=2).tolist() == [2, 6, 10, 14, 17, 21, 25, 29]
    assert (segment_indices(30, 8, clip_index=0, num_clips=2) + 1).tolist() == [1, 5, 9, 13, 16, 20, 24, 28]


def test_clip_index_out_of_range():
    with pytest.raises(ValueError):
        segment_indices(30, 8, clip_index=2, num_clips=2)


def test_dense_test_clips():
    assert (dense_indices(300, 8, 8, clip_index=0, num_clips=10) + 1).tolist() == [1, 9, 17, 25, 33, 41, 49, 57]
    last = dense_indices(300, 8, 8, clip_index=9, num_clips=10)
    assert last[0] == 300 - 64 and last[-1] == 299 - 7
    assert (dense_indices(100, 8, 8) + 1).tolist()[-1] == (100 - 64) // 2 + 57
    assert dense_indices(100, 8, 8).tolist()[0] == (100 - 64) // 2  # one clip: centred window


def test_dense_short_videos_keep_time_order_at_a_shrunk_stride():
    # 40 frames < 8 x 8 window: stride 5, not the reference's wrap-round [1, 9, 17, 25, 33, 1, 9, 17]
    assert (dense_indices(40, 8, 8) + 1).tolist() == [3, 8, 13, 18, 23, 28, 33, 38]
    assert dense_indices(16, 4, 16, clip_index=0, num_clips=2).tolist() == [1, 5, 9, 13]
    for seed in range(50):
        picked = dense_indices(16, 4, 16, train=True, rng=np.random.default_rng(seed))
        assert (np.diff(picked) == 4).all() and 0 <= picked[0] <= 3
    assert dense_indices(3, 8, 8).tolist() == [0, 0, 0, 1, 1, 2, 2, 2]  # fewer frames than T: repeats, in order


def test_dense_train_start_covers_last_valid_start():
    starts = {int(dense_indices(70, 8, 8, train=True, rng=np.random.default_rng(s))[0]) for s in range(200)}
    assert starts == set(range(0, 7))  # 70 - 64 = 6 is reachable (TSM's bound excluded it)
