"""Clip-consistent RandAugment: one plan per clip, the same on every frame; seeded; M scales; N=0 is identity."""
import numpy as np
import pytest
import torch

from ops.common.errors import UserError
from ops.data.augment import OP_NAMES, RandAugment, apply_op, parse_randaugment


def textured_clip(t=4, h=24, w=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.randint(0, 256, (1, 3, h, w), generator=g, dtype=torch.uint8)
    return base.repeat(t, 1, 1, 1)


def moving_clip(t=4, h=24, w=32):
    """Frames that differ (a bright square moving right) on a textured background."""
    clip = textured_clip(t, h, w).clone() // 2
    for i in range(t):
        clip[i, :, 8:16, 4 + 4 * i:12 + 4 * i] = 250
    return clip


@pytest.mark.parametrize("op", OP_NAMES)
def test_every_op_keeps_identical_frames_identical_and_uint8(op):
    clip = textured_clip()
    out = apply_op(clip, op, 0.2)
    assert out.dtype == torch.uint8 and out.shape == clip.shape
    assert all(torch.equal(out[0], out[i]) for i in range(1, len(out)))


def test_ops_are_drawn_once_per_clip_and_applied_to_every_frame():
    clip = moving_clip()
    aug = RandAugment(3, 12)
    checked_frame_by_frame = 0
    for seed in range(10):
        plan = aug.plan(np.random.default_rng(seed))
        out = aug(clip, np.random.default_rng(seed))
        assert torch.equal(out, aug.apply(clip, plan))
        # geometric and pointwise ops: each frame alone gives the same result as inside the clip
        frame_wise = [op for op, _ in plan if op not in ("contrast", "autocontrast", "equalize")]
        if len(frame_wise) == len(plan):
            checked_frame_by_frame += 1
            for i in range(len(clip)):
                one = clip[i:i + 1]
                for name, value in plan:
                    one = apply_op(one, name, value)
                assert torch.equal(out[i:i + 1], one)
    assert checked_frame_by_frame >= 2


def test_on_the_train_views_of_clip_transform():
    from ops.data.transforms import ClipTransform

    transform = ClipTransform(mode="train", crop_size=16, scale_size=18, mean=(0.5,) * 3, std=(0.5,) * 3, flip="none")
    frames = textured_clip(t=5, h=24, w=32).permute(0, 2, 3, 1)  # (T, H, W, 3): 5 identical frames
    views, _ = transform(frames, (0,), np.random.default_rng(0))
    aug = RandAugment(2, 15)
    out = aug.augment_views(views, np.random.default_rng(1))
    assert out.shape == views.shape == (1, 3, 5, 16, 16) and out.dtype == torch.uint8
    assert out.is_contiguous(memory_format=torch.channels_last_3d)
    assert all(torch.equal(out[:, :, 0], out[:, :, t]) for t in range(5))
    assert torch.equal(out[0].permute(1, 0, 2, 3), aug(views[0].permute(1, 0, 2, 3), np.random.default_rng(1)))


def test_statistics_ops_use_the_whole_clip():
    clip = moving_clip()
    clip[0] //= 4  # a dark first frame: per-frame autocontrast would brighten it alone
    out = apply_op(clip, "autocontrast", 0.0)
    lo, hi = clip.amin(dim=(0, 2, 3)), clip.amax(dim=(0, 2, 3))  # per channel, over the clip
    expected = ((clip.float() - lo.view(1, 3, 1, 1)) * 255 / (hi - lo).view(1, 3, 1, 1).float())
    assert (out.float() - expected).abs().max() <= 1.0
    assert out[0].float().mean() < out[1].float().mean() / 2  # still dark: one remapping for all frames


def test_same_rng_seed_same_clip_and_different_seeds_differ():
    clip = moving_clip()
    aug = RandAugment(2, 9)
    assert torch.equal(aug(clip, np.random.default_rng(4)), aug(clip, np.random.default_rng(4)))
    outs = {aug(clip, np.random.default_rng(s)).numpy().tobytes() for s in range(6)}
    assert len(outs) > 3


def test_magnitude_scales_the_change_and_zero_ops_is_identity():
    clip = moving_clip()
    diffs = []
    for m in (0, 5, 15, 30):
        aug = RandAugment(1, m, ops=("rotate",))
        diffs.append((aug(clip, np.random.default_rng(0)).float() - clip.float()).abs().mean().item())
    assert diffs[0] == 0 and diffs[0] < diffs[1] < diffs[2] < diffs[3]
    value = RandAugment(1, 10, ops=("brightness",)).plan(np.random.default_rng(0))[0][1]
    assert abs(value) == pytest.approx(0.3)  # 0.9 at M=30, linear in M
    rng = np.random.default_rng(1)
    assert torch.equal(RandAugment(0, 30)(clip, rng), clip)


def test_flag_parsing_and_ranges():
    assert parse_randaugment("2,9") == (2, 9.0)
    for bad in ("2", "a,b", "2,9,1", "2,31", "-1,9"):
        with pytest.raises(UserError, match="--randaugment"):
            parse_randaugment(bad)
