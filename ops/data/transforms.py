"""Clip transforms: one call per clip on a uint8 tensor, crop first, then resize.

Input frames are uint8 (T, H, W, 3) as sources return them; output views are
uint8 (V, C, T, H, W) stored ``torch.channels_last_3d`` (memory order V, T, H, W, C,
the order decoders and the uint8 resize work in): data-loading workers ship 4x fewer bytes than
float clips and never transpose channels; :meth:`ClipTransform.normalize` turns a batch
into the model's normalised, contiguous float input on the device it runs on (see
``ops.data.loader.model_input``), transposing as it converts. Crop boxes are
``(top, left, height, width)`` in pixels of the frame they are computed on.

* train: TSN multi-scale crop (scales 1, .875, .75, .66 of the short side, pairs
  of sizes at most one scale apart, one of 13 fixed offsets), resize to the crop
  size, horizontal flip with p = 0.5 that swaps labels through the dataset's
  flip map (or never flips, for datasets such as Jester).
* val: resize the short side to ``scale_size``, centre crop ``crop_size``.
* test: 1 crop (as val), 3 crops along the long side (start, centre, end; with
  ``full_res`` the crops are ``scale_size`` square), or 10 crops (4 corners and
  centre, each followed by its mirror image).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

Box = Tuple[int, int, int, int]
MULTISCALE = (1.0, 0.875, 0.75, 0.66)


def fixed_offsets(height: int, width: int, crop_h: int, crop_w: int) -> List[Tuple[int, int]]:
    """The 13 (top, left) offsets of TSN's multi-scale crop (quarter-step grid)."""
    hs, ws = (height - crop_h) // 4, (width - crop_w) // 4
    grid = [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2),  # corners and centre
            (2, 0), (2, 4), (4, 2), (0, 2),          # centre left/right, lower/upper centre
            (1, 1), (1, 3), (3, 1), (3, 3)]          # quarter points
    return [(r * hs, c * ws) for r, c in grid]


def multiscale_crop_box(height: int, width: int, crop_size: int, rng: np.random.Generator,
                        scales: Sequence[float] = MULTISCALE, max_distort: int = 1) -> Box:
    """A random TSN multi-scale crop box (sizes within 3 px of ``crop_size`` snap to it)."""
    base = min(height, width)
    sizes = [int(base * s) for s in scales]
    sizes = [crop_size if abs(s - crop_size) < 3 else s for s in sizes]
    pairs = [(h, w) for i, h in enumerate(sizes) for j, w in enumerate(sizes) if abs(i - j) <= max_distort]
    crop_h, crop_w = pairs[int(rng.integers(len(pairs)))]
    offsets = fixed_offsets(height, width, crop_h, crop_w)
    top, left = offsets[int(rng.integers(len(offsets)))]
    return top, left, crop_h, crop_w


def center_box(height: int, width: int, size: int) -> Box:
    return (height - size) // 2, (width - size) // 2, size, size


def three_crop_boxes(height: int, width: int, size: int) -> List[Box]:
    """Start, centre and end crops along the long side (portrait frames step in height)."""
    if width >= height:
        top = (height - size) // 2
        return [(top, left, size, size) for left in (0, (width - size) // 2, width - size)]
    left = (width - size) // 2
    return [(top, left, size, size) for top in (0, (height - size) // 2, height - size)]


def five_crop_boxes(height: int, width: int, size: int) -> List[Box]:
    """Upper-left, upper-right, lower-left, lower-right and centre."""
    return [(0, 0, size, size), (0, width - size, size, size), (height - size, 0, size, size),
            (height - size, width - size, size, size), center_box(height, width, size)]


def short_side_size(height: int, width: int, short: int) -> Tuple[int, int]:
    """(H, W) after resizing the short side to ``short``, keeping the aspect ratio."""
    if height <= width:
        return short, max(1, int(round(width * short / height)))
    return max(1, int(round(height * short / width))), short


def resize(clip: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Bilinear, antialiased resize of a uint8 clip (T, 3, H, W) to ``size`` (H, W)."""
    if tuple(clip.shape[-2:]) == tuple(size):
        return clip
    from torchvision.transforms.v2.functional import resize as tv_resize

    return tv_resize(clip, list(size), antialias=True)


def crop(clip: torch.Tensor, box: Box) -> torch.Tensor:
    top, left, h, w = box
    return clip[..., top:top + h, left:left + w]


class Normalize:
    """uint8 pixels (..., 3, T, H, W) of any memory layout, on any device -> contiguous float32
    ``(x * value_range / 255 - mean) / std``, computed as one multiply-add per pixel;
    ``channel_order="bgr"`` swaps the RGB frames' channels first."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], value_range: float = 1.0,
                 channel_order: str = "rgb") -> None:
        if channel_order not in ("rgb", "bgr"):
            raise ValueError(f"channel order must be rgb or bgr, not {channel_order!r}")
        self.bgr = channel_order == "bgr"
        std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1, 1)
        self.scale = (value_range / 255.0) / std_t
        self.shift = -torch.tensor(mean, dtype=torch.float32).view(3, 1, 1, 1) / std_t

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale.device != x.device:  # moved once, not on every batch or stream frame
            self.scale, self.shift = self.scale.to(x.device), self.shift.to(x.device)
        if self.bgr:
            x = x.flip(-4)
        out = torch.empty(x.shape, dtype=torch.float32, device=x.device).copy_(x)
        return out.mul_(self.scale).add_(self.shift)


@dataclass
class ClipTransform:
    """Turns uint8 frames (T, H, W, 3) into uint8 views (V, C, T, H, W); :meth:`normalize`
    makes them the model's float input.

    mode: ``train`` | ``val`` | ``test``; ``test_crops`` 1, 3 or 10 (test only).
    flip: ``plain`` | ``swap`` | ``none`` (train only); ``flip_map`` swaps labels.
    channel_order: ``rgb`` or ``bgr`` (:class:`Normalize`).
    """

    mode: str
    crop_size: int
    scale_size: int
    mean: Sequence[float]
    std: Sequence[float]
    value_range: float = 1.0
    test_crops: int = 1
    full_res: bool = False
    flip: str = "plain"
    flip_map: Optional[Dict[int, int]] = None
    channel_order: str = "rgb"

    @classmethod
    def of(cls, spec, mode: str = "test", **views) -> "ClipTransform":
        """The transform of a model's input spec (``archs.registry.InputSpec``): its crop, scale,
        normalisation and channel order; ``views`` the other fields (test crops, flips)."""
        return cls(mode=mode, crop_size=spec.crop_size, scale_size=spec.scale_size, mean=spec.mean, std=spec.std,
                   value_range=spec.value_range, channel_order=spec.channel_order, **views)

    def __post_init__(self) -> None:
        if self.mode not in ("train", "val", "test"):
            raise ValueError(f"mode must be train, val or test, not {self.mode!r}")
        if self.test_crops not in (1, 3, 10):
            raise ValueError(f"test crops must be 1, 3 or 10, not {self.test_crops}")
        self._normalize = Normalize(self.mean, self.std, self.value_range, self.channel_order)

    @property
    def num_views(self) -> int:
        return self.test_crops if self.mode == "test" else 1

    def boxes(self, height: int, width: int, rng: Optional[np.random.Generator] = None) -> Tuple[Tuple[int, int], List[Box]]:
        """The size frames are first resized to, and the crop boxes on that size."""
        if self.mode == "train":
            return (height, width), [multiscale_crop_box(height, width, self.crop_size, rng or np.random.default_rng())]
        size = short_side_size(height, width, self.scale_size)
        if self.mode == "val" or self.test_crops == 1:
            return size, [center_box(*size, self.crop_size)]
        if self.test_crops == 3:
            return size, three_crop_boxes(*size, self.scale_size if self.full_res else self.crop_size)
        return size, five_crop_boxes(*size, self.crop_size)

    def __call__(self, frames: torch.Tensor, labels: Sequence[int],
                 rng: Optional[np.random.Generator] = None) -> Tuple[torch.Tensor, Tuple[int, ...]]:
        """frames: uint8 (T, H, W, 3) -> (views (V, C, T, H', W') channels-last, labels after any flip)."""
        # (T, 3, H, W) as a view of the (T, H, W, 3) memory, which the uint8 resize reads fastest
        clip = frames.permute(0, 3, 1, 2)
        size, boxes = self.boxes(clip.shape[-2], clip.shape[-1], rng)
        if self.mode == "train":
            view = resize(crop(clip, boxes[0]), (self.crop_size, self.crop_size))
            if self.flip != "none" and rng is not None and rng.random() < 0.5:
                view = view.flip(-1)
                if self.flip == "swap" and self.flip_map:
                    labels = tuple(self.flip_map.get(lab, lab) for lab in labels)
            views = [view]
        else:
            resized = resize(clip, size)
            views = [crop(resized, box) for box in boxes]
            if self.mode == "test" and self.test_crops == 10:
                views = [v for crop_view in views for v in (crop_view, crop_view.flip(-1))]
        # each view (T, 3, H, W) lies as (T, H, W, 3): stacked as it lies, then viewed as (V, C, T, H, W)
        return torch.stack([v.permute(0, 2, 3, 1) for v in views]).permute(0, 4, 1, 2, 3), tuple(labels)

    def normalize(self, views: torch.Tensor) -> torch.Tensor:
        """uint8 (..., 3, T, H, W) on any device -> contiguous float32 normalised as the input spec says."""
        return self._normalize(views)
