"""RandAugment for video: the same random ops, with the same magnitudes, on every frame of a clip.

``RandAugment(N, M)`` (Cubuk et al., 2020) picks N ops uniformly (with replacement)
from :data:`OPS` and applies each at magnitude M on a 0..30 scale (torchvision's 31
bins; 9 is the usual choice). For a clip the ops, their magnitudes and their signs
are drawn ONCE per clip from the dataset's per-sample ``numpy`` generator (so a
resumed run draws the same), then applied to all frames alike:

* geometric ops (shear, translate, rotate) and pointwise colour ops (brightness,
  colour, posterize, solarize) act on each frame identically;
* ops whose result depends on image statistics (contrast: the mean grey level;
  autocontrast: the channel minimum and maximum; equalize: the histogram) take those
  statistics over the whole clip, not per frame, so frames of one clip never get
  different remappings (no flicker that the model could mistake for motion);
* sharpness is a 3x3 filter inside each frame.

Where it runs: on the train view ``(T, 3, H, W)`` uint8 right after the crop, resize
and flip of ``ops.data.transforms.ClipTransform`` (train mode, one view) -- either
inside it, before the views are stacked channels-last (``RandAugment.__call__``), or
on its output (``RandAugment.augment_views``), which is the same thing in train mode. After the crop the ops see exactly the pixels the
model sees (as image RandAugment after RandomResizedCrop), they work on 224^2 instead
of full frames, and they stay on uint8 in the data-loading workers; with the same
``rng`` as the crop and flip, the whole sample stays a pure function of its seed.
"""
from __future__ import annotations

import math
from typing import List, Sequence, Tuple

import numpy as np
import torch
from torchvision.transforms.v2 import functional as F

from ops.common.errors import UserError

MAX_MAGNITUDE = 30
FILL = [128.0, 128.0, 128.0]  # grey where a geometric op uncovers the frame

# op name -> (largest value at magnitude 30, signed): the value scales linearly with M.
OPS = {
    "identity": (0.0, False),
    "shear_x": (0.3, True),          # shear factor (tan of the angle)
    "shear_y": (0.3, True),
    "translate_x": (0.45, True),     # fraction of the width
    "translate_y": (0.45, True),     # fraction of the height
    "rotate": (30.0, True),          # degrees
    "brightness": (0.9, True),       # factor 1 +- value
    "color": (0.9, True),
    "contrast": (0.9, True),
    "sharpness": (0.9, True),
    "posterize": (4.0, False),       # bits removed (8 -> 4)
    "solarize": (1.0, False),        # fraction of the range inverted, from the top
    "autocontrast": (0.0, False),
    "equalize": (0.0, False),
}
OP_NAMES = tuple(OPS)
Plan = List[Tuple[str, float]]


def parse_randaugment(text: str) -> Tuple[int, float]:
    """``"N,M"`` (the ``--randaugment`` flag) -> (N, M); :class:`UserError` when malformed or out of range."""
    parts = text.split(",")
    try:
        num_ops, magnitude = int(parts[0]), float(parts[1])
        if len(parts) != 2:
            raise ValueError
    except (ValueError, IndexError):
        raise UserError(f"--randaugment takes N,M (ops per clip, magnitude 0-{MAX_MAGNITUDE}), e.g. 2,9; "
                        f"got {text!r}") from None
    RandAugment(num_ops, magnitude)  # range checks
    return num_ops, magnitude


def _tall(clip: torch.Tensor) -> torch.Tensor:
    """(T, 3, H, W) -> one image (3, T*H, W) holding the frames one above the other."""
    t, c, h, w = clip.shape
    return clip.permute(1, 0, 2, 3).reshape(c, t * h, w)


def _untall(image: torch.Tensor, t: int) -> torch.Tensor:
    c, th, w = image.shape
    return image.reshape(c, t, th // t, w).permute(1, 0, 2, 3)


def _clip_wide(fn, clip: torch.Tensor) -> torch.Tensor:
    """Apply an image op whose statistics should cover the whole clip (the frames stacked as one image)."""
    return _untall(fn(_tall(clip)), clip.shape[0]).contiguous()


def apply_op(clip: torch.Tensor, name: str, value: float) -> torch.Tensor:
    """One op at ``value`` (already signed and scaled) on a uint8 clip (T, 3, H, W)."""
    height, width = clip.shape[-2:]
    if name == "identity":
        return clip
    if name in ("shear_x", "shear_y"):
        degrees = math.degrees(math.atan(value))
        shear = [degrees, 0.0] if name == "shear_x" else [0.0, degrees]
        return F.affine(clip, angle=0.0, translate=[0, 0], scale=1.0, shear=shear, fill=FILL)
    if name in ("translate_x", "translate_y"):
        shift = [int(round(value * width)), 0] if name == "translate_x" else [0, int(round(value * height))]
        return F.affine(clip, angle=0.0, translate=shift, scale=1.0, shear=[0.0, 0.0], fill=FILL)
    if name == "rotate":
        return F.rotate(clip, value, fill=FILL)
    if name == "brightness":
        return F.adjust_brightness(clip, 1.0 + value)
    if name == "color":
        return F.adjust_saturation(clip, 1.0 + value)
    if name == "contrast":
        return _clip_wide(lambda im: F.adjust_contrast(im, 1.0 + value), clip)
    if name == "sharpness":
        return F.adjust_sharpness(clip, 1.0 + value)
    if name == "posterize":
        return F.posterize(clip, 8 - int(round(value)))
    if name == "solarize":
        threshold = int(round(256 * (1.0 - value)))
        return torch.where(clip >= threshold, 255 - clip, clip)
    if name == "autocontrast":
        return _clip_wide(F.autocontrast, clip)
    if name == "equalize":
        return _clip_wide(F.equalize, clip)
    raise ValueError(f"unknown RandAugment op {name!r}; ops: {', '.join(OP_NAMES)}")


class RandAugment:
    """``N`` random ops at magnitude ``M`` (0..30), drawn once per clip and applied to every frame."""

    def __init__(self, num_ops: int, magnitude: float, ops: Sequence[str] = OP_NAMES) -> None:
        if num_ops < 0:
            raise UserError(f"--randaugment: N (ops per clip) must be >= 0, not {num_ops}")
        if not 0 <= magnitude <= MAX_MAGNITUDE:
            raise UserError(f"--randaugment: M (magnitude) must be in 0-{MAX_MAGNITUDE}, not {magnitude:g}")
        unknown = [op for op in ops if op not in OPS]
        if unknown:
            raise ValueError(f"unknown RandAugment op(s) {unknown}; ops: {', '.join(OP_NAMES)}")
        self.num_ops, self.magnitude, self.ops = num_ops, float(magnitude), tuple(ops)

    def plan(self, rng: np.random.Generator) -> Plan:
        """The clip's ops as (name, signed value), drawn from ``rng``."""
        out: Plan = []
        for _ in range(self.num_ops):
            name = self.ops[int(rng.integers(len(self.ops)))]
            top, signed = OPS[name]
            value = top * self.magnitude / MAX_MAGNITUDE
            if signed and rng.random() < 0.5:
                value = -value
            out.append((name, value))
        return out

    @staticmethod
    def apply(clip: torch.Tensor, plan: Plan) -> torch.Tensor:
        """The ops of ``plan`` in order on a uint8 clip (T, 3, H, W)."""
        for name, value in plan:
            clip = apply_op(clip, name, value)
        return clip

    def __call__(self, clip: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """uint8 clip (T, 3, H, W) -> augmented uint8 clip (T, 3, H, W)."""
        return self.apply(clip, self.plan(rng))

    def augment_views(self, views: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """uint8 views (V, C, T, H, W) as ``ClipTransform`` returns them -> the same shape,
        ``channels_last_3d``; one plan for the clip, applied to every view."""
        plan = self.plan(rng)
        out = [self.apply(view.permute(1, 0, 2, 3), plan).permute(1, 0, 2, 3) for view in views]
        return torch.stack(out).contiguous(memory_format=torch.channels_last_3d)
