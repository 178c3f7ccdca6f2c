"""TDN: Temporal Difference Networks (Wang et al., CVPR 2021) on ResNet-50/101.

Each of the T segments brings 5 consecutive frames. Only the centre frame goes
through the ResNet; the differences between the 5 frames feed a short-term motion
stem (the S-TDM) whose features are added to the trunk's after the stem and after
``layer1``. In every block of ``layer2``-``layer4`` a long-term difference module
(the L-TDM, ``mse``) and a learnable temporal shift (``shift``) sit between conv1
and conv2.

Module names follow the TDN repository (``base_model.conv1_5``, ``resnext_layer1``,
``layer2_bak.0.mse.conv1`` ...), so its released checkpoints load with a small key
map. Its ResNet has a bias on every convolution; ours adds zero-initialised ones to
torchvision's ResNet so the checkpoints fit.

Interface as TSN's (archs/tsn.py, :class:`SegmentHeadMixin`): ``forward(x) -> (N, K)``,
the mean of the segment logits; ``forward_exits(x) -> (N, T, K)``.

Pieces MSN (archs/msn.py) reuses: :class:`TDNResNet` (subclassed),
:class:`TemporalBottleneck`, :class:`LearnableShift`, :func:`frame_differences`,
:class:`TDN` (subclassed).
"""
from __future__ import annotations

from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from archs.layers import fold_time
from archs.registry import register_model
from archs.tsn import PartialBNMixin, SegmentHeadMixin, torchvision_backbone, tsn_spec

FRAMES_PER_SEGMENT = 5
CENTRE_FRAME = FRAMES_PER_SEGMENT // 2


def fusion_weights(num_segments: int) -> Tuple[float, float]:
    """(alpha, beta) for ``alpha * trunk + beta * motion``: 0.5/0.5 at 8 segments, else 0.75/0.25 (as released)."""
    return (0.5, 0.5) if num_segments == 8 else (0.75, 0.25)


def frame_differences(frames: torch.Tensor) -> torch.Tensor:
    """(B, 5, 3, H, W) -> (B, 12, H, W): RGB differences of consecutive frames, [x2-x1, x3-x2, x4-x3, x5-x4]."""
    return (frames[:, 1:] - frames[:, :-1]).flatten(1, 2)


def add_conv_biases(module: nn.Module) -> None:
    """Give every bias-free Conv2d of ``module`` a zero bias (the reference ResNet has them everywhere)."""
    for conv in module.modules():
        if isinstance(conv, nn.Conv2d) and conv.bias is None:
            conv.bias = nn.Parameter(conv.weight.new_zeros(conv.out_channels))


def kaiming_init_(*convs: nn.Conv2d) -> None:
    """He init (fan out), as the reference ResNet initialises every Conv2d it contains."""
    for conv in convs:
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> nn.Sequential:
    """Conv2d (no bias, 'same' padding) -> BN -> ReLU; keys ``0.weight``, ``1.*``."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


def segments_view(x: torch.Tensor, num_segments: int) -> torch.Tensor:
    """(N*T, C, H, W) -> (N, T, C, H, W)."""
    return x.view(-1, num_segments, *x.shape[1:])


class LearnableShift(nn.Module):
    """TSM's temporal shift as a trainable depthwise temporal convolution (kernel 3).

    (N*T, C, H, W) -> (N*T, C, H, W). Initialised as the shift: channels [0, C/8)
    take frame t+1, [C/8, 2C/8) take frame t-1, the rest stay; zero-padded in time.
    The kernel is ``conv.weight`` (C, 1, 3), as in the reference.
    """

    def __init__(self, channels: int, num_segments: int, fold_div: int = 8) -> None:
        super().__init__()
        self.num_segments = num_segments
        self.conv = nn.Conv1d(channels, channels, kernel_size=3, padding=1, groups=channels, bias=False)
        fold = channels // fold_div
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[:fold, 0, 2] = 1
            self.conv.weight[fold:2 * fold, 0, 0] = 1
            self.conv.weight[2 * fold:, 0, 1] = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nt, c, h, w = x.shape
        clips = segments_view(x, self.num_segments).transpose(1, 2)  # (N, C, T, H, W)
        out = F.conv3d(clips, self.conv.weight.view(c, 1, 3, 1, 1), padding=(1, 0, 0), groups=c)
        return out.transpose(1, 2).reshape(nt, c, h, w)


class LongTermTDM(nn.Module):
    """TDN's long-term temporal difference module (``mSEModule``): a channel gate from
    feature differences between neighbouring segments.

    (N*T, C, H, W) -> (N*T, C, H, W). With b = BN(conv1(x)) at C/16 channels and
    b' = conv2(b) (depthwise 3x3), the forward difference is b'[t+1] - b[t] and the
    backward one b'[t-1] - b[t] (zero where the neighbour is missing). Each goes
    through a two-scale refinement (full resolution: ``*_smallscale4``; half:
    ``*_smallscale2``), conv3 + BN back to C and a sigmoid;
    out = x + x * (0.5 (sigma_f - 0.5) + 0.5 (sigma_b - 0.5)).
    """

    def __init__(self, channels: int, num_segments: int, reduction: int = 16) -> None:
        super().__init__()
        squeezed = channels // reduction
        self.num_segments = num_segments
        self.conv1 = nn.Conv2d(channels, squeezed, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(squeezed)
        self.conv2 = nn.Conv2d(squeezed, squeezed, kernel_size=3, padding=1, groups=squeezed, bias=False)
        self.conv3 = nn.Conv2d(squeezed, channels, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels)
        self.conv3_smallscale2 = nn.Conv2d(squeezed, squeezed, kernel_size=3, padding=1, bias=False)
        self.bn3_smallscale2 = nn.BatchNorm2d(squeezed)
        self.conv3_smallscale4 = nn.Conv2d(squeezed, squeezed, kernel_size=3, padding=1, bias=False)
        self.bn3_smallscale4 = nn.BatchNorm2d(squeezed)
        kaiming_init_(self.conv1, self.conv2, self.conv3, self.conv3_smallscale2, self.conv3_smallscale4)

    def refine(self, diff: torch.Tensor) -> torch.Tensor:
        """(N*T, C/16, H, W) -> (N*T, C, H, W): average of the raw, full- and half-scale difference, then conv3."""
        pool = min(2, *diff.shape[-2:])  # a 1-pixel map (inputs of 32 px) is not pooled
        half = self.bn3_smallscale2(self.conv3_smallscale2(F.avg_pool2d(diff, pool)))
        half = F.interpolate(half, size=diff.shape[-2:])
        full = self.bn3_smallscale4(self.conv3_smallscale4(diff))
        return self.bn3(self.conv3((diff + half + full) / 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.bn1(self.conv1(x))
        moved = segments_view(self.conv2(feat), self.num_segments)
        feat = segments_view(feat, self.num_segments)
        zero = torch.zeros_like(feat[:, :1])
        forward_diff = torch.cat([moved[:, 1:] - feat[:, :-1], zero], dim=1).flatten(0, 1)
        backward_diff = torch.cat([zero, moved[:, :-1] - feat[:, 1:]], dim=1).flatten(0, 1)
        gate = 0.5 * (torch.sigmoid(self.refine(forward_diff)) - 0.5) + 0.5 * (torch.sigmoid(self.refine(backward_diff)) - 0.5)
        return x + x * gate


class TemporalBottleneck(nn.Module):
    """A torchvision Bottleneck with a temporal module and a :class:`LearnableShift`
    between conv1 and conv2 (the reference's ``BottleneckShift``).

    (N*T, C, H, W) -> (N*T, 4P, H/s, W/s). The temporal module is registered under
    ``temporal_name`` (TDN: ``mse``; MSN: ``motion_layer``) to keep the reference's keys.
    """

    def __init__(self, block: nn.Module, temporal: nn.Module, num_segments: int, temporal_name: str) -> None:
        super().__init__()
        self.conv1, self.bn1 = block.conv1, block.bn1
        self.temporal_name = temporal_name
        self.add_module(temporal_name, temporal)
        self.shift = LearnableShift(block.conv1.out_channels, num_segments)
        self.conv2, self.bn2 = block.conv2, block.bn2
        self.conv3, self.bn3 = block.conv3, block.bn3
        self.relu = block.relu
        self.downsample = block.downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.shift(self._modules[self.temporal_name](out))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class TDNResNet(nn.Module):
    """TDN's trunk (the reference's ``base_model``): (N*T, 5, 3, H, W) -> features (N*T, D).

    The centre frame goes through conv1/bn1/maxpool, ``layer1_bak`` .. ``layer4_bak``;
    the motion stem (:meth:`motion_stem`) and a second ResNet ``layer1``
    (``resnext_layer1``) on its output are fused in after the stem and after layer1.
    Subclasses change the motion stem, the temporal module and the layer-1 fusion.
    """

    temporal_name = "mse"

    def __init__(self, arch: str = "resnet50", num_segments: int = 8, *, imagenet_pretrained: bool = False) -> None:
        super().__init__()
        trunk, self.feature_dim = torchvision_backbone(arch, imagenet_pretrained)
        motion_trunk, _ = torchvision_backbone(arch, imagenet_pretrained)
        add_conv_biases(trunk)
        add_conv_biases(motion_trunk.layer1)
        self.num_segments = num_segments
        self.alpha, self.beta = fusion_weights(num_segments)
        self.conv1, self.bn1, self.relu, self.maxpool = trunk.conv1, trunk.bn1, trunk.relu, trunk.maxpool
        self.build_motion_stem(trunk.conv1)
        self.resnext_layer1 = motion_trunk.layer1
        self.layer1_bak = trunk.layer1
        self.layer2_bak = self.temporal_stage(trunk.layer2)
        self.layer3_bak = self.temporal_stage(trunk.layer3)
        self.layer4_bak = self.temporal_stage(trunk.layer4)
        self.avgpool = nn.AdaptiveAvgPool2d(1)

    def build_motion_stem(self, rgb_conv1: nn.Conv2d) -> None:
        """S-TDM: ``conv1_5`` (12 -> 64, 7x7/2; initialised with the RGB-averaged ``rgb_conv1``)."""
        self.avg_diff = nn.AvgPool2d(kernel_size=2, stride=2)
        self.conv1_5 = conv_bn_relu(12, 64, kernel_size=7, stride=2)
        with torch.no_grad():
            self.conv1_5[0].weight.copy_(rgb_conv1.weight.mean(dim=1, keepdim=True).expand(-1, 12, -1, -1))
        self.maxpool_diff = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

    def motion_stem(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, 5, 3, H, W) -> (B, 64, H/8, W/8)."""
        return self.maxpool_diff(self.conv1_5(self.avg_diff(frame_differences(frames))))

    def temporal_module(self, channels: int) -> nn.Module:
        return LongTermTDM(channels, self.num_segments)

    def layer1_weights(self) -> Tuple[float, float]:
        """Weights of (trunk, motion) when fusing after layer1."""
        return self.alpha, self.beta

    def temporal_stage(self, stage: nn.Sequential) -> nn.Sequential:
        return nn.Sequential(*(TemporalBottleneck(block, self.temporal_module(block.conv1.out_channels),
                                                  self.num_segments, self.temporal_name) for block in stage))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        motion = self.motion_stem(frames)
        x = self.maxpool(self.relu(self.bn1(self.conv1(frames[:, CENTRE_FRAME]))))
        x = self.alpha * x + self.beta * F.interpolate(motion, size=x.shape[-2:])
        x = self.layer1_bak(x)
        trunk_weight, motion_weight = self.layer1_weights()
        x = trunk_weight * x + motion_weight * F.interpolate(self.resnext_layer1(motion), size=x.shape[-2:])
        x = self.layer4_bak(self.layer3_bak(self.layer2_bak(x)))
        return torch.flatten(self.avgpool(x), 1)


class TDN(PartialBNMixin, SegmentHeadMixin, nn.Module):
    """TDN: ``base_model`` per segment, dropout, ``new_fc``, average over segments.

    Input (N, 3, T*5, H, W), segment-major (segment 0's 5 frames, then segment 1's ...);
    output (N, K). ``forward_exits`` gives (N, T, K).
    """

    backbone_class = TDNResNet
    # Reference keys our model does not have: modules the reference builds but never uses.
    unused_reference_keys: Tuple[str, ...] = ("base_model.conv1_temp.",)

    def __init__(self, num_classes: int, *, backbone: str = "resnet50", num_segments: int = 8, dropout: float = 0.5,
                 partial_bn: bool = False, imagenet_pretrained: bool = False) -> None:
        super().__init__()
        self.num_segments = num_segments
        self.partial_bn = partial_bn
        self.base_model = self.backbone_class(backbone, num_segments, imagenet_pretrained=imagenet_pretrained)
        self.feature_dim = self.base_model.feature_dim
        self.dropout = nn.Dropout(p=dropout)
        self.new_fc = self.new_classifier(num_classes)
        self.input_spec = tsn_spec(num_segments, frames_per_segment=FRAMES_PER_SEGMENT)

    def segment_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, T*5, H, W) -> per-segment features (N, T, D)."""
        n, c, frames, h, w = x.shape
        if frames != self.num_segments * FRAMES_PER_SEGMENT:
            raise ValueError(f"{type(self).__name__} with {self.num_segments} segments expects "
                             f"{self.num_segments * FRAMES_PER_SEGMENT} frames (5 per segment), got {frames}")
        feats = self.base_model(fold_time(x).view(n * self.num_segments, FRAMES_PER_SEGMENT, c, h, w))
        return feats.view(n, self.num_segments, self.feature_dim)

    def convert_state_dict(self, state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Reference checkpoints (``module.`` already stripped): drop the never-used modules'
        keys, ``base_model.classifier.*`` -> ``new_fc.*`` (as the test scripts map it)."""
        out = {}
        for key, value in state.items():
            if key.startswith(self.unused_reference_keys):
                continue
            if key.startswith("base_model.classifier."):
                key = "new_fc." + key[len("base_model.classifier."):]
            out[key] = value
        return out


@register_model("tdn_r50", family="tdn", backbone="resnet50", aliases=("tdn",),
                description="TDN (temporal difference network, 5 frames per segment) resnet50")
@register_model("tdn_r101", family="tdn", backbone="resnet101",
                description="TDN (temporal difference network, 5 frames per segment) resnet101")
def tdn(num_classes: int = 400, *, backbone: str = "resnet50", num_segments: int = 8, dropout: float = 0.5,
        partial_bn: bool = False, imagenet_pretrained: bool = False) -> TDN:
    """TDN on ``backbone`` (resnet50 / resnet101), ``num_segments`` segments of 5 frames."""
    return TDN(num_classes, backbone=backbone, num_segments=num_segments, dropout=dropout, partial_bn=partial_bn,
               imagenet_pretrained=imagenet_pretrained)
