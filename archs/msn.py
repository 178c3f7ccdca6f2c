"""MSN: Motion Sensitive Network for action recognition, on ResNet-50/101.

MSN is TDN (archs/tdn.py) with two parts replaced:

* the short-term motion stem is a three-level pyramid of frame differences
  (raw RGB differences; differences of 16-channel conv features of frames 1/3/5;
  the difference of 64-channel features of frames 1 and 5), all at H/4;
* the temporal module of every ``layer2``-``layer4`` block is the motion-sensitive
  module (:class:`MotionSensitiveModule`, the reference's ``Module_1``): deformable
  3x3 and 5x5 convolutions, a max-pool branch and a 3-D convolution over all
  segments, turned into a channel gate.

Fixed with respect to the reference (Anonymous502-ar/MSN): the deformable kernels
are ordinary parameters of :class:`DeformConvPack` (a ``torchvision.ops.DeformConv2d``),
so they reach any optimiser; the temporal module uses the model's number of
segments (the reference hard-codes 8); batch size 1 works; any input size works
(global pooling, no fixed sizes). The conv biases of the pyramid's ``conv_1``/``conv_2``
cancel in the differences, and ``conv1_5``/``conv1_temp`` are never used: we do not
have them, and the key map drops them from reference checkpoints.
"""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import DeformConv2d

from archs.registry import CUSTOM_FLOP_FORMULAS, register_model
from archs.tdn import TDN, TDNResNet, conv_bn_relu, frame_differences, kaiming_init_, segments_view


def deform_conv2d_flops(input_shape, weight_shape, *args, out_shape, **kwargs) -> int:
    """FLOPs (2 per MAC) of ``torchvision::deform_conv2d``: 2 N Cout (Cin/g) k^2 Hout Wout.

    The bilinear sampling is not counted, as FlopCounterMode ignores interpolation elsewhere.
    """
    cin_per_group, kh, kw = weight_shape[1:]
    n, cout, h, w = out_shape
    return 2 * n * cout * cin_per_group * kh * kw * h * w


CUSTOM_FLOP_FORMULAS[torch.ops.torchvision.deform_conv2d] = deform_conv2d_flops


class DeformConvPack(DeformConv2d):
    """A deformable convolution (stride 1, 'same' padding) that predicts its own
    sampling offsets from its input with ``conv_offset`` (zero-initialised, so it
    starts as a plain convolution). (B, Cin, H, W) -> (B, Cout, H, W).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.conv_offset = nn.Conv2d(in_channels, 2 * kernel_size * kernel_size, kernel_size,
                                     padding=kernel_size // 2)
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x, self.conv_offset(x))


class MotionSensitiveModule(nn.Module):
    """MSN's motion-sensitive module: a per-frame channel gate from short- and long-range motion.

    (N*T, C, H, W) -> (N*T, C, H, W). With o = BN(conv_down(x)) at C/4 channels:
    for t < T-1, m[t] = |DCN3(o[t+1]) + DCN5(o[t+1]) + BN(conv1(maxpool3(o[t+1]))) - 3 o[t]|;
    slot T-1 holds the time-average of BN(Conv3d 3x3x3 (o)). The gate is
    sigmoid(BN(conv(GAP(m)))) - 0.5 and out = x + x * gate.
    """

    def __init__(self, channels: int, num_segments: int) -> None:
        super().__init__()
        inner = max(1, channels // 4)
        self.num_segments = num_segments
        self.conv_down = nn.Conv2d(channels, inner, kernel_size=1)
        self.bn1 = nn.BatchNorm2d(inner)
        self.motion_offset = DeformConvPack(inner, inner, kernel_size=3)
        self.motion_offset_7 = DeformConvPack(inner, inner, kernel_size=5)
        self.max_pool = nn.MaxPool2d(kernel_size=3, stride=1, padding=1)
        self.conv1 = nn.Conv2d(inner, inner, kernel_size=1)
        self.bn3 = nn.BatchNorm2d(inner)
        self.time_conv = nn.Conv3d(inner, inner, kernel_size=3, padding=1)
        self.bn_t = nn.BatchNorm3d(inner)
        self.conv = nn.Conv2d(inner, channels, kernel_size=1)
        self.bn2 = nn.BatchNorm2d(channels)
        kaiming_init_(self.conv_down, self.conv1, self.conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.bn1(self.conv_down(x))
        clips = segments_view(feat, self.num_segments)  # (N, T, C', H, W)
        long_range = self.bn_t(self.time_conv(clips.transpose(1, 2))).mean(dim=2, keepdim=True).transpose(1, 2)
        previous, following = clips[:, :-1], clips[:, 1:].flatten(0, 1)
        branches = (self.motion_offset(following), self.motion_offset_7(following),
                    self.bn3(self.conv1(self.max_pool(following))))
        motion = sum(branch.view_as(previous) - previous for branch in branches).abs()
        pooled = F.adaptive_avg_pool2d(torch.cat([motion, long_range], dim=1).flatten(0, 1), 1)
        gate = torch.sigmoid(self.bn2(self.conv(pooled))) - 0.5
        return x + x * gate


class MSNResNet(TDNResNet):
    """MSN's trunk: TDN's with the pyramid motion stem (at H/4), motion-sensitive modules,
    and a fixed 0.75/0.25 fusion after layer1. (N*T, 5, 3, H, W) -> (N*T, D)."""

    temporal_name = "motion_layer"

    def build_motion_stem(self, rgb_conv1: nn.Conv2d) -> None:
        """Pyramid: ``conv_diff_1`` on RGB differences, ``conv_1``/``conv_diff_2`` and ``conv_2`` on features."""
        self.maxpool_diff = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.conv_diff_1 = conv_bn_relu(12, 64, kernel_size=7, stride=2)
        self.conv_1 = nn.Conv2d(3, 16, kernel_size=7, stride=2, padding=3, bias=False)
        self.conv_diff_2 = conv_bn_relu(32, 64, kernel_size=5)
        self.conv_2 = nn.Conv2d(16, 64, kernel_size=5, padding=2, bias=False)

    def motion_stem(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, 5, 3, H, W) -> (B, 64, H/4, W/4): the sum of the three pyramid levels."""
        level1 = self.conv_diff_1(self.maxpool_diff(frame_differences(frames)))
        f1, f3, f5 = self.conv_1(frames[:, 0::2].flatten(0, 1)).unflatten(0, (-1, 3)).unbind(1)  # H/2
        level2 = self.conv_diff_2(self.maxpool_diff(torch.cat([f5 - f3, f3 - f1], dim=1)))
        g1, g5 = self.conv_2(torch.cat([f1, f5])).chunk(2)
        level3 = self.maxpool_diff(g5 - g1)
        return level1 + level2 + level3

    def temporal_module(self, channels: int) -> nn.Module:
        return MotionSensitiveModule(channels, self.num_segments)

    def layer1_weights(self) -> Tuple[float, float]:
        return 0.75, 0.25


class MSN(TDN):
    """MSN: input (N, 3, T*5, H, W) segment-major, output (N, K); see :class:`archs.tdn.TDN`."""

    backbone_class = MSNResNet
    unused_reference_keys = ("base_model.conv1_temp.", "base_model.conv1_5.",
                             "base_model.conv_1.bias", "base_model.conv_2.bias")


@register_model("msn_r50", family="msn", backbone="resnet50", aliases=("msn",),
                description="MSN (motion sensitive network, 5 frames per segment) resnet50")
@register_model("msn_r101", family="msn", backbone="resnet101",
                description="MSN (motion sensitive network, 5 frames per segment) resnet101")
def msn(num_classes: int = 400, *, backbone: str = "resnet50", num_segments: int = 8, dropout: float = 0.5,
        partial_bn: bool = False, imagenet_pretrained: bool = False) -> MSN:
    """MSN on ``backbone`` (resnet50 / resnet101), ``num_segments`` segments of 5 frames."""
    return MSN(num_classes, backbone=backbone, num_segments=num_segments, dropout=dropout, partial_bn=partial_bn,
               imagenet_pretrained=imagenet_pretrained)
