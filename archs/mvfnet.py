"""MVFNet: Multi-View Fusion Network (Wu et al., AAAI 2021).

A 2D ResNet on every frame whose residual blocks in ``layer3`` and ``layer4``
first mix 1/8 of their input channels over the three views of the clip (T-H, T-W,
H-W): depthwise 3-tap convolutions along time, height and width, summed,
batch-normalised and passed through hard-swish. The other channels and the
identity path are untouched. Per-frame logits are averaged over time, as in TSN
(the interface of :class:`archs.tsn.SegmentHeadMixin`).

Module names follow the MVFNet repository (``backbone.layerX.Y.conv1.net`` for
the wrapped convolution, ``shift_conv`` / ``h_conv`` / ``w_conv`` / ``bn`` for the
fusion), so its released checkpoints load after a rename (``cls_head.new_fc`` ->
``new_fc``) and a reshape of the fusion weights (see ``MVFNet.convert_state_dict``).
"""
from __future__ import annotations

from typing import Dict, Sequence, Tuple

import torch
from torch import nn

from archs.layers import fold_time
from archs.registry import InputSpec, register_model
from archs.tsn import PartialBNMixin, SegmentHeadMixin, torchvision_backbone

# MVFNet normalises 0-255 RGB pixels with the ImageNet mean/std scaled by 255.
MVF_MEAN = (123.675, 116.28, 103.53)
MVF_STD = (58.395, 57.12, 57.375)
# The reference's Conv3d fusion weights, (k, 1, kt, kh, kw), and the unit axis ours lack:
# temporal (k, 1, 3, 1) on (N, k, T, H*W), height (k, 1, 3, 1) and width (k, 1, 1, 3) per frame.
FUSION_UNIT_AXIS = {"shift_conv.weight": 4, "h_conv.weight": 2, "w_conv.weight": 2}


def mvfnet_spec(num_segments: int) -> InputSpec:
    """Dense clips of T frames at stride 64 // T (the released 4x16, 8x8, 16x4), 224 crops."""
    return InputSpec(num_segments=num_segments, sampling="dense", dense_stride=max(1, 64 // num_segments),
                     crop_size=224, scale_size=256, mean=MVF_MEAN, std=MVF_STD, value_range=255.0)


def _depthwise_conv(channels: int, kernel: Tuple[int, int]) -> nn.Conv2d:
    """A depthwise 3-tap convolution along one axis, initialised as the reference does."""
    conv = nn.Conv2d(channels, channels, kernel, padding=(kernel[0] // 2, kernel[1] // 2), groups=channels, bias=False)
    nn.init.normal_(conv.weight, 0.0, (2.0 / (kernel[0] * kernel[1] * channels)) ** 0.5)
    return conv


class MultiViewFusion(nn.Module):
    """Wraps ``net`` (a block's first 1x1 conv) and fuses three views of its input first.

    Input (N*T, C, H, W), frames of a clip consecutive. The first ``int(C * alpha)``
    channels are replaced by ``hardswish(bn(conv_t(x) + conv_h(x) + conv_w(x)))`` with
    depthwise 3-tap convolutions along T, H and W (zero padding); the others pass
    unchanged. Output: ``net`` of the result.

    The reference uses Conv3d kernels 3x1x1 / 1x3x1 / 1x1x3 on (N, k, T, H, W); the
    same convolutions run here as 2D ones (H and W on each frame, T on (N, k, T, H*W)),
    which makes the fusion about 3x faster on CPU. Their weights are the reference's with the
    unit axes dropped (``convert_state_dict`` reshapes them).
    """

    def __init__(self, net: nn.Module, num_segments: int, in_channels: int, alpha: float = 0.125) -> None:
        super().__init__()
        self.net = net
        self.num_segments = num_segments
        self.fused_channels = int(in_channels * alpha)
        if self.fused_channels < 1:
            raise ValueError(f"alpha={alpha} leaves no channel to fuse out of {in_channels}")
        # Names as in the reference: shift_conv is the temporal view.
        self.shift_conv = _depthwise_conv(self.fused_channels, (3, 1))
        self.bn = nn.BatchNorm2d(self.fused_channels)
        self.h_conv = _depthwise_conv(self.fused_channels, (3, 1))
        self.w_conv = _depthwise_conv(self.fused_channels, (1, 3))
        self.activation = nn.Hardswish()

    def fuse(self, x: torch.Tensor) -> torch.Tensor:
        """(N*T, C, H, W) -> (N*T, C, H, W) with the first channels fused over T, H and W."""
        nt, _, h, w = x.shape
        k, t = self.fused_channels, self.num_segments
        part = x[:, :k].contiguous()
        clips = part.view(nt // t, t, k, h * w).transpose(1, 2).contiguous()  # (N, k, T, H*W)
        temporal = self.shift_conv(clips).transpose(1, 2).reshape(nt, k, h, w)
        fused = self.activation(self.bn(temporal + self.h_conv(part) + self.w_conv(part)))
        return torch.cat([fused, x[:, k:]], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.fuse(x))


def insert_multi_view_fusion(resnet: nn.Module, num_segments: int, alpha: float = 0.125,
                             stages: Sequence[str] = ("layer3", "layer4")) -> None:
    """Wrap ``conv1`` of every Bottleneck of ``stages`` in :class:`MultiViewFusion` (in place)."""
    for stage_name in stages:
        for block in getattr(resnet, stage_name):
            block.conv1 = MultiViewFusion(block.conv1, num_segments, block.conv1.in_channels, alpha)


class MVFNet(PartialBNMixin, SegmentHeadMixin, nn.Module):
    """MVFNet: ``backbone`` (ResNet with multi-view fusion) per frame, dropout, ``new_fc``, mean over T.

    Input (N, 3, T, H, W) with T = ``num_segments`` and H, W any size the ResNet takes
    (multiples of 32 keep every stage's map whole); output (N, K).

    Fully convolutional testing (the reference's ``--fcn_testing``, our ``--full-res``)
    feeds uncropped 256x256 (three 256 crops per clip) instead of 224 crops. The
    reference then applies ``new_fc`` as a 1x1x1 convolution on the (N, 2048, T, h, w)
    map and averages over T, h, w; since the classifier is linear that equals this
    model's global average pooling -> ``new_fc`` -> mean over T, so no separate mode
    is needed: the test crop size is a data setting.
    """

    def __init__(self, num_classes: int, *, depth: int = 50, num_segments: int = 8, alpha: float = 0.125,
                 dropout: float = 0.5, partial_bn: bool = False, imagenet_pretrained: bool = False) -> None:
        super().__init__()
        if depth not in (50, 101):
            raise ValueError(f"MVFNet depth must be 50 or 101, not {depth}")
        # ImageNet weights are loaded before the fusion wraps conv1, so names match 1:1.
        self.backbone, self.feature_dim = torchvision_backbone(f"resnet{depth}", imagenet_pretrained)
        insert_multi_view_fusion(self.backbone, num_segments, alpha)
        self.num_segments = num_segments
        self.partial_bn = partial_bn
        self.dropout = nn.Dropout(p=dropout)
        self.new_fc = self.new_classifier(num_classes)
        self.input_spec = mvfnet_spec(num_segments)

    classifier_std = 0.01

    def segment_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, T, H, W) -> per-frame features (N, T, D)."""
        n, _, t = x.shape[:3]
        if t != self.num_segments:
            raise ValueError(f"MVFNet built for {self.num_segments} frames got a clip of {t}")
        return self.backbone(fold_time(x)).view(n, t, self.feature_dim)

    def convert_state_dict(self, state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """MVFNet checkpoints: ``cls_head.new_fc.*`` -> ``new_fc.*``; the fusion's Conv3d
        weights (k, 1, 3, 1, 1) / (k, 1, 1, 3, 1) / (k, 1, 1, 1, 3) lose their unit axis;
        ``cls_head.new_cls.*`` (the 1x1x1-conv copy of ``new_fc`` fcn testing creates) is
        dropped. Our own keys pass unchanged."""
        out = {}
        for key, value in state.items():
            if key.startswith("cls_head.new_cls."):
                continue
            if key.startswith("cls_head.new_fc."):
                key = key[len("cls_head."):]
            suffix = ".".join(key.split(".")[-2:])
            if value.dim() == 5 and suffix in FUSION_UNIT_AXIS:
                value = value.squeeze(FUSION_UNIT_AXIS[suffix])
            out[key] = value
        return out


@register_model("mvfnet_r50", family="mvfnet", aliases=("mvfnet",), depth=50,
                description="MVFNet ResNet-50 (K400 top-1 74.2 / 76.0 / 77.0 % for 4x16 / 8x8 / 16x4, 30 views at 256)")
@register_model("mvfnet_r101", family="mvfnet", depth=101,
                description="MVFNet ResNet-101 (K400 top-1 76.0 / 77.4 / 78.4 % for 4x16 / 8x8 / 16x4, 30 views at 256)")
def mvfnet(num_classes: int = 400, *, depth: int = 50, num_segments: int = 8, alpha: float = 0.125,
           dropout: float = 0.5, partial_bn: bool = False, imagenet_pretrained: bool = False) -> MVFNet:
    """MVFNet on a ResNet of ``depth`` 50 or 101; ``num_segments`` frames (4, 8, 16 released),
    ``alpha`` the fraction of channels fused (1/8)."""
    return MVFNet(num_classes, depth=depth, num_segments=num_segments, alpha=alpha, dropout=dropout,
                  partial_bn=partial_bn, imagenet_pretrained=imagenet_pretrained)
