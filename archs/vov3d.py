"""VoV3D-M/L (Lee et al., "Diverse Temporal Aggregation and Depthwise Spatiotemporal
Factorization for Efficient Video Classification", 2020), on the X3D skeleton.

VoV3D keeps X3D's stem, residual stages and head (imported from ``archs/x3d.py``) and
replaces the bottleneck by a T-OSA module: five D(2+1)D units in sequence whose outputs
(and, for stride-1 blocks, the block input) are concatenated and aggregated by one
1x1x1 conv. A D(2+1)D unit factorises X3D's depthwise 3x3x3 conv into a depthwise 1x3x3
(spatial) and a depthwise 3x1x1 (temporal) conv; stacking five of them gives every
block outputs with temporal receptive fields 3, 5, ..., 11 frames.

Widths (``inner`` = 40 for M, 48 for L): stem inner/2, stage outputs inner x [0.5, 1, 2, 4],
stage inner widths inner x [1, 2, 4, 8], blocks per stage M 1/2/3/2, L 1/2/5/3.
Module names follow the VoV3D repository (with the X3D renames of ``archs/x3d.py``),
so its released checkpoints load strictly. ``num_segments`` (16 frames for Kinetics, 32
for the SSv2 F32 configs) sets the input spec and the test head's training window;
``test_head`` is X3D's (``archs/x3d.py``: PySlowFast's window pooling at a test crop
larger than 224, or global pooling).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from archs.registry import register_model
from archs.x3d import (SqueezeExcite, TemporalDepthwiseConv3d, X3DHead, X3DNet, X3DStem, bn3d, init_x3d_weights,
                       make_stage, training_window, x3d_spec)

__all__ = ["D2Plus1DUnit", "TemporalOSA", "build_vov3d", "vov3d"]


class D2Plus1DUnit(nn.Module):
    """D(2+1)D: 1x1x1 (a) -> depthwise 1x3x3 (b1, spatial stride) -> depthwise 3x1x1 (b2) -> BN
    -> [SE] -> swish -> 1x1x1 to inner/2 (c) [+ identity] -> ReLU.

    (N, C_in, T, H, W) -> (N, inner/2, T, H/stride, W/stride). The identity is added
    when C_in == inner/2 and the unit does not stride.
    """

    def __init__(self, in_channels: int, inner_channels: int, *, stride: int = 1, use_se: bool = True,
                 se_ratio: float = 1 / 16, fast_depthwise: bool = False) -> None:
        super().__init__()
        out_channels = inner_channels // 2
        self.residual = in_channels == out_channels and stride != 2
        self.a = nn.Sequential(nn.Conv3d(in_channels, inner_channels, 1, bias=False), bn3d(inner_channels),
                               nn.ReLU(inplace=True))
        self.b1 = nn.Conv3d(inner_channels, inner_channels, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1),
                            groups=inner_channels, bias=False)
        self.b2 = TemporalDepthwiseConv3d(inner_channels, 3, shift_add=fast_depthwise)
        self.b_bn = bn3d(inner_channels)
        self.se = SqueezeExcite(inner_channels, se_ratio) if use_se else nn.Identity()
        self.c = nn.Sequential(nn.Conv3d(inner_channels, out_channels, 1, bias=False), bn3d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.b_bn(self.b2(self.b1(self.a(x))))
        y = self.c(F.silu(self.se(y)))
        if self.residual:
            y = y + x
        return F.relu(y, inplace=True)


class TemporalOSA(nn.Module):
    """T-OSA: ``num_units`` D(2+1)D units in sequence (the first takes the stride); their
    outputs, after the block input when the block does not stride, are concatenated
    along C and aggregated by ``c`` (1x1x1) + ``c_bn`` (the block's final BN, no activation).

    (N, C_in, T, H, W) -> (N, C_out, T, H/stride, W/stride).
    """

    def __init__(self, in_channels: int, out_channels: int, inner_channels: int, *, stride: int = 1,
                 num_units: int = 5, se_ratio: float = 1 / 16, fast_depthwise: bool = False) -> None:
        super().__init__()
        self.keep_input = stride == 1
        unit_out = inner_channels // 2
        self.layers = nn.ModuleList(
            D2Plus1DUnit(in_channels if i == 0 else unit_out, inner_channels, stride=stride if i == 0 else 1,
                         use_se=i % 2 == 0, se_ratio=se_ratio, fast_depthwise=fast_depthwise)
            for i in range(num_units))
        concat = unit_out * num_units + (in_channels if self.keep_input else 0)
        self.c = nn.Conv3d(concat, out_channels, 1, bias=False)
        self.c_bn = bn3d(out_channels)
        self.c_bn.final_bn = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [x] if self.keep_input else []
        for layer in self.layers:
            x = layer(x)
            outputs.append(x)
        return self.c_bn(self.c(torch.cat(outputs, dim=1)))


# variant: (inner width, blocks per stage)
VOV3D_VARIANTS = {"m": (40, (1, 2, 3, 2)), "l": (48, (1, 2, 5, 3))}


def build_vov3d(num_classes: int, *, inner_width: int, blocks: tuple, num_units: int = 5, dim_c5: int = 2048,
                dropout: float = 0.5, se_ratio: float = 1 / 16, fast_depthwise: bool = False,
                window: Optional[Tuple[int, int, int]] = None, test_head: str = "global") -> X3DNet:
    """A VoV3D network (see the module docstring). ``fast_depthwise`` computes the
    temporal depthwise convs by shifted multiply-adds (same weights and result, faster on CPU);
    ``window`` / ``test_head``: the head's eval-time pooling (:class:`archs.x3d.X3DHead`)."""
    stem = X3DStem(3, inner_width // 2, shift_add=fast_depthwise)
    stages, in_channels = [], inner_width // 2
    for i, num_blocks in enumerate(blocks):
        out_channels, inner = int(inner_width * 2 ** i / 2), inner_width * 2 ** i

        def branch(_: int, cin: int, stride: int, cout: int = out_channels, inner: int = inner) -> nn.Module:
            return TemporalOSA(cin, cout, inner, stride=stride, num_units=num_units, se_ratio=se_ratio,
                               fast_depthwise=fast_depthwise)

        stages.append(make_stage(in_channels, out_channels, num_blocks, branch))
        in_channels = out_channels
    head = X3DHead(in_channels, inner_width * 8, num_classes, lin5_channels=dim_c5, dropout=dropout, window=window,
                   test_head=test_head)
    model = X3DNet(stem, stages, head)
    init_x3d_weights(model)
    return model


@register_model("vov3d_m", family="vov3d", variant="m", aliases=("vov3d",),
                description="VoV3D-M: 16 frames (32 for the SSv2 F32 configs), 224 crop, 256 test (3.67 M params "
                            "at 400 classes)")
@register_model("vov3d_l", family="vov3d", variant="l",
                description="VoV3D-L: 16 frames (32 for the SSv2 F32 configs), 224 crop, 256 test (6.30 M params "
                            "at 400 classes)")
def vov3d(num_classes: int = 400, *, variant: str = "m", num_segments: int = 16, dropout: float = 0.5,
          fast_depthwise: bool = False, test_head: str = "reference") -> X3DNet:
    """VoV3D-``variant`` (m, l) on clips of ``num_segments`` frames at stride 5; ``fast_depthwise``
    computes the temporal depthwise convs by shifted multiply-adds (same weights and logits);
    ``test_head``: ``reference`` (PySlowFast's window pooling at a test crop above 224) or ``global``."""
    if variant not in VOV3D_VARIANTS:
        raise ValueError(f"unknown VoV3D variant {variant!r}; choose one of {', '.join(VOV3D_VARIANTS)}")
    inner_width, blocks = VOV3D_VARIANTS[variant]
    model = build_vov3d(num_classes, inner_width=inner_width, blocks=blocks, dropout=dropout,
                        fast_depthwise=fast_depthwise, window=training_window(num_segments, 224), test_head=test_head)
    model.input_spec = x3d_spec(num_segments, 5, 224, 256)
    return model
