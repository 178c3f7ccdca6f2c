"""X3D XS/S/M/L (Feichtenhofer, CVPR 2020), laid out as in PySlowFast.

X3D expands a tiny 2D-like network along frames, resolution, width and depth.
XS, S and M share one network (width factor 2.0, depth factor 2.2) and differ only
in their input; L is deeper (depth factor 5.0).

Layout (clip (N, 3, T, H, W); T is never strided, H and W are divided by 32)::

    s1    X3DStem       conv_xy 1x3x3 /2 -> depthwise conv 5x1x1 -> BN -> ReLU      (N, 24, T, H/2, W/2)
    s2-s5 residual stages of X3D bottlenecks, first block of each stage /2   (N, 24/48/96/192, T, ., .)
    head  X3DHead       conv_5 1x1x1 -> BN -> ReLU -> global pool -> lin_5 -> ReLU   (N, 2048) features
                        -> dropout -> projection                                     (N, K) logits

The stem, the residual block, the head and :class:`X3DNet` are shared with VoV3D
(``archs/vov3d.py``), which swaps the bottleneck for its T-OSA module.

Module names follow PySlowFast except that ``s1.pathway0_stem`` is ``s1`` and
``sK.pathway0_resI`` is ``sK.I``; :meth:`X3DNet.convert_state_dict` maps released
PySlowFast / VoV3D checkpoints (``model_state``) onto ours.

The test head (model option ``test_head``). In training, and whenever the last feature
map is no larger than the training window (``num_segments`` frames x ceil(train crop /
32) squared), the head pools globally and returns logits, for any clip length and crop.
At a test crop larger than the training crop, PySlowFast does not pool globally: it
average-pools conv_5's output with the training-size window at stride 1, runs lin_5 and
the projection at every window position, takes a softmax per position and averages
them. ``test_head="reference"`` (the default of the registered X3D/VoV3D models) does
that computation in eval and returns ``log(mean of the per-position softmaxes)`` as its
logits, so that ``softmax(logits)`` -- what score fusion takes -- is exactly the
reference's output; ``test_head="global"`` keeps global pooling and plain logits.
"""
from __future__ import annotations

import math
import re
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval

from archs.layers import depthwise_temporal_conv, init_classifier_, linear_classifier, make_divisible
from archs.registry import KINETICS_MEAN, KINETICS_STD, InputSpec, ModelOptionError, register_model

__all__ = ["X3DNet", "X3DStem", "X3DHead", "ResBlock", "SqueezeExcite", "X3DBottleneck", "TemporalDepthwiseConv3d",
           "bn3d", "make_stage", "build_x3d", "training_window", "x3d_spec", "init_x3d_weights", "x3d"]

FC_STD = 0.01  # PySlowFast's initialisation of the projection


def bn3d(channels: int) -> nn.BatchNorm3d:
    return nn.BatchNorm3d(channels, eps=1e-5, momentum=0.1)


class TemporalDepthwiseConv3d(nn.Conv3d):
    """Depthwise Conv3d with a (k, 1, 1) kernel; same parameters and state-dict keys
    as ``nn.Conv3d(C, C, (k, 1, 1), padding=(k // 2, 0, 0), groups=C, bias=False)``.

    With ``shift_add=True`` it computes :func:`archs.layers.depthwise_temporal_conv` instead
    of a grouped convolution (same result to float rounding, faster on CPU).
    """

    def __init__(self, channels: int, kernel_size: int, *, shift_add: bool = False) -> None:
        super().__init__(channels, channels, (kernel_size, 1, 1), padding=(kernel_size // 2, 0, 0),
                         groups=channels, bias=False)
        self.shift_add = shift_add

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shift_add:
            return depthwise_temporal_conv(x, self.weight, self.bias, padding=self.padding[0])
        return super().forward(x)


class X3DStem(nn.Module):
    """conv_xy (1x3x3, stride (1, 2, 2)) -> depthwise conv (k x1x1) -> BN -> ReLU.

    (N, C_in, T, H, W) -> (N, C, T, ceil(H/2), ceil(W/2)).
    """

    def __init__(self, in_channels: int, channels: int, *, temporal_kernel: int = 5, shift_add: bool = False) -> None:
        super().__init__()
        self.conv_xy = nn.Conv3d(in_channels, channels, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), bias=False)
        self.conv = TemporalDepthwiseConv3d(channels, temporal_kernel, shift_add=shift_add)
        self.bn = bn3d(channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(self.conv_xy(x))))


class SqueezeExcite(nn.Module):
    """Channel attention: global pool -> fc1 (1x1x1, bias) -> ReLU -> fc2 -> sigmoid -> scale.

    The squeeze width is ``make_divisible(channels * ratio)`` (at least 8).
    (N, C, T, H, W) -> (N, C, T, H, W).
    """

    def __init__(self, channels: int, ratio: float = 1 / 16) -> None:
        super().__init__()
        squeeze = make_divisible(channels * ratio)
        self.fc1 = nn.Conv3d(channels, squeeze, 1, bias=True)
        self.fc2 = nn.Conv3d(squeeze, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3, 4), keepdim=True)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(s))))


class X3DBottleneck(nn.Module):
    """X3D residual branch: 1x1x1 (a) -> depthwise 3x3x3 (b, spatial stride) -> [SE] -> swish -> 1x1x1 (c).

    (N, C_in, T, H, W) -> (N, C_out, T, H/stride, W/stride). ``c_bn`` is the block's
    final BN (zero-initialised so each block starts as the identity).
    """

    def __init__(self, in_channels: int, out_channels: int, inner_channels: int, *, stride: int = 1,
                 use_se: bool = True, se_ratio: float = 1 / 16) -> None:
        super().__init__()
        self.a = nn.Conv3d(in_channels, inner_channels, 1, bias=False)
        self.a_bn = bn3d(inner_channels)
        self.b = nn.Conv3d(inner_channels, inner_channels, 3, stride=(1, stride, stride), padding=1,
                           groups=inner_channels, bias=False)
        self.b_bn = bn3d(inner_channels)
        self.se = SqueezeExcite(inner_channels, se_ratio) if use_se else nn.Identity()
        self.c = nn.Conv3d(inner_channels, out_channels, 1, bias=False)
        self.c_bn = bn3d(out_channels)
        self.c_bn.final_bn = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.a_bn(self.a(x)), inplace=True)
        x = F.silu(self.se(self.b_bn(self.b(x))))
        return self.c_bn(self.c(x))


class ResBlock(nn.Module):
    """``ReLU(shortcut(x) + branch2(x))``; the shortcut is a strided 1x1x1 conv + BN
    (``branch1``/``branch1_bn``) when channels or resolution change, else the identity.

    (N, C_in, T, H, W) -> (N, C_out, T, H/stride, W/stride).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, branch2: nn.Module) -> None:
        super().__init__()
        self.has_projection = in_channels != out_channels or stride != 1
        if self.has_projection:
            self.branch1 = nn.Conv3d(in_channels, out_channels, 1, stride=(1, stride, stride), bias=False)
            self.branch1_bn = bn3d(out_channels)
        self.branch2 = branch2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.branch1_bn(self.branch1(x)) if self.has_projection else x
        return F.relu(shortcut + self.branch2(x), inplace=True)


BranchFactory = Callable[[int, int, int], nn.Module]  # (block index, in channels, stride) -> branch2


def make_stage(in_channels: int, out_channels: int, num_blocks: int, branch: BranchFactory, *,
               stride: int = 2) -> nn.Sequential:
    """``num_blocks`` residual blocks; the first one takes ``stride`` (spatial) and the channel change."""
    blocks = []
    for i in range(num_blocks):
        block_in, block_stride = (in_channels, stride) if i == 0 else (out_channels, 1)
        blocks.append(ResBlock(block_in, out_channels, block_stride, branch(i, block_in, block_stride)))
    return nn.Sequential(*blocks)


TEST_HEADS = ("reference", "global")


class X3DHead(nn.Module):
    """conv_5 (1x1x1) -> BN -> ReLU -> average pool -> lin_5 (1x1x1, no bias) -> ReLU, then
    dropout -> projection (Linear).

    ``window`` (frames, height, width of the last feature map at the training clip and
    crop) and ``test_head`` choose the eval-time pooling (module docstring): ``"global"``
    or no window pools globally; ``"reference"`` pools with the window at stride 1 and
    returns the log of the mean per-position softmax when more than one position results.
    (N, C_in, T, H, W) -> logits (N, K), for any T, H, W.
    """

    def __init__(self, in_channels: int, inner_channels: int, num_classes: int, *, lin5_channels: int = 2048,
                 dropout: float = 0.5, window: Optional[Tuple[int, int, int]] = None,
                 test_head: str = "global") -> None:
        super().__init__()
        if test_head not in TEST_HEADS:
            raise ModelOptionError(f"test_head must be one of {', '.join(TEST_HEADS)}, not {test_head!r}")
        self.conv_5 = nn.Conv3d(in_channels, inner_channels, 1, bias=False)
        self.conv_5_bn = bn3d(inner_channels)
        self.lin_5 = nn.Conv3d(inner_channels, lin5_channels, 1, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.projection = nn.Linear(lin5_channels, num_classes)
        self.window = window
        self.test_head = test_head

    def _conv5(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv_5_bn(self.conv_5(x)), inplace=True)

    def pooled_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, T, H, W) -> globally pooled (N, lin5_channels), before dropout and projection."""
        x = F.adaptive_avg_pool3d(self._conv5(x), 1)
        return F.relu(self.lin_5(x), inplace=True).flatten(1)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """(N, lin5_channels) -> logits (N, K)."""
        return self.projection(self.dropout(features))

    def reference_window(self, size: Sequence[int]) -> Optional[Tuple[int, int, int]]:
        """The pooling window for a (T, H, W) feature map in eval, or None to pool globally
        (training, ``global`` mode, no window, or a map that the window covers whole)."""
        if self.training or self.test_head == "global" or self.window is None:
            return None
        window = tuple(min(w, s) for w, s in zip(self.window, size))
        return None if window == tuple(size) else window

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        window = self.reference_window(x.shape[2:])
        if window is None:
            return self.classify(self.pooled_features(x))
        x = F.avg_pool3d(self._conv5(x), window, stride=1)               # (N, C, t, h, w)
        x = F.relu(self.lin_5(x), inplace=True)                           # (N, D, t, h, w)
        per_position = self.classify(x.movedim(1, -1)).flatten(1, 3)      # (N, P, K)
        log_probs = per_position.log_softmax(-1)
        return log_probs.logsumexp(1) - math.log(per_position.shape[1])  # log mean softmax (N, K)


def init_x3d_weights(model: nn.Module, *, fc_std: float = FC_STD, zero_init_final_bn: bool = True) -> None:
    """PySlowFast initialisation: convs kaiming-normal (fan_out), BN 1/0 (final BNs of
    residual branches 0/0), linear layers normal(0, fc_std)."""
    for m in model.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm3d):
            zero = zero_init_final_bn and getattr(m, "final_bn", False)
            nn.init.constant_(m.weight, 0.0 if zero else 1.0)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            init_classifier_(m, fc_std)


# (conv, BN after it) attribute pairs of our blocks, for :meth:`X3DNet.fuse_bn`.
_CONV_BN_PAIRS = (("conv", "bn"), ("a", "a_bn"), ("b", "b_bn"), ("b2", "b_bn"), ("c", "c_bn"),
                  ("branch1", "branch1_bn"), ("conv_5", "conv_5_bn"))

_RELEASED_KEYS = ((re.compile(r"^s1\.pathway0_stem\."), "s1."),
                  (re.compile(r"^(s\d)\.pathway0_res(\d+)\."), r"\1.\2."))


class X3DNet(nn.Module):
    """Stem ``s1``, residual stages ``s2``-``s5`` and an :class:`X3DHead`.

    The network shape X3D and VoV3D share. Input (N, 3, T, H, W), output logits (N, K);
    ``forward_features`` gives the head's pooled features (N, 2048), ``forward_head`` their logits.
    """

    def __init__(self, stem: nn.Module, stages: Sequence[nn.Module], head: X3DHead) -> None:
        super().__init__()
        self.s1 = stem
        for i, stage in enumerate(stages):
            self.add_module(f"s{i + 2}", stage)
        self.num_stages = len(stages)
        self.head = head

    def forward_trunk(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, T, H, W) -> last stage's feature map (N, C5, T, H/32, W/32)."""
        x = self.s1(x)
        for i in range(self.num_stages):
            x = getattr(self, f"s{i + 2}")(x)
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, T, H, W) -> globally pooled features (N, 2048)."""
        return self.head.pooled_features(self.forward_trunk(x))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """(N, 2048) -> logits (N, K)."""
        return self.head.classify(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, T, H, W) -> logits (N, K); in eval, with a reference test head and a map larger
        than the training window, the log of the mean per-position softmax (module docstring)."""
        return self.head(self.forward_trunk(x))

    def get_classifier(self) -> nn.Module:
        return self.head.projection

    def reset_classifier(self, num_classes: int) -> None:
        old = self.head.projection
        self.head.projection = linear_classifier(old.in_features, num_classes, FC_STD).to(old.weight.device)

    def fuse_bn(self) -> "X3DNet":
        """Fold every BatchNorm3d into the conv before it, in place, for inference (eval mode).

        Same outputs to float rounding (about 1e-6 relative) and fewer passes over memory.
        The fused model has different state-dict keys (BNs gone, convs with biases):
        use it to run, not to save or train.
        """
        if self.training:
            raise RuntimeError("fuse_bn() folds running statistics: call model.eval() first")
        for module in self.modules():
            if isinstance(module, nn.Sequential) and len(module) > 1 and isinstance(module[0], nn.Conv3d) \
                    and isinstance(module[1], nn.BatchNorm3d):
                module[0], module[1] = fuse_conv_bn_eval(module[0], module[1]), nn.Identity()
            for conv_name, bn_name in _CONV_BN_PAIRS:
                conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
                if isinstance(conv, nn.Conv3d) and isinstance(bn, nn.BatchNorm3d):
                    setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
                    setattr(module, bn_name, nn.Identity())
        return self

    def convert_state_dict(self, state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Map PySlowFast / VoV3D keys (``s1.pathway0_stem.*``, ``s2.pathway0_res0.*``) onto ours."""
        out = {}
        for key, value in state_dict.items():
            for pattern, repl in _RELEASED_KEYS:
                key = pattern.sub(repl, key)
            out[key] = value
        return out


def x3d_spec(num_segments: int, dense_stride: int, crop_size: int, scale_size: int) -> InputSpec:
    """Dense clip of ``num_segments`` frames every ``dense_stride``; Kinetics mean/std on [0, 1]."""
    return InputSpec(num_segments=num_segments, sampling="dense", dense_stride=dense_stride, crop_size=crop_size,
                     scale_size=scale_size, mean=KINETICS_MEAN, std=KINETICS_STD)


def training_window(frames: int, train_crop: int) -> Tuple[int, int, int]:
    """PySlowFast's head pooling size: the clip's frames x ceil(train crop / 32) squared."""
    side = math.ceil(train_crop / 32)
    return frames, side, side


def build_x3d(num_classes: int, *, depth_factor: float, width_factor: float = 2.0, bottleneck_factor: float = 2.25,
              dim_c1: int = 12, dim_c5: int = 2048, dropout: float = 0.5, se_ratio: float = 1 / 16,
              fast_depthwise: bool = False, window: Optional[Tuple[int, int, int]] = None,
              test_head: str = "global") -> X3DNet:
    """An X3D network (see the module docstring for the layout).

    Stage widths are ``make_divisible(dim_c1 * 2**i * width_factor)`` (24/48/96/192 for the
    default factors), blocks per stage ``ceil(depth_factor * [1, 2, 5, 3])``, inner
    width ``bottleneck_factor * stage width``; SE on every other block (0, 2, 4 ...).
    ``fast_depthwise`` computes the stem's temporal depthwise conv by shifted
    multiply-adds (same weights, same result to 1e-5, faster on CPU). ``window`` and
    ``test_head``: the head's eval-time pooling (:class:`X3DHead`, :func:`training_window`).
    """
    stem_channels = make_divisible(dim_c1 * width_factor)
    stem = X3DStem(3, stem_channels, shift_add=fast_depthwise)
    stages, in_channels, base = [], stem_channels, dim_c1
    for repeats in (1, 2, 5, 3):
        out_channels = make_divisible(base * width_factor)
        inner = int(bottleneck_factor * out_channels)

        def branch(i: int, cin: int, stride: int, cout: int = out_channels, inner: int = inner) -> nn.Module:
            return X3DBottleneck(cin, cout, inner, stride=stride, use_se=i % 2 == 0, se_ratio=se_ratio)

        stages.append(make_stage(in_channels, out_channels, math.ceil(depth_factor * repeats), branch))
        in_channels, base = out_channels, make_divisible(base * 2.0)
    head = X3DHead(in_channels, inner, num_classes, lin5_channels=dim_c5, dropout=dropout, window=window,
                   test_head=test_head)
    model = X3DNet(stem, stages, head)
    init_x3d_weights(model)
    return model


# variant: (depth factor, frames, frame stride, train crop, test short side); PySlowFast X3D_*.yaml.
X3D_VARIANTS = {
    "xs": (2.2, 4, 12, 160, 182),
    "s": (2.2, 13, 6, 160, 182),
    "m": (2.2, 16, 5, 224, 256),
    "l": (5.0, 16, 5, 312, 356),
}


def clip_frames(variant: str) -> Dict[str, int]:
    """The registered default of ``num_segments``: the variant's frames."""
    return {"num_segments": X3D_VARIANTS[variant][1]}


@register_model("x3d_xs", family="x3d", variant="xs", defaults=clip_frames("xs"),
                description="X3D-XS: 4 frames x stride 12, 160 crop (3.8 M params at 400 classes)")
@register_model("x3d_s", family="x3d", variant="s", defaults=clip_frames("s"),
                description="X3D-S: 13 frames x stride 6, 160 crop")
@register_model("x3d_m", family="x3d", variant="m", defaults=clip_frames("m"), aliases=("x3d",),
                description="X3D-M: 16 frames x stride 5, 224 train crop, 256 test (3.79 M params, 6.2 GMACs "
                            "at 16x256^2)")
@register_model("x3d_l", family="x3d", variant="l", defaults=clip_frames("l"),
                description="X3D-L: depth factor 5.0; 16 frames x stride 5, 312 train crop, 356 test (6.15 M params)")
def x3d(num_classes: int = 400, *, variant: str = "m", num_segments: Optional[int] = None, dropout: float = 0.5,
        fast_depthwise: bool = False, test_head: str = "reference") -> X3DNet:
    """X3D-``variant`` (xs, s, m, l) on clips of ``num_segments`` frames (default: the variant's,
    4 / 13 / 16 / 16); ``fast_depthwise`` computes the stem's temporal depthwise conv by shifted
    multiply-adds (same weights and logits); ``test_head``: ``reference`` (PySlowFast's
    training-size window and per-position softmax at a larger test crop) or ``global``."""
    if variant not in X3D_VARIANTS:
        raise ValueError(f"unknown X3D variant {variant!r}; choose one of {', '.join(X3D_VARIANTS)}")
    depth_factor, frames, stride, crop, scale = X3D_VARIANTS[variant]
    frames = num_segments or frames
    model = build_x3d(num_classes, depth_factor=depth_factor, dropout=dropout, fast_depthwise=fast_depthwise,
                      window=training_window(frames, crop), test_head=test_head)
    model.input_spec = x3d_spec(frames, stride, crop, scale)
    return model
