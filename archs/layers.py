"""Pieces several families share: channel rounding, time folding, the shift-add temporal
depthwise convolution, BatchNorm folding, classifier initialisation and per-step losses.

Shapes: N clips, C channels, T frames (or segments), H x W pixels, D features, K classes,
E steps (segments, exits or training targets).
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch
from torch import nn

Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def make_divisible(value: float, divisor: int = 8, min_value: Optional[int] = None) -> int:
    """``value`` rounded to the nearest multiple of ``divisor`` (at least ``min_value``, default
    ``divisor``), one step up if that falls more than 10% below ``value``: the TF/MobileNet rule
    that X3D (its stage and SE widths) and MoViNet (its SE widths) size channels with."""
    rounded = max(min_value or divisor, int(value + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * value else rounded)


def fold_time(x: torch.Tensor) -> torch.Tensor:
    """(N, C, T, H, W) -> (N*T, C, H, W), frame-major within each clip."""
    n, c, t, h, w = x.shape
    return x.transpose(1, 2).reshape(n * t, c, h, w)


def depthwise_temporal_conv(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
                            padding: int = 0) -> torch.Tensor:
    """Depthwise convolution along axis 2 (time), as ``k`` shifted multiply-adds.

    x: (N, C, T, ...) with any trailing axes; weight: (C, 1, k, 1, ...) (a depthwise Conv2d or
    Conv3d kernel of temporal size k); ``padding`` zero frames on both sides. Returns
    (N, C, T + 2 padding - k + 1, ...): the grouped convolution's result to float rounding, several
    times faster on CPU, where PyTorch's grouped convolutions spend their time reordering memory.
    """
    k = weight.shape[2]
    if padding:
        x = nn.functional.pad(x, (0, 0) * (x.dim() - 3) + (padding, padding))
    frames = x.shape[2] - k + 1
    taps = weight.reshape(-1, k, *([1] * (x.dim() - 2))).unbind(1)  # k tensors (C, 1, ...)
    first = x[:, :, :frames]
    out = first * taps[0] if bias is None else torch.addcmul(bias.view(-1, *([1] * (x.dim() - 2))), first, taps[0])
    for i in range(1, k):
        out.addcmul_(x[:, :, i:i + frames], taps[i])
    return out


def fold_batch_norm(weight: torch.Tensor, bias: Optional[torch.Tensor],
                    norm: nn.modules.batchnorm._BatchNorm) -> Tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of a convolution (``weight`` (C_out, ...), ``bias`` or None) followed by the
    eval-mode ``norm``, folded into one convolution: ``norm(conv(x)) == conv'(x)``."""
    scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
    shift = norm.running_mean if bias is None else norm.running_mean - bias
    return weight * scale.view(-1, *([1] * (weight.dim() - 1))), norm.bias - shift * scale


def init_classifier_(fc: nn.Linear, std: float) -> nn.Linear:
    """Classifier initialisation, in place: weights normal(0, ``std``), zero biases (0.001 in TSN,
    TSM, TDN and MSN; 0.01 in MVFNet and X3D)."""
    nn.init.normal_(fc.weight, 0.0, std)
    nn.init.zeros_(fc.bias)
    return fc


def linear_classifier(in_features: int, num_classes: int, std: float) -> nn.Linear:
    """A new Linear head initialised by :func:`init_classifier_`."""
    return init_classifier_(nn.Linear(in_features, num_classes), std)


def per_step_loss(logits: torch.Tensor, target: torch.Tensor, criterion: Criterion) -> torch.Tensor:
    """Mean over the E steps of ``criterion(logits[:, e], target)``; logits (N, E, K), target as
    ``criterion`` takes it ((N,) class indices or (N, K) multi-label floats)."""
    return torch.stack([criterion(logits[:, e], target) for e in range(logits.shape[1])]).mean()
