"""MoViNet A0-A5 (Kondratyuk et al., "MoViNets: Mobile Video Networks for Efficient Video
Recognition", CVPR 2021): base (3D) and stream (causal (2+1)D) models.

Layout (clip (N, 3, T, H, W), RGB in [0, 1]; T is never strided, H and W are divided by 32)::

    conv1       3x3 conv /2 -> BN -> act                                    (N, stem, T, H/2, W/2)
    blocks      5 stages of bottlenecks b{i}_l{j}; b0_l0, b1_l0, b2_l0, b4_l0 are /2
                expand 1x1 -> depthwise (kt, kh, kw) -> squeeze-excitation -> project 1x1,
                out = shortcut + alpha * branch (ReZero, alpha starts at 0)
    conv7       1x1 conv -> BN -> act                                       (N, head, T, H/32, W/32)
    pool        global average (base) / cumulative average over the frames seen so far (stream)
    classifier  1x1 conv head->2048 (bias) -> swish -> dropout -> 1x1 conv 2048->K (bias)  -> (N, K)

Base models (``movinet_a0`` ... ``movinet_a5``) use 3D convolutions with symmetric temporal
padding, swish / sigmoid, and one squeeze-excitation gate per clip. Stream models
(``movinet_a0_stream`` ...) factorise every depthwise conv into a per-frame 2D conv and a
temporal (kt, 1) conv, each with its own BN (the ``2plus1d`` layout of the released stream
weights), use hard-swish / TF hard-sigmoid, pad time on the past only, and gate each frame by
the cumulative mean of the frames seen so far concatenated with the frame's own mean. The stream
models of A3-A5 also add a learned-scale sinusoidal positional encoding to the squeeze input, as
the TF Model Garden configs of those models do (``use_positional_encoding: true``).

Spatial padding is TF 'SAME' (the extra pixel goes bottom/right) and the strided shortcut is a
TF 'SAME' 3x3 average pool that excludes the padding, so the released TF weights (as converted
by the PyTorch port Atze00/MoViNet-pytorch) give the same outputs. Module and parameter names
follow that port, so its state dicts (``modelA0_statedict_v3``, ``modelA0_stream_statedict_v3``
...) load strictly as they are.

Streaming: the recurrent state is explicit::

    state = model.init_state(batch_size)          # dict of zero tensors
    for clip in chunks:                           # any number of frames per chunk
        logits, state = model(clip, state)        # logits of all frames seen so far

``model(clip)`` without a state starts from zeros and returns only the logits (N, K), so a stream
model trains and tests on whole clips like any other model (the same causal graph). Feeding a
video frame by frame, in chunks or at once gives the same logits. ``forward_features(clip)`` is
the pooled ``conv7`` output (N, head) and ``forward_head`` the classifier on it.

One builder, :func:`movinet`, is registered under every name: ``movinet_a0`` ... ``movinet_a5``
fix ``variant`` and ``stream=False``, the ``*_stream`` names ``stream=True``; ``num_segments``
(the clip's frames) defaults to each size's evaluation view.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from archs.layers import depthwise_temporal_conv, fold_batch_norm, fold_time, make_divisible
from archs.registry import InputSpec, ModelOptionError, register_model

__all__ = ["MoViNet", "MoViNetConfig", "Bottleneck", "DepthwiseConv", "FrameConv", "SqueezeExcitation",
           "CONFIGS", "movinet"]

State = Dict[str, Tensor]
HIDDEN = 2048  # width of the classifier's hidden layer (dense9) in every size


@dataclass(frozen=True)
class MoViNetConfig:
    """One MoViNet size.

    stages: per stage ``(out_channels, stride of its first block, ((expand, kernel), ...))``; a
        kernel is written as its three digits (t, h, w): ``533`` is (5, 3, 3).
    num_frames / crop_size / frame_stride: the evaluation view (frames at a stride of the
        25-30 fps source video).
    stream_positional_encoding: whether the stream model adds the positional encoding.
    """

    stem: int
    head: int
    stages: Tuple[Tuple[int, int, Tuple[Tuple[int, int], ...]], ...]
    num_frames: int
    crop_size: int
    frame_stride: int
    stream_positional_encoding: bool = False


CONFIGS: Dict[str, MoViNetConfig] = {
    "a0": MoViNetConfig(stem=8, head=480, num_frames=50, crop_size=172, frame_stride=5, stages=(
        (8, 2, ((24, 155),)),
        (32, 2, ((80, 333), (80, 333), (80, 333))),
        (56, 2, ((184, 533), (112, 333), (184, 333))),
        (56, 1, ((184, 533), (184, 333), (184, 333), (184, 333))),
        (104, 2, ((384, 533), (280, 155), (280, 155), (344, 155))),
    )),
    "a1": MoViNetConfig(stem=16, head=600, num_frames=50, crop_size=172, frame_stride=5, stages=(
        (16, 2, ((40, 155), (40, 333))),
        (40, 2, ((96, 333), (120, 333), (96, 333), (96, 333))),
        (64, 2, ((216, 533), (128, 333), (216, 333), (168, 333), (216, 333))),
        (64, 1, ((216, 533), (216, 333), (216, 333), (128, 333), (128, 155), (216, 333))),
        (136, 2, ((456, 533), (360, 155), (360, 155), (360, 155), (456, 155), (456, 333), (544, 133))),
    )),
    "a2": MoViNetConfig(stem=16, head=640, num_frames=50, crop_size=224, frame_stride=5, stages=(
        (16, 2, ((40, 155), (40, 333), (64, 333))),
        (40, 2, ((96, 333), (120, 333), (96, 333), (96, 333), (120, 333))),
        (72, 2, ((240, 533), (160, 333), (240, 333), (192, 333), (240, 333))),
        (72, 1, ((240, 533), (240, 333), (240, 333), (240, 333), (144, 155), (240, 333))),
        (144, 2, ((480, 533), (384, 155), (384, 155), (480, 155), (480, 155), (480, 333), (576, 133))),
    )),
    "a3": MoViNetConfig(stem=16, head=744, num_frames=120, crop_size=256, frame_stride=2,
                        stream_positional_encoding=True, stages=(
        (16, 2, ((40, 155), (40, 333), (64, 333), (40, 333))),
        (48, 2, ((112, 333), (144, 333), (112, 333), (112, 155), (144, 333), (144, 333))),
        (80, 2, ((240, 533), (152, 333), (240, 333), (192, 333), (240, 333))),
        (88, 1, ((264, 533), (264, 333), (264, 333), (264, 333), (160, 155), (264, 333), (264, 333),
                 (264, 333))),
        (168, 2, ((560, 533), (448, 155), (448, 155), (560, 155), (560, 155), (560, 333), (448, 155),
                  (448, 155), (560, 333), (672, 133))),
    )),
    "a4": MoViNetConfig(stem=24, head=856, num_frames=80, crop_size=290, frame_stride=3,
                        stream_positional_encoding=True, stages=(
        (24, 2, ((64, 155), (64, 333), (96, 333), (64, 333), (96, 333), (64, 333))),
        (56, 2, ((168, 333), (168, 333), (136, 333), (136, 333), (168, 333), (168, 333), (168, 333),
                 (136, 155), (136, 333))),
        (96, 2, ((320, 533), (160, 333), (320, 333), (192, 333), (320, 333), (160, 333), (320, 333),
                 (256, 333), (320, 333))),
        (96, 1, ((320, 533), (320, 333), (320, 333), (320, 333), (192, 155), (320, 333), (320, 333),
                 (192, 333), (320, 333), (320, 333))),
        (192, 2, ((640, 533), (512, 155), (512, 155), (640, 155), (640, 155), (640, 333), (512, 155),
                  (512, 155), (640, 155), (768, 155), (640, 155), (640, 333), (768, 333))),
    )),
    "a5": MoViNetConfig(stem=24, head=992, num_frames=120, crop_size=320, frame_stride=2,
                        stream_positional_encoding=True, stages=(
        (24, 2, ((64, 155), (64, 155), (96, 333), (64, 333), (96, 333), (64, 333))),
        (64, 2, ((192, 533), (152, 333), (152, 333), (152, 333), (192, 333), (192, 333), (192, 333),
                 (152, 333), (152, 333), (192, 333), (192, 333))),
        (112, 2, ((376, 533), (224, 333), (376, 333), (376, 333), (296, 333), (376, 333), (224, 333),
                  (376, 333), (376, 333), (296, 333), (376, 333), (376, 333), (376, 333))),
        (120, 1, ((376, 533), (376, 333), (376, 333), (376, 333), (224, 155), (376, 333), (376, 333),
                  (224, 333), (376, 333), (376, 333), (376, 333))),
        (224, 2, ((744, 533), (744, 333), (600, 155), (600, 155), (744, 155), (744, 155), (744, 333),
                  (896, 155), (600, 155), (600, 155), (896, 155), (744, 155), (744, 333), (896, 155),
                  (600, 155), (600, 155), (744, 155), (744, 333))),
    )),
}


# ----------------------------------------------------------------------------- helpers

def same_padding(size: int, kernel: int, stride: int) -> Tuple[int, int]:
    """TF 'SAME' padding (before, after) of one spatial axis; an odd total puts the extra pixel after."""
    total = max(kernel - (stride if size % stride == 0 else size % stride), 0)
    return total // 2, total - total // 2


def conv_padding(kernel: Tuple[int, int], stride: int) -> Tuple[int, int]:
    """The conv's own padding for TF 'SAME' on (H, W): symmetric ``k // 2`` at stride 1 (odd
    kernels), none when strided, where :func:`pad_same` pads the input (it depends on its size)."""
    return (kernel[0] // 2, kernel[1] // 2) if stride == 1 else (0, 0)


def pad_same(x: Tensor, kernel: Tuple[int, int], stride: int) -> Tensor:
    """Zero-pad the last two axes of ``x`` (…, H, W) as TF 'SAME' does for a strided ``kernel``;
    at stride 1 ``x`` is returned as it is (the conv pads itself, see :func:`conv_padding`)."""
    if stride == 1:
        return x
    pads = (*same_padding(x.shape[-1], kernel[1], stride), *same_padding(x.shape[-2], kernel[0], stride))
    return F.pad(x, pads) if any(pads) else x


def per_frame(module: nn.Module, x: Tensor) -> Tensor:
    """Apply a 2D ``module`` to every frame: (N, C, T, H, W) -> (N, C', T, H', W')."""
    n, t = x.shape[0], x.shape[2]
    return module(fold_time(x)).unflatten(0, (n, t)).transpose(1, 2)


def frame_counts(frames: Tensor, num_frames: int, dtype: torch.dtype) -> Tensor:
    """(N, 1, T, 1, 1): frames seen up to and including each of the next ``num_frames`` frames,
    after ``frames`` (N,) earlier ones (the divisor of :func:`cumulative_mean`)."""
    steps = torch.arange(1, num_frames + 1, device=frames.device, dtype=dtype)
    return frames.to(dtype).view(-1, 1, 1, 1, 1) + steps.view(1, 1, -1, 1, 1)


def cumulative_mean(x: Tensor, total: Tensor, counts: Tensor) -> Tuple[Tensor, Tensor]:
    """Mean over all frames seen so far, at every frame of ``x``.

    x: (N, C, T, 1, 1) per-frame means; total: (N, C, 1, 1, 1) sum over the earlier frames;
    counts: (N, 1, T, 1, 1) from :func:`frame_counts`. Returns the means (N, C, T, 1, 1) and the new total.
    """
    sums = x.cumsum(2) + total
    return sums / counts, sums[:, :, -1:]


def pointwise(layer: "FrameConv", x: Tensor) -> Tensor:
    """A 1x1 :class:`FrameConv` without BatchNorm or activation (the squeeze-excitation layers)
    applied to pooled features (N, C, T, 1, 1) -> (N, C', T, 1, 1) as one matrix product over
    channels: the conv's result without its per-frame reshapes and convolution dispatch."""
    conv = layer.conv_1[0]
    out = F.linear(x.flatten(2).transpose(1, 2), conv.weight.flatten(1), conv.bias)  # (N, T, C')
    return out.transpose(1, 2)[..., None, None]


def positional_encoding(frames: Tensor, num_frames: int, channels: int, dtype: torch.dtype) -> Tensor:
    """Sinusoidal encoding of the absolute frame positions ``frames + 0 .. num_frames-1``.

    Channel c has angle ``position / 10000 ** (2 * (c // 2) / channels)``; the first half of the
    channels are the sines of the even channels, the second half the cosines of the odd ones (the
    TF Model Garden layout). Returns (N, channels, num_frames, 1, 1).
    """
    steps = torch.arange(num_frames, device=frames.device, dtype=dtype)
    positions = frames.to(dtype).view(-1, 1, 1) + steps.view(1, -1, 1)  # (N, T, 1)
    index = torch.arange(channels, device=frames.device)
    angles = torch.pow(10000.0, -(2 * (index // 2)).to(dtype) / channels)
    radians = positions * angles  # (N, T, channels)
    encoding = torch.cat([torch.sin(radians[..., 0::2]), torch.cos(radians[..., 1::2])], dim=-1)
    return encoding.permute(0, 2, 1)[..., None, None]


class HardSigmoid(nn.Module):
    """TF/Keras hard sigmoid ``clamp(0.2 x + 0.5, 0, 1)`` (not torch's ``x / 6 + 0.5``)."""

    def forward(self, x: Tensor) -> Tensor:
        return (0.2 * x + 0.5).clamp(0.0, 1.0)


class TFAvgPool(nn.Module):
    """3x3 average pool, stride 2 on H and W, TF 'SAME' padding left out of the average.

    (N, C, T, H, W) -> (N, C, T, ceil(H/2), ceil(W/2)); any H and W.
    """

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        pads = (*same_padding(w, 3, 2), *same_padding(h, 3, 2))
        total = F.avg_pool3d(F.pad(x, pads), (1, 3, 3), (1, 2, 2), divisor_override=1)
        count = F.avg_pool2d(F.pad(x.new_ones(1, 1, h, w), pads), 3, 2, divisor_override=1)
        return total / count


# ----------------------------------------------------------------------------- layers

Activation = Optional[Callable[[], nn.Module]]


class ConvNormAct(nn.Sequential):
    """``conv2d`` or ``conv3d`` -> ``norm`` (BatchNorm, eps 1e-3, or none) -> ``act`` (or none).

    In eval mode without autograd (``torch.no_grad()`` / ``torch.inference_mode()``) the BatchNorm
    is folded into the convolution: one conv with the folded weight and bias, computed once and
    recomputed whenever a parameter or running statistic changes (in place or replaced).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: Sequence[int], *, dims: int,
                 stride: Union[int, Sequence[int]] = 1, padding: Union[int, Sequence[int]] = 0, groups: int = 1,
                 bias: bool = False, norm: bool = True, act: Activation = None) -> None:
        conv = (nn.Conv3d if dims == 3 else nn.Conv2d)(in_channels, out_channels, tuple(kernel), stride=stride,
                                                       padding=padding, groups=groups, bias=bias)
        batch_norm = nn.BatchNorm3d if dims == 3 else nn.BatchNorm2d
        super().__init__(OrderedDict([
            (f"conv{dims}d", conv),
            ("norm", batch_norm(out_channels, eps=1e-3) if norm else nn.Identity()),
            ("act", act() if act is not None else nn.Identity()),
        ]))
        self._folded: Optional[Tuple[Optional[tuple], Tensor, Tensor]] = None

    def forward(self, x: Tensor) -> Tensor:
        conv, norm, act = self
        if self.training or torch.is_grad_enabled() or not isinstance(norm, nn.modules.batchnorm._BatchNorm):
            return super().forward(x)
        weight, bias = self._folded_weights(conv, norm)
        return act(self._folded_conv(x, weight, bias))

    def _folded_conv(self, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        return self[0]._conv_forward(x, weight, bias)

    def _folded_weights(self, conv: nn.Module, norm: nn.Module) -> Tuple[Tensor, Tensor]:
        """The conv weight and bias with the eval-mode BatchNorm folded in (cached)."""
        sources = [conv.weight, norm.weight, norm.bias, norm.running_mean, norm.running_var]
        if conv.bias is not None:
            sources.append(conv.bias)
        key = None  # tensors made under inference_mode have no version counter: fold on every call
        if not any(tensor.is_inference() for tensor in sources):
            key = tuple((tensor.data_ptr(), tensor._version) for tensor in sources)
        if key is None or self._folded is None or self._folded[0] != key:
            self._folded = (key, *fold_batch_norm(conv.weight, conv.bias, norm))
        return self._folded[1], self._folded[2]


class TemporalConvNormAct(ConvNormAct):
    """Depthwise temporal conv (kt, 1) over (N, C, T, H*W) -> BN -> act (the ``conv_2`` of a (2+1)D
    bottleneck). The folded eval path computes it as kt multiply-adds of shifted frames, several
    times faster on CPU than a depthwise conv of this shape."""

    def __init__(self, channels: int, frames: int, *, padding: int, act: Activation) -> None:
        super().__init__(channels, channels, (frames, 1), dims=2, padding=(padding, 0), groups=channels, act=act)

    def _folded_conv(self, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        return depthwise_temporal_conv(x, weight, bias, padding=self[0].padding[0])


class FrameConv(nn.Module):
    """A convolution with temporal kernel 1 (stem, pointwise convs, SE and classifier layers).

    (N, C, T, H, W) -> (N, C', T, H', W') with TF 'SAME' spatial padding. ``conv_type='3d'`` holds
    a Conv3d (1, kh, kw); ``'2plus1d'`` a Conv2d (kh, kw) applied to every frame.
    """

    def __init__(self, in_channels: int, out_channels: int, *, conv_type: str, kernel: Tuple[int, int] = (1, 1),
                 stride: int = 1, norm: bool = True, act: Activation = None, bias: bool = False) -> None:
        super().__init__()
        self.kernel, self.stride, self.frame_2d = kernel, stride, conv_type == "2plus1d"
        if self.frame_2d:
            self.conv_1 = ConvNormAct(in_channels, out_channels, kernel, dims=2, stride=stride,
                                      padding=conv_padding(kernel, stride), bias=bias, norm=norm, act=act)
        else:
            self.conv_1 = ConvNormAct(in_channels, out_channels, (1, *kernel), dims=3, stride=(1, stride, stride),
                                      padding=(0, *conv_padding(kernel, stride)), bias=bias, norm=norm, act=act)

    def forward(self, x: Tensor) -> Tensor:
        x = pad_same(x, self.kernel, self.stride)
        return per_frame(self.conv_1, x) if self.frame_2d else self.conv_1(x)


class DepthwiseConv(nn.Module):
    """The depthwise (kt, kh, kw) convolution of a bottleneck, with BN and activation.

    ``'3d'``: one Conv3d (``conv_1``). ``'2plus1d'``: a per-frame (kh, kw) Conv2d (``conv_1``), then,
    if kt > 1, a temporal (kt, 1) Conv2d over (T, H*W) (``conv_2``), each with its own BN and act.
    Non-causal: kt//2 zero frames on both sides. Causal: the kt-1 frames before the clip come from
    ``buffer`` (N, C, kt-1, h, w) (zeros at the start of a video), and the last kt-1 frames are
    returned as the next buffer: (N, C, T, H, W) -> (N, C, T, H/s, W/s).
    """

    def __init__(self, channels: int, kernel: Tuple[int, int, int], stride: int, *, conv_type: str,
                 causal: bool, act: Activation) -> None:
        super().__init__()
        kt, kh, kw = kernel
        self.kernel_hw, self.stride, self.conv_type = (kh, kw), stride, conv_type
        self.buffer_frames = kt - 1 if causal else 0
        pad_t = 0 if causal else (kt - 1) // 2
        if conv_type == "3d":
            self.conv_1 = ConvNormAct(channels, channels, kernel, dims=3, stride=(1, stride, stride),
                                      padding=(pad_t, *conv_padding((kh, kw), stride)), groups=channels, act=act)
            self.conv_2 = None
        else:
            self.conv_1 = ConvNormAct(channels, channels, (kh, kw), dims=2, stride=stride,
                                      padding=conv_padding((kh, kw), stride), groups=channels, act=act)
            self.conv_2 = TemporalConvNormAct(channels, kt, padding=pad_t, act=act) if kt > 1 else None

    def buffer_shape(self, channels: int, height: int, width: int) -> Optional[Tuple[int, int, int, int]]:
        """Per-sample shape of the stream buffer for input frames of ``height`` x ``width`` (None: no buffer)."""
        if not self.buffer_frames:
            return None
        if self.conv_type == "2plus1d":  # the buffer sits after the strided spatial conv
            height, width = -(-height // self.stride), -(-width // self.stride)
        return channels, self.buffer_frames, height, width

    def _with_past(self, x: Tensor, buffer: Optional[Tensor]) -> Tuple[Tensor, Optional[Tensor]]:
        if not self.buffer_frames:
            return x, None
        if buffer is None:
            raise ValueError("a causal MoViNet layer needs its stream buffer; use model.init_state()")
        x = torch.cat([buffer, x], dim=2)
        return x, x[:, :, -self.buffer_frames:].clone()

    def forward(self, x: Tensor, buffer: Optional[Tensor] = None) -> Tuple[Tensor, Optional[Tensor]]:
        if self.conv_type == "3d":
            x, buffer = self._with_past(x, buffer)
            return self.conv_1(pad_same(x, self.kernel_hw, self.stride)), buffer
        x = per_frame(self.conv_1, pad_same(x, self.kernel_hw, self.stride))
        if self.conv_2 is None:
            return x, None
        x, buffer = self._with_past(x, buffer)
        height, width = x.shape[-2:]
        x = self.conv_2(x.flatten(3))  # (N, C, kt-1+T, H*W) -> (N, C, T, H*W) when causal
        return x.unflatten(3, (height, width)), buffer


class SqueezeExcitation(nn.Module):
    """Channel gates from pooled features: fc1 -> act -> fc2 -> gate, then ``x * gates``.

    Non-causal: one gate per clip from the mean over (T, H, W), squeeze width
    ``make_divisible(C // 4)``. Causal: one gate per frame from [cumulative mean over the frames
    seen so far, the frame's own spatial mean] (2C channels), squeeze ``make_divisible(C // 4 * 2)``,
    optionally plus ``pos_scale`` times a sinusoidal encoding of the frame position.
    """

    def __init__(self, channels: int, *, conv_type: str, causal: bool, act: Activation,
                 gate: Callable[[], nn.Module], positional: bool = False) -> None:
        super().__init__()
        factor = 2 if causal else 1
        squeeze = make_divisible(channels // 4 * factor)
        self.fc1 = FrameConv(channels * factor, squeeze, conv_type=conv_type, norm=False, bias=True)
        self.act = act()
        self.fc2 = FrameConv(squeeze, channels, conv_type=conv_type, norm=False, bias=True)
        self.gate = gate()
        self.pos_scale = nn.Parameter(torch.zeros(())) if positional else None

    def forward(self, x: Tensor, total: Optional[Tensor] = None, frames: Optional[Tensor] = None,
                counts: Optional[Tensor] = None) -> Tuple[Tensor, Optional[Tensor]]:
        """x: (N, C, T, H, W); causal: ``total`` (N, C, 1, 1, 1) and ``frames`` (N,) from the state,
        ``counts`` = ``frame_counts(frames, T)``."""
        if total is None:
            pooled = x.mean((2, 3, 4), keepdim=True)
        else:
            frame_mean = x.mean((3, 4), keepdim=True)
            running, total = cumulative_mean(frame_mean, total, counts)
            pooled = torch.cat([running, frame_mean], dim=1)
            if self.pos_scale is not None:
                pooled = pooled + self.pos_scale * positional_encoding(frames, x.shape[2], pooled.shape[1], x.dtype)
        gates = self.gate(pointwise(self.fc2, self.act(pointwise(self.fc1, pooled))))
        return x * gates, total


class Bottleneck(nn.Module):
    """expand 1x1 -> depthwise conv -> SE -> project 1x1; ``shortcut + alpha * branch``.

    The shortcut is the identity, or (when strided or widened) [TF avg pool] + 1x1 conv + BN.
    (N, C_in, T, H, W) -> (N, C_out, T, H/s, W/s).
    """

    def __init__(self, in_channels: int, out_channels: int, expand: int, kernel: Tuple[int, int, int], stride: int,
                 *, conv_type: str, causal: bool, act: Activation, gate: Callable[[], nn.Module],
                 positional: bool = False) -> None:
        super().__init__()
        self.expand = FrameConv(in_channels, expand, conv_type=conv_type, act=act)
        self.deep = DepthwiseConv(expand, kernel, stride, conv_type=conv_type, causal=causal, act=act)
        self.se = SqueezeExcitation(expand, conv_type=conv_type, causal=causal, act=act, gate=gate,
                                    positional=positional)
        self.project = FrameConv(expand, out_channels, conv_type=conv_type)
        self.res = None
        if stride != 1 or in_channels != out_channels:
            pool = [TFAvgPool()] if stride != 1 else []
            self.res = nn.Sequential(*pool, FrameConv(in_channels, out_channels, conv_type=conv_type))
        self.alpha = nn.Parameter(torch.tensor(0.0))
        self.stride, self.expand_channels = stride, expand

    def forward(self, x: Tensor, buffer: Optional[Tensor] = None, total: Optional[Tensor] = None,
                frames: Optional[Tensor] = None,
                counts: Optional[Tensor] = None) -> Tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
        """Returns the output and the block's new stream state (depthwise buffer, SE total)."""
        shortcut = x if self.res is None else self.res(x)
        y, buffer = self.deep(self.expand(x), buffer)
        y, total = self.se(y, total, frames, counts)
        return shortcut + self.alpha * self.project(y), buffer, total


# ----------------------------------------------------------------------------- model

class MoViNet(nn.Module):
    """MoViNet backbone and classifier; see the module docstring.

    Args:
        config: one of :data:`CONFIGS`.
        num_classes: classifier outputs (600 for the released Kinetics-600 weights).
        causal: stream model (causal convolutions and SE, cumulative pooling, explicit state).
        conv_type: ``'3d'`` (base weights) or ``'2plus1d'`` (stream weights).
        dropout: dropout before the last layer.
        positional_encoding: add the positional encoding to the causal SE input.
        internal_state: stream models only: ``model(clip)`` keeps the state between calls in the
            model, as MoViNet-pytorch does (call :meth:`clean_activation_buffers` between videos).
    """

    def __init__(self, config: MoViNetConfig, *, num_classes: int = 600, causal: bool = False,
                 conv_type: str = "3d", dropout: float = 0.2, positional_encoding: bool = False,
                 internal_state: bool = False) -> None:
        super().__init__()
        if conv_type not in ("3d", "2plus1d"):
            raise ValueError(f"conv_type must be '3d' or '2plus1d', not {conv_type!r}")
        if (positional_encoding or internal_state) and not causal:
            raise ModelOptionError("positional_encoding and internal_state exist only for stream models "
                                   "(movinet_*_stream)")
        self.causal, self.conv_type, self.internal_state = causal, conv_type, internal_state
        self._state: Optional[State] = None
        act = nn.SiLU if conv_type == "3d" else nn.Hardswish
        gate = nn.Sigmoid if conv_type == "3d" else HardSigmoid

        self.conv1 = FrameConv(3, config.stem, conv_type=conv_type, kernel=(3, 3), stride=2, act=act)
        blocks = OrderedDict()
        channels = config.stem
        for i, (out_channels, stride, layers) in enumerate(config.stages):
            for j, (expand, kernel) in enumerate(layers):
                blocks[f"b{i}_l{j}"] = Bottleneck(channels, out_channels, expand, _kernel(kernel),
                                                  stride if j == 0 else 1, conv_type=conv_type, causal=causal,
                                                  act=act, gate=gate, positional=positional_encoding)
                channels = out_channels
        self.blocks = nn.ModuleDict(blocks)
        self.conv7 = FrameConv(channels, config.head, conv_type=conv_type, act=act)
        self.classifier = nn.Sequential(
            FrameConv(config.head, HIDDEN, conv_type=conv_type, norm=False, bias=True),
            nn.SiLU(),
            nn.Dropout(dropout),
            FrameConv(HIDDEN, num_classes, conv_type=conv_type, norm=False, bias=True),
        )
        self.apply(_init_weights)

    # -- stream state ---------------------------------------------------------------------

    def init_state(self, batch_size: int, frame_size: Union[int, Tuple[int, int], None] = None, *,
                   device: Union[str, torch.device, None] = None, dtype: Optional[torch.dtype] = None) -> State:
        """The zero state of a stream model before the first frame of a video.

        frame_size: input frame size (H, W) or one int; defaults to ``input_spec.crop_size``.
        Keys: ``'{block}.deep'`` (N, C, kt-1, h, w) buffers of the causal convs, ``'{block}.se'``
        and ``'head'`` (N, C, 1, 1, 1) running sums, ``'frames'`` (N,) frames seen so far.
        """
        if not self.causal:
            raise ValueError("base MoViNets have no stream state; use a movinet_*_stream model")
        if frame_size is None:
            frame_size = self.input_spec.crop_size
        height, width = (frame_size, frame_size) if isinstance(frame_size, int) else frame_size
        factory = {"device": device, "dtype": dtype or torch.float32}
        height, width = -(-height // 2), -(-width // 2)  # conv1
        state: State = {}
        for name, block in self.blocks.items():
            shape = block.deep.buffer_shape(block.expand_channels, height, width)
            if shape is not None:
                state[f"{name}.deep"] = torch.zeros(batch_size, *shape, **factory)
            state[f"{name}.se"] = torch.zeros(batch_size, block.expand_channels, 1, 1, 1, **factory)
            height, width = -(-height // block.stride), -(-width // block.stride)
        state["head"] = torch.zeros(batch_size, self.conv7.conv_1[0].out_channels, 1, 1, 1, **factory)
        state["frames"] = torch.zeros(batch_size, **factory)
        return state

    def clean_activation_buffers(self) -> None:
        """Forget the state kept with ``internal_state=True`` (MoViNet-pytorch's API): call between videos."""
        self._state = None

    # -- forward ----------------------------------------------------------------------------

    def forward(self, x: Tensor, state: Optional[State] = None) -> Union[Tensor, Tuple[Tensor, State]]:
        """x: (N, 3, T, H, W) RGB in [0, 1].

        Base model: logits (N, K). Stream model: with ``state`` returns ``(logits, new_state)``, the
        logits of every frame seen so far (the state is not detached: detach it yourself to cut
        backpropagation between chunks); without it, logits (N, K) of ``x`` alone (or, with
        ``internal_state=True``, of everything fed since :meth:`clean_activation_buffers`).
        """
        if not self.causal:
            if state is not None:
                raise ValueError("base MoViNets have no stream state; use a movinet_*_stream model")
            return self.forward_head(self._run(x, {})[0])
        if state is not None:
            features, state = self._run(x, state)
            return self.forward_head(features), state
        if not self.internal_state:
            return self.forward_head(self.forward_features(x))
        if self._state is None:
            self._state = self._zero_state(x)
        features, state = self._run(x, self._state)
        self._state = {key: value.detach() for key, value in state.items()}
        return self.forward_head(features)

    def forward_features(self, x: Tensor) -> Tensor:
        """(N, 3, T, H, W) -> (N, head) features of the clip alone, pooled over (T, H, W) (for a
        stream model: the cumulative mean at the last frame, from a zero state)."""
        return self._run(x, self._zero_state(x))[0]

    def forward_head(self, features: Tensor) -> Tensor:
        """(N, head) -> logits (N, K): the two-layer classifier."""
        return self.classifier(features[:, :, None, None, None]).flatten(1)

    def _zero_state(self, x: Tensor) -> State:
        """The state before the first frame of clip ``x`` ({} for a base model)."""
        if not self.causal:
            return {}
        return self.init_state(x.shape[0], tuple(x.shape[-2:]), device=x.device, dtype=x.dtype)

    def _run(self, x: Tensor, state: State) -> Tuple[Tensor, State]:
        frames = state.get("frames")
        counts = None if frames is None else frame_counts(frames, x.shape[2], x.dtype)
        new_state: State = {}
        x = self.conv1(x)
        for name, block in self.blocks.items():
            x, buffer, total = block(x, state.get(f"{name}.deep"), state.get(f"{name}.se"), frames, counts)
            if buffer is not None:
                new_state[f"{name}.deep"] = buffer
            if total is not None:
                new_state[f"{name}.se"] = total
        x = self.conv7(x)
        if self.causal:
            running, new_state["head"] = cumulative_mean(x.mean((3, 4), keepdim=True), state["head"], counts)
            pooled = running[:, :, -1:]
            new_state["frames"] = frames + x.shape[2]
        else:
            pooled = x.mean((2, 3, 4), keepdim=True)
        return pooled.flatten(1), new_state

    # -- classifier -------------------------------------------------------------------------

    def get_classifier(self) -> nn.Module:
        return self.classifier[3].conv_1[0]

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier[3] = FrameConv(HIDDEN, num_classes, conv_type=self.conv_type, norm=False, bias=True)
        self.classifier[3].apply(_init_weights)


def _kernel(code: int) -> Tuple[int, int, int]:
    """``533`` -> (5, 3, 3)."""
    t, h, w = (int(digit) for digit in str(code))
    return t, h, w


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, (nn.Conv2d, nn.Conv3d)):
        nn.init.kaiming_normal_(module.weight, mode="fan_out")
        if module.bias is not None:
            nn.init.zeros_(module.bias)


# ----------------------------------------------------------------------------- builders

def clip_frames(variant: str) -> Dict[str, int]:
    """The registered default of ``num_segments``: the variant's evaluation frames."""
    return {"num_segments": CONFIGS[variant].num_frames}


@register_model("movinet_a0", family="movinet", variant="a0", stream=False, defaults=clip_frames("a0"),
                aliases=("movinet",), description="MoViNet-A0-Base (3D, 50x172^2)")
@register_model("movinet_a1", family="movinet", variant="a1", stream=False, defaults=clip_frames("a1"),
                description="MoViNet-A1-Base (3D, 50x172^2)")
@register_model("movinet_a2", family="movinet", variant="a2", stream=False, defaults=clip_frames("a2"),
                description="MoViNet-A2-Base (3D, 50x224^2)")
@register_model("movinet_a3", family="movinet", variant="a3", stream=False, defaults=clip_frames("a3"),
                description="MoViNet-A3-Base (3D, 120x256^2)")
@register_model("movinet_a4", family="movinet", variant="a4", stream=False, defaults=clip_frames("a4"),
                description="MoViNet-A4-Base (3D, 80x290^2)")
@register_model("movinet_a5", family="movinet", variant="a5", stream=False, defaults=clip_frames("a5"),
                description="MoViNet-A5-Base (3D, 120x320^2)")
@register_model("movinet_a0_stream", family="movinet", variant="a0", stream=True, defaults=clip_frames("a0"),
                aliases=("movinet_stream",), description="MoViNet-A0-Stream (causal (2+1)D, frame by frame)")
@register_model("movinet_a1_stream", family="movinet", variant="a1", stream=True, defaults=clip_frames("a1"),
                description="MoViNet-A1-Stream (causal (2+1)D, frame by frame)")
@register_model("movinet_a2_stream", family="movinet", variant="a2", stream=True, defaults=clip_frames("a2"),
                description="MoViNet-A2-Stream (causal (2+1)D, frame by frame)")
@register_model("movinet_a3_stream", family="movinet", variant="a3", stream=True, defaults=clip_frames("a3"),
                description="MoViNet-A3-Stream (causal (2+1)D, frame by frame)")
@register_model("movinet_a4_stream", family="movinet", variant="a4", stream=True, defaults=clip_frames("a4"),
                description="MoViNet-A4-Stream (causal (2+1)D, frame by frame)")
@register_model("movinet_a5_stream", family="movinet", variant="a5", stream=True, defaults=clip_frames("a5"),
                description="MoViNet-A5-Stream (causal (2+1)D, frame by frame)")
def movinet(num_classes: int = 600, *, variant: str = "a0", stream: bool = False,
            num_segments: Optional[int] = None, conv_type: Optional[str] = None, dropout: float = 0.2,
            positional_encoding: Optional[bool] = None, internal_state: bool = False) -> MoViNet:
    """MoViNet-``variant`` (a0 ... a5) base (``stream=False``) or stream model.

    num_segments: frames of a training/test clip (the input spec; the network pools over any
    number); default: the variant's evaluation view (50 frames for A0-A2, 120 for A3 ...).
    conv_type defaults to ``'3d'`` for base and ``'2plus1d'`` for stream models (the released
    weights); positional_encoding defaults to on for the A3-A5 stream models.
    """
    if variant not in CONFIGS:
        raise ValueError(f"unknown MoViNet variant {variant!r}; choose one of {', '.join(CONFIGS)}")
    config = CONFIGS[variant]
    if positional_encoding is None:
        positional_encoding = stream and config.stream_positional_encoding
    model = MoViNet(config, num_classes=num_classes, causal=stream,
                    conv_type=conv_type or ("2plus1d" if stream else "3d"), dropout=dropout,
                    positional_encoding=positional_encoding, internal_state=internal_state)
    model.input_spec = InputSpec(num_segments=num_segments or config.num_frames, sampling="dense",
                                 dense_stride=config.frame_stride, crop_size=config.crop_size,
                                 scale_size=config.crop_size, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                                 value_range=1.0)
    return model
