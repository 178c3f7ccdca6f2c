"""Mixup, CutMix and label smoothing on a training batch, with soft targets.

The batch is mixed with itself reversed (clip i with clip N-1-i), one lambda per batch,
drawn from Beta(alpha, alpha). With both mixup and cutmix on, each step picks one of
them with probability ``switch_prob`` for cutmix.

* mixup: ``x = lam * x + (1 - lam) * x_reversed``.
* cutmix: one box, the SAME on every frame of a clip (a box that moved from frame to
  frame would paste motion that is not in either video), pasted from the reversed
  batch; lambda is then corrected to the kept area, ``1 - box_area / (H * W)``, so the
  targets match what the pixels show even where the box is clipped at the border.

Targets become soft (N, K) float32 rows:

* single-label (int64 class indices (N,)): label smoothing first (``1 - eps`` on the
  class, ``eps / K`` everywhere), then ``lam * y + (1 - lam) * y_reversed``: every
  row sums to 1; train with cross-entropy on probabilities (:func:`soft_target_loss`).
* multi-label (multi-hot float (N, K)): each class is its own binary problem, so
  smoothing moves each label towards 0.5 (``y * (1 - eps) + eps / 2``) and mixing
  uses the same lambda per class, ``lam * y + (1 - lam) * y_reversed`` -- a class
  present in both clips stays 1, one present in one clip gets the share of that clip
  (its pixel area for cutmix); rows are NOT renormalised to sum to 1 (that would turn
  the BCE targets into a distribution over classes and lower every present label).
  Train with binary cross-entropy (:func:`soft_target_loss`).

Randomness comes only from the ``torch.Generator`` passed in; :func:`step_generator`
seeds one per (seed, rank, iteration), so a resumed run mixes exactly as before.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

Box = Tuple[int, int, int, int]  # (top, left, height, width)


def step_generator(seed: int, rank: int, iteration: int) -> torch.Generator:
    """A generator for one training step of one process: independent per rank, and the
    same again when a resumed run reaches the same iteration."""
    state = np.random.SeedSequence([seed, rank, iteration]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & (2 ** 63 - 1))


def sample_beta(alpha: float, generator: torch.Generator) -> float:
    """One draw of Beta(alpha, alpha), taken from ``generator``."""
    seed = int(torch.randint(0, 2 ** 62, (1,), generator=generator))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def soft_targets(target: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """Class indices (N,) -> smoothed one-hot (N, K) rows summing to 1; multi-hot (N, K) ->
    each label smoothed towards 0.5. float32, on ``target``'s device."""
    if target.ndim == 1:
        hot = F.one_hot(target.long(), num_classes).float()
        return hot * (1.0 - smoothing) + smoothing / num_classes
    return target.float() * (1.0 - smoothing) + smoothing / 2.0


def cutmix_box(height: int, width: int, lam: float, generator: torch.Generator) -> Box:
    """A box of about ``(1 - lam)`` of the frame area, centred uniformly at random, clipped to the frame."""
    ratio = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy, cx = (int(v) for v in torch.randint(0, 2 ** 31, (2,), generator=generator))
    cy, cx = cy % height, cx % width
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    return top, left, bottom - top, right - left


@dataclass
class MixResult:
    """A mixed batch: ``x`` (N, C, T, H, W), soft ``target`` (N, K), the lambda in effect
    (area-corrected for cutmix; 1.0 when nothing was mixed), ``mode`` ("mixup", "cutmix"
    or "none") and the cutmix ``box`` (top, left, height, width) or None."""

    x: torch.Tensor
    target: torch.Tensor
    lam: float
    mode: str
    box: Optional[Box] = None


@dataclass
class Mixer:
    """``--mixup A``, ``--cutmix A``, ``--label-smoothing E``; all off (0) by default.

    Call it on the normalised float batch and the loader's targets, before the forward pass.
    """

    num_classes: int
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    label_smoothing: float = 0.0
    switch_prob: float = 0.5

    def __post_init__(self) -> None:
        for name in ("mixup_alpha", "cutmix_alpha"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name.replace('_alpha', '')} alpha must be >= 0, not {getattr(self, name)}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label smoothing must be in [0, 1), not {self.label_smoothing}")

    @property
    def enabled(self) -> bool:
        """Whether targets become soft (any of mixup, cutmix, label smoothing is on)."""
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0 or self.label_smoothing > 0

    def _mode(self, generator: torch.Generator) -> str:
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            return "cutmix" if float(torch.rand((), generator=generator)) < self.switch_prob else "mixup"
        if self.cutmix_alpha > 0:
            return "cutmix"
        return "mixup" if self.mixup_alpha > 0 else "none"

    def __call__(self, x: torch.Tensor, target: torch.Tensor, generator: torch.Generator) -> MixResult:
        """x: float (N, C, T, H, W); target: int64 (N,) or multi-hot float (N, K)."""
        soft = soft_targets(target, self.num_classes, self.label_smoothing)
        mode = self._mode(generator)
        if mode == "none" or x.shape[0] < 2:
            return MixResult(x, soft, 1.0, "none")
        if mode == "mixup":
            lam = sample_beta(self.mixup_alpha, generator)
            mixed = x * lam + x.flip(0) * (1.0 - lam)
            box = None
        else:
            height, width = x.shape[-2:]
            box = cutmix_box(height, width, sample_beta(self.cutmix_alpha, generator), generator)
            top, left, h, w = box
            mixed = x.clone()
            mixed[..., top:top + h, left:left + w] = x.flip(0)[..., top:top + h, left:left + w]
            lam = 1.0 - h * w / (height * width)
        return MixResult(mixed, soft * lam + soft.flip(0) * (1.0 - lam), lam, mode, box)


def soft_target_loss(logits: torch.Tensor, target: torch.Tensor, multi_label: bool) -> torch.Tensor:
    """Mean loss of logits (N, K) against soft targets (N, K): cross-entropy on the target
    distribution (single-label) or binary cross-entropy per class (multi-label)."""
    if multi_label:
        return F.binary_cross_entropy_with_logits(logits, target)
    return -(target * F.log_softmax(logits, dim=-1)).sum(-1).mean()
