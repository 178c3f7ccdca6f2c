"""TSN and TSM: a 2D ImageNet backbone on every frame, consensus over segments.

TSM (Lin et al., ICCV 2019) adds the temporal shift: a fraction of the channels
moves one frame forward and one back in time (zero-filled at the ends), for free.
Module names follow the TSM repository (``base_model.*``, ``new_fc.*``, shifted
convolutions as ``conv1.net``), so its released checkpoints load directly.

Pieces other 2D-backbone families reuse: :func:`fold_time`, :func:`torchvision_backbone`,
:class:`PartialBNMixin`, :class:`SegmentHeadMixin`, :func:`tsn_spec`.
"""
from __future__ import annotations

from typing import Dict, Tuple

import torch
from torch import nn

from archs.registry import InputSpec, register_model

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101")
BACKBONES = RESNETS + ("mobilenet_v2",)


def fold_time(x: torch.Tensor) -> torch.Tensor:
    """(N, C, T, H, W) -> (N*T, C, H, W), frame-major within each clip."""
    n, c, t, h, w = x.shape
    return x.transpose(1, 2).reshape(n * t, c, h, w)


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
    """The head of the 2D-backbone families: ``frame_logits(x)`` gives per-segment logits
    (N, T', K) from ``new_fc``; the clip's logits are their mean and exit t averages
    segments 0..t (early exit). Subclasses set ``new_fc`` and ``feature_dim``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.frame_logits(x).mean(dim=1)

    def forward_exits(self, x: torch.Tensor) -> torch.Tensor:
        """(N, T', K): exit t averages the logits of segments 0..t."""
        return running_mean(self.frame_logits(x))

    def get_classifier(self) -> nn.Module:
        return self.new_fc

    def new_classifier(self, num_classes: int) -> nn.Linear:
        return nn.Linear(self.feature_dim, num_classes)

    def reset_classifier(self, num_classes: int) -> None:
        self.new_fc = self.new_classifier(num_classes)


def tsn_spec(num_segments: int, frames_per_segment: int = 1) -> InputSpec:
    """ImageNet-normalised 224 crops of T segments (the TSN family's input)."""
    return InputSpec(num_segments=num_segments, frames_per_segment=frames_per_segment, sampling="segment",
                     dense_stride=max(1, 64 // num_segments), crop_size=224, scale_size=256)


class TSN(PartialBNMixin, SegmentHeadMixin, nn.Module):
    """TSN / TSM: ``base_model`` on each of T frames, dropout, ``new_fc``, consensus.

    Input (N, 3, T, H, W); output (N, K) (``consensus='avg'``) or (N, T', K)
    (``'identity'``; T' = T/2 with temporal pooling).
    """

    def __init__(self, num_classes: int, *, backbone: str = "resnet50", num_segments: int = 8,
                 shift: bool = False, shift_div: int = 8, shift_place: str = "blockres",
                 temporal_pool: bool = False, consensus_type: str = "avg", dropout: float = 0.5,
                 partial_bn: bool = False, imagenet_pretrained: bool = False, width_mult: float = 1.0) -> None:
        super().__init__()
        extra = {"width_mult": width_mult} if backbone == "mobilenet_v2" else {}
        self.base_model, self.feature_dim = torchvision_backbone(backbone, imagenet_pretrained, **extra)
        self.num_segments = num_segments
        self.consensus_type = consensus_type
        self.partial_bn = partial_bn
        self.out_segments = num_segments // 2 if temporal_pool else num_segments
        if shift:
            insert_shift(self.base_model, backbone, num_segments, shift_div, shift_place, temporal_pool)
        elif temporal_pool:
            raise ValueError("--temporal-pool needs the temporal shift (a TSM model)")
        self.dropout = nn.Dropout(p=dropout)
        self.new_fc = nn.Linear(self.feature_dim, num_classes)
        nn.init.normal_(self.new_fc.weight, 0, 0.001)
        nn.init.zeros_(self.new_fc.bias)
        self.input_spec = tsn_spec(num_segments)

    def frame_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, T, H, W) -> per-frame logits (N, T', K)."""
        n = x.shape[0]
        feats = self.base_model(fold_time(x))
        return self.new_fc(self.dropout(feats)).view(n, -1, self.new_fc.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.frame_logits(x)
        return logits.mean(dim=1) if self.consensus_type == "avg" else logits

    def convert_state_dict(self, state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """TSM checkpoints: ``base_model.fc``/``classifier`` -> ``new_fc``; ``.net`` added or
        removed on shifted convolutions (fine-tuning between TSN and TSM)."""
        own = self.state_dict()
        out = {}
        for key, value in state.items():
            for old in ("base_model.fc.", "base_model.classifier.", "base_model.classifier.1."):
                if key.startswith(old) and key not in own:
                    key = "new_fc." + key[len(old):]
            if key not in own:
                with_net = key.rsplit(".", 1)
                candidates = [key.replace(".net.", "."), f"{with_net[0]}.net.{with_net[1]}" if len(with_net) == 2 else key]
                key = next((c for c in candidates if c in own), key)
            out[key] = value
        return out


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
            raise ValueError("--temporal-pool is implemented for ResNet backbones only")
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


_SHORT = {"r18": "resnet18", "r34": "resnet34", "r50": "resnet50", "r101": "resnet101", "mbv2": "mobilenet_v2"}


def _register_all() -> None:
    for short, backbone in _SHORT.items():
        for kind, shift in (("tsn", False), ("tsm", True)):
            register_model(f"{kind}_{short}", family=kind,
                           description=f"{kind.upper()} {backbone}" + (" with temporal shift" if shift else ""),
                           backbone=backbone, shift=shift)(TSN)


_register_all()
