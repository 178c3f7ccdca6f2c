"""TSN and TSM: a 2D ImageNet backbone on every frame, consensus over segments.

TSM (Lin et al., ICCV 2019) adds the temporal shift: a fraction of the channels
moves one frame forward and one back in time (zero-filled at the ends), for free.
Module names follow the TSM repository (``base_model.*``, ``new_fc.*``, shifted
convolutions as ``conv1.net``), so its released checkpoints load directly; a TSM
checkpoint loaded into a TSN (or the other way round) is refused, naming the arch to use.

Interface (see archs/registry.py): ``forward(x) -> (N, K)`` is the mean of the segment
logits in train and eval; ``forward_exits(x) -> (N, T', K)`` (exit t averages segments
0..t); with ``consensus_type='identity'`` :meth:`TSN.training_loss` supervises every
segment's logits instead of their mean.

Pieces other 2D-backbone families reuse: :func:`torchvision_backbone`,
:class:`PartialBNMixin`, :class:`SegmentHeadMixin`, :func:`tsn_spec`.
"""
from __future__ import annotations

from typing import Dict, Tuple

import torch
from torch import nn

from archs.checkpoint import CheckpointError
from archs.layers import Criterion, fold_time, linear_classifier, per_step_loss
from archs.registry import InputSpec, ModelOptionError, register_model

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101")
BACKBONES = RESNETS + ("mobilenet_v2",)


def running_mean(frame_logits: torch.Tensor) -> torch.Tensor:
    """(N, T, K) -> (N, T, K): the average of the logits of frames 0..t, for each t."""
    steps = torch.arange(1, frame_logits.shape[1] + 1, device=frame_logits.device, dtype=frame_logits.dtype)
    return frame_logits.cumsum(dim=1) / steps.view(1, -1, 1)


def temporal_shift(x: torch.Tensor, num_segments: int, fold_div: int = 8) -> torch.Tensor:
    """Shift 1/fold_div of the channels back and 1/fold_div forward in time.

    x: (N*T, C, H, W). Channels [0, C/div) of frame t take frame t+1's values,
    channels [C/div, 2C/div) take frame t-1's; the ends are zero-filled.
    """
    nt, c, h, w = x.shape
    x = x.view(nt // num_segments, num_segments, c, h, w)
    fold = c // fold_div
    out = torch.zeros_like(x)
    out[:, :-1, :fold] = x[:, 1:, :fold]
    out[:, 1:, fold:2 * fold] = x[:, :-1, fold:2 * fold]
    out[:, :, 2 * fold:] = x[:, :, 2 * fold:]
    return out.view(nt, c, h, w)


class TemporalShift(nn.Module):
    """Wraps ``net`` and shifts its input in time (TSM); the wrapped module is ``net``."""

    def __init__(self, net: nn.Module, num_segments: int, fold_div: int = 8) -> None:
        super().__init__()
        self.net = net
        self.num_segments = num_segments
        self.fold_div = fold_div

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(temporal_shift(x, self.num_segments, self.fold_div))


class TemporalPool(nn.Module):
    """Max-pool T by 2 (kernel 3, stride 2) before ``net``: (N*T, C, H, W) -> (N*T/2, C, H, W)."""

    def __init__(self, net: nn.Module, num_segments: int) -> None:
        super().__init__()
        self.net = net
        self.num_segments = num_segments

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nt, c, h, w = x.shape
        x = x.view(nt // self.num_segments, self.num_segments, c, h, w).transpose(1, 2)
        x = nn.functional.max_pool3d(x, kernel_size=(3, 1, 1), stride=(2, 1, 1), padding=(1, 0, 0))
        x = x.transpose(1, 2).reshape(-1, c, h, w)
        return self.net(x)


def torchvision_backbone(name: str, imagenet_pretrained: bool = False, **kwargs) -> Tuple[nn.Module, int]:
    """A torchvision ResNet / MobileNetV2 without its classifier, and its feature size.

    ImageNet weights come from torchvision; offline, a clear error says where to put them.
    """
    import torchvision

    if name not in BACKBONES:
        raise ValueError(f"backbone must be one of {BACKBONES}, not {name!r}")
    model = getattr(torchvision.models, name)(weights=None, **kwargs)
    if imagenet_pretrained:
        model.load_state_dict(imagenet_state_dict(name))
    if name == "mobilenet_v2":
        dim = model.last_channel
        model.classifier = nn.Identity()
    else:
        dim = model.fc.in_features
        model.fc = nn.Identity()
    return model, dim


def imagenet_state_dict(name: str) -> Dict[str, torch.Tensor]:
    """torchvision's ImageNet weights (V1, as the TSM family used) for backbone ``name``."""
    import torchvision

    enum_name = {"mobilenet_v2": "MobileNet_V2_Weights"}.get(name, name.replace("resnet", "ResNet") + "_Weights")
    weights = getattr(torchvision.models, enum_name).IMAGENET1K_V1
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:  # URLError, HTTPError, socket errors ...
        from pathlib import Path

        hub = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
        raise RuntimeError(
            f"cannot get ImageNet weights for {name} ({type(exc).__name__}): offline? Put {weights.url} at {hub}, "
            "or use --pretrained none / --pretrained PATH") from None


class PartialBNMixin:
    """Partial BN (TSN): in train mode every BatchNorm but the first stays in eval
    mode with frozen affine parameters. Subclasses set ``self.partial_bn``."""

    partial_bn: bool = False

    def train(self, mode: bool = True):  # type: ignore[override]
        super().train(mode)  # type: ignore[misc]
        if mode and self.partial_bn:
            norms = [m for m in self.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
            for m in norms[1:]:
                m.eval()
                if m.weight is not None:
                    m.weight.requires_grad_(False)
                    m.bias.requires_grad_(False)
        return self


class SegmentHeadMixin:
    """The head of the 2D-backbone families (TSN/TSM, MVFNet, TDN, MSN).

    A subclass defines ``segment_features(x) -> (N, T', D)`` (pooled backbone features of
    each segment) and sets ``dropout``, ``new_fc`` and ``feature_dim``. Segment logits are
    ``new_fc(dropout(features))``; the clip's logits are their mean (the reference consensus,
    so released weights give the reference logits) and exit t averages segments 0..t. In
    eval mode ``forward_head(forward_features(x))`` (the classifier on the mean feature)
    equals ``forward(x)``, the classifier being linear.
    """

    classifier_std = 0.001

    def frame_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, T, H, W) -> per-segment logits (N, T', K)."""
        return self.forward_head(self.segment_features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.frame_logits(x).mean(dim=1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, T, H, W) -> (N, D): segment features averaged over segments."""
        return self.segment_features(x).mean(dim=1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., K): dropout and ``new_fc``."""
        return self.new_fc(self.dropout(features))

    def forward_exits(self, x: torch.Tensor) -> torch.Tensor:
        """(N, T', K): exit t averages the logits of segments 0..t."""
        return running_mean(self.frame_logits(x))

    def get_classifier(self) -> nn.Module:
        return self.new_fc

    def new_classifier(self, num_classes: int) -> nn.Linear:
        return linear_classifier(self.feature_dim, num_classes, self.classifier_std)

    def reset_classifier(self, num_classes: int) -> None:
        self.new_fc = self.new_classifier(num_classes)


def tsn_spec(num_segments: int, frames_per_segment: int = 1) -> InputSpec:
    """ImageNet-normalised 224 crops of T segments (the TSN family's input)."""
    return InputSpec(num_segments=num_segments, frames_per_segment=frames_per_segment, sampling="segment",
                     dense_stride=max(1, 64 // num_segments), crop_size=224, scale_size=256)


class TSN(PartialBNMixin, SegmentHeadMixin, nn.Module):
    """TSN / TSM: ``base_model`` on each of T frames, dropout, ``new_fc``, mean over segments.

    Input (N, 3, T, H, W); output (N, K). ``consensus_type`` is the training objective:
    ``'avg'`` supervises the mean of the segment logits, ``'identity'`` every segment's
    logits (T' = T/2 with temporal pooling); see :meth:`training_loss`.
    """

    def __init__(self, num_classes: int, *, backbone: str = "resnet50", num_segments: int = 8,
                 shift: bool = False, shift_div: int = 8, shift_place: str = "blockres",
                 temporal_pool: bool = False, consensus_type: str = "avg", dropout: float = 0.5,
                 partial_bn: bool = False, imagenet_pretrained: bool = False, width_mult: float = 1.0) -> None:
        super().__init__()
        if consensus_type not in CONSENSUS_TYPES:
            raise ModelOptionError(f"consensus_type must be one of {', '.join(CONSENSUS_TYPES)}, "
                                   f"not {consensus_type!r}")
        if backbone != "mobilenet_v2" and width_mult != 1.0:
            raise ModelOptionError("width_mult applies to the mobilenet_v2 backbone only (tsn_mbv2, tsm_mbv2)")
        extra = {"width_mult": width_mult} if backbone == "mobilenet_v2" else {}
        self.base_model, self.feature_dim = torchvision_backbone(backbone, imagenet_pretrained, **extra)
        self.backbone, self.shift = backbone, shift
        self.num_segments = num_segments
        self.consensus_type = consensus_type
        self.partial_bn = partial_bn
        if shift:
            insert_shift(self.base_model, backbone, num_segments, shift_div, shift_place, temporal_pool)
        elif temporal_pool:
            raise ModelOptionError("temporal_pool needs the temporal shift (a tsm_* model)")
        self.dropout = nn.Dropout(p=dropout)
        self.new_fc = self.new_classifier(num_classes)
        self.input_spec = tsn_spec(num_segments)

    def segment_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, T, H, W) -> per-frame features (N, T', D)."""
        return self.base_model(fold_time(x)).view(x.shape[0], -1, self.feature_dim)

    def training_loss(self, x: torch.Tensor, target: torch.Tensor,
                      criterion: Criterion) -> Tuple[torch.Tensor, torch.Tensor]:
        """(loss, logits (N, K)). ``'avg'``: ``criterion`` of the mean segment logits;
        ``'identity'``: the mean over segments of ``criterion`` of each segment's logits."""
        logits = self.frame_logits(x)
        clip_logits = logits.mean(dim=1)
        if self.consensus_type == "identity":
            return per_step_loss(logits, target, criterion), clip_logits
        return criterion(clip_logits, target), clip_logits

    def convert_state_dict(self, state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """TSM checkpoints: ``base_model.fc``/``classifier`` -> ``new_fc``. A checkpoint of the
        other kind (temporal-shift ``.net`` keys into a TSN, none into a TSM) raises
        :class:`CheckpointError` naming the arch it fits."""
        own = self.state_dict()
        out = {}
        for key, value in state.items():
            for old in ("base_model.fc.", "base_model.classifier.", "base_model.classifier.1."):
                if key.startswith(old) and key not in own:
                    key = "new_fc." + key[len(old):]
            out[key] = value
        self._check_shift_keys(out, own)
        return out

    def _check_shift_keys(self, state: Dict[str, torch.Tensor], own: Dict[str, torch.Tensor]) -> None:
        other = ("tsn_" if self.shift else "tsm_") + BACKBONE_SHORT[self.backbone]
        if not self.shift:
            shifted = next((k for k in state if ".net." in k and k.replace(".net.", ".") in own), None)
            if shifted:
                raise CheckpointError(f"checkpoint has temporal-shift keys ({shifted}): a TSM checkpoint; "
                                      f"use --arch {other}")
        elif not any(".net." in k for k in state):
            wrapped = next((k for k in own if ".net." in k and k.replace(".net.", ".") in state), None)
            if wrapped:
                raise CheckpointError(f"checkpoint has no temporal-shift keys ({wrapped.replace('.net.', '.')} "
                                      f"instead of {wrapped}): a TSN checkpoint; use --arch {other}")


def insert_shift(base: nn.Module, backbone: str, num_segments: int, fold_div: int, place: str, temporal_pool: bool) -> None:
    """Put temporal shifts into a torchvision ResNet / MobileNetV2, as TSM does.

    ``blockres`` shifts the residual branch (conv1 of every block; every 2nd block
    when a stage has 23 or more, as in ResNet-101); ``block`` shifts whole blocks.
    MobileNetV2 shifts the expansion conv of blocks with a residual connection.
    """
    if place not in ("blockres", "block"):
        raise ValueError(f"shift_place must be 'blockres' or 'block', not {place!r}")
    if backbone == "mobilenet_v2":
        if temporal_pool:
            raise ModelOptionError("temporal_pool is implemented for ResNet backbones only")
        for block in base.features:
            if getattr(block, "use_res_connect", False) and len(block.conv) == 4:
                block.conv[0] = TemporalShift(block.conv[0], num_segments, fold_div)
        return
    for stage_index, stage_name in enumerate(("layer1", "layer2", "layer3", "layer4")):
        stage = getattr(base, stage_name)
        segments = num_segments // 2 if (temporal_pool and stage_index >= 1) else num_segments
        every = 2 if len(base.layer3) >= 23 else 1
        for i, block in enumerate(stage):
            if i % every:
                continue
            if place == "blockres":
                block.conv1 = TemporalShift(block.conv1, segments, fold_div)
            else:
                stage[i] = TemporalShift(block, segments, fold_div)
    if temporal_pool:
        base.layer2 = TemporalPool(base.layer2, num_segments)


CONSENSUS_TYPES = ("avg", "identity")
BACKBONE_SHORT = {"resnet18": "r18", "resnet34": "r34", "resnet50": "r50", "resnet101": "r101",
                  "mobilenet_v2": "mbv2"}


@register_model("tsn_r18", family="tsn", backbone="resnet18", width_mult=1.0, description="TSN resnet18")
@register_model("tsn_r34", family="tsn", backbone="resnet34", width_mult=1.0, description="TSN resnet34")
@register_model("tsn_r50", family="tsn", backbone="resnet50", width_mult=1.0, aliases=("tsn",),
                description="TSN resnet50")
@register_model("tsn_r101", family="tsn", backbone="resnet101", width_mult=1.0, description="TSN resnet101")
@register_model("tsn_mbv2", family="tsn", backbone="mobilenet_v2", description="TSN mobilenet_v2")
def tsn(num_classes: int = 400, *, backbone: str = "resnet50", num_segments: int = 8, consensus_type: str = "avg",
        dropout: float = 0.5, partial_bn: bool = False, imagenet_pretrained: bool = False,
        width_mult: float = 1.0) -> TSN:
    """TSN on a ResNet / MobileNetV2 ``backbone`` over ``num_segments`` segments.

    ``consensus_type``: ``avg`` or ``identity`` (per-segment supervision, see
    :meth:`TSN.training_loss`); ``width_mult``: MobileNetV2 width (the ResNet names fix it to 1).
    """
    return TSN(num_classes, backbone=backbone, num_segments=num_segments, consensus_type=consensus_type,
               dropout=dropout, partial_bn=partial_bn, imagenet_pretrained=imagenet_pretrained, width_mult=width_mult)


@register_model("tsm_r18", family="tsm", backbone="resnet18", width_mult=1.0,
                description="TSM resnet18 with temporal shift")
@register_model("tsm_r34", family="tsm", backbone="resnet34", width_mult=1.0,
                description="TSM resnet34 with temporal shift")
@register_model("tsm_r50", family="tsm", backbone="resnet50", width_mult=1.0, aliases=("tsm",),
                description="TSM resnet50 with temporal shift")
@register_model("tsm_r101", family="tsm", backbone="resnet101", width_mult=1.0,
                description="TSM resnet101 with temporal shift")
@register_model("tsm_mbv2", family="tsm", backbone="mobilenet_v2", temporal_pool=False,
                description="TSM mobilenet_v2 with temporal shift")
def tsm(num_classes: int = 400, *, backbone: str = "resnet50", num_segments: int = 8, shift_div: int = 8,
        shift_place: str = "blockres", temporal_pool: bool = False, consensus_type: str = "avg",
        dropout: float = 0.5, partial_bn: bool = False, imagenet_pretrained: bool = False,
        width_mult: float = 1.0) -> TSN:
    """TSM: TSN with the temporal shift, on a ResNet / MobileNetV2 ``backbone``.

    ``shift_div``: shift 1/div of the channels each way; ``shift_place``: ``blockres``
    (residual branch) or ``block``; ``temporal_pool``: halve T before layer2 (ResNets; tsm_mbv2
    fixes it off);
    ``consensus_type`` and ``width_mult`` as in :func:`tsn`.
    """
    return TSN(num_classes, backbone=backbone, num_segments=num_segments, shift=True, shift_div=shift_div,
               shift_place=shift_place, temporal_pool=temporal_pool, consensus_type=consensus_type, dropout=dropout,
               partial_bn=partial_bn, imagenet_pretrained=imagenet_pretrained, width_mult=width_mult)
