"""Transforms: exact crop boxes, label-swapping flip, normalisation."""
import numpy as np
import torch

from ops.data.transforms import (ClipTransform, center_box, fixed_offsets, five_crop_boxes, multiscale_crop_box,
                            short_side_size, three_crop_boxes)

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def frames(t=4, h=256, w=340):
    return torch.arange(t * h * w * 3, dtype=torch.int64).remainder(251).to(torch.uint8).view(t, h, w, 3)


def test_fixed_offsets_13_positions():
    offs = fixed_offsets(256, 340, 224, 224)
    ws, hs = (340 - 224) // 4, (256 - 224) // 4
    assert len(offs) == 13
    assert offs[:5] == [(0, 0), (0, 4 * ws), (4 * hs, 0), (4 * hs, 4 * ws), (2 * hs, 2 * ws)]


def test_multiscale_crop_sizes_for_340x256():
    sizes = set()
    for s in range(300):
        top, left, h, w = multiscale_crop_box(256, 340, 224, np.random.default_rng(s))
        sizes.add((h, w))
        assert top + h <= 256 and left + w <= 340
    allowed = [256, 224, 192, 168]  # 256 * (1, .875, .75, .66); 224 snaps
    expected = {(allowed[i], allowed[j]) for i in range(4) for j in range(4) if abs(i - j) <= 1}
    assert sizes == expected and len(expected) == 10


def test_three_crops_along_long_side():
    assert three_crop_boxes(256, 340, 224) == [(16, 0, 224, 224), (16, 58, 224, 224), (16, 116, 224, 224)]
    # portrait: steps in height (TSM's GroupFullResSample gave 3 identical crops here)
    assert three_crop_boxes(340, 256, 224) == [(0, 16, 224, 224), (58, 16, 224, 224), (116, 16, 224, 224)]
    assert three_crop_boxes(256, 341, 256) == [(0, 0, 256, 256), (0, 42, 256, 256), (0, 85, 256, 256)]


def test_five_crops_and_centre():
    assert five_crop_boxes(256, 340, 224) == [(0, 0, 224, 224), (0, 116, 224, 224), (32, 0, 224, 224),
                                               (32, 116, 224, 224), (16, 58, 224, 224)]
    assert center_box(256, 340, 224) == (16, 58, 224, 224)
    assert short_side_size(240, 320, 256) == (256, 341) and short_side_size(320, 240, 256) == (341, 256)


def test_val_is_resize_then_centre_crop_exact():
    f = frames(2, 256, 340)
    tf = ClipTransform("val", 224, 256, (0, 0, 0), (1, 1, 1), value_range=255.0)
    views, labels = tf(f, (3,))
    assert views.shape == (1, 3, 2, 224, 224) and views.dtype == torch.uint8 and labels == (3,)
    expected = f[:, 16:240, 58:282].permute(3, 0, 1, 2)
    assert torch.equal(views[0], expected)
    # stored as the frames lie (V, T, H, W, C) in their own compact storage: workers ship no extra bytes
    assert views.is_contiguous(memory_format=torch.channels_last_3d) and views.untyped_storage().nbytes() == views.numel()
    x = tf.normalize(views)
    assert torch.equal(x[0], expected.float()) and x.is_contiguous()  # mean 0, std 1 on 0-255


def test_test_crops_counts_and_full_res():
    f = frames(2, 120, 160)
    assert ClipTransform("test", 64, 96, MEAN, STD, test_crops=3)(f, (0,))[0].shape == (3, 3, 2, 64, 64)
    assert ClipTransform("test", 64, 96, MEAN, STD, test_crops=3, full_res=True)(f, (0,))[0].shape == (3, 3, 2, 96, 96)
    ten = ClipTransform("test", 64, 96, MEAN, STD, test_crops=10)(f, (0,))[0]
    assert ten.shape == (10, 3, 2, 64, 64)
    assert torch.equal(ten[1], ten[0].flip(-1))  # each crop followed by its mirror


def test_flip_swaps_labels_through_map():
    f = frames(2, 64, 64)
    tf = ClipTransform("train", 64, 64, MEAN, STD, flip="swap", flip_map={86: 87, 87: 86})
    outcomes = {tf(f, (86,), np.random.default_rng(s))[1] for s in range(40)}
    assert outcomes == {(86,), (87,)}
    never = ClipTransform("train", 64, 64, MEAN, STD, flip="none")
    base = never(f, (86,), np.random.default_rng(0))[0]
    assert all(torch.equal(never(f, (86,), np.random.default_rng(0))[0], base) for _ in range(3))


def test_normalisation_values_on_a_batch():
    f = torch.full((1, 8, 8, 3), 255, dtype=torch.uint8)
    tf = ClipTransform("val", 8, 8, MEAN, STD)
    views, _ = tf(f, (0,))
    batch = torch.stack([views, views])  # (N, V, C, T, H, W) as a loader gives it
    out = tf.normalize(batch)
    assert out.dtype == torch.float32 and out.shape == batch.shape
    assert torch.allclose(out, torch.full_like(out, (1.0 - 0.5) / 0.25))
