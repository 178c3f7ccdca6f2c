"""AdaFocusV2 (Wang et al., CVPR 2022) for ActivityNet, FCVID and Mini-Kinetics.

Every frame goes through a cheap **glance** CNN (MobileNetV2 on the whole frame,
or ResNet-50 on the frame downsampled to 96 px). A recurrent **policy** (a GRU over
the frames' glance feature maps) picks where a P x P patch sits in each frame; the
patch is cut out with a **differentiable crop** (``affine_grid`` + ``grid_sample``),
so the focus loss trains the policy directly. A **focus** ResNet-50 sees the patch.
Glance and focus features are concatenated, sent through an MLP, max-pooled
cumulatively over frames and classified by one head per frame: exit t predicts
after seeing frames 0..t (early exit, AdaFocusV2+).

Interface: ``forward(x) -> (N, K)`` is the last exit (all frames) in train and eval;
``forward_exits(x) -> (N, T, K)``; :meth:`AdaFocusV2.training_loss` is the reference's
training objective (glance, focus and exit heads on random and on policy patches).

Module names follow the reference code (``global_CNN``, ``global_CNN_fc``,
``local_CNN``, ``local_CNN_fc``, ``policy_stn``, ``classifier``), so its released
checkpoints load after :meth:`AdaFocusV2.convert_state_dict` maps the MobileNetV2
block layout and drops the never-used ImageNet heads.
"""
from __future__ import annotations

import re
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from archs.layers import Criterion, fold_time, per_step_loss
from archs.registry import InputSpec, register_model
from archs.tsn import torchvision_backbone

GLANCE_BACKBONES = {"mbv2": "mobilenet_v2", "res50": "resnet50"}
RES50_GLANCE_SIZE = 96
POLICY_CHANNELS = 64


def coarse_to_fine_order(num_frames: int) -> List[int]:
    """The reference's ``--sample`` frame order: the middle frame, the first, the last,
    then the midpoints of ever finer splits of [0, T-1] (level q splits it at
    ``floor(i (T-1) / q)``, q = 2, 4, 8 ...), each frame once.

    T=16 gives [7, 0, 15, 3, 11, 1, 5, 9, 13, 2, 4, 6, 8, 10, 12, 14]; T=8 gives [3, 0, 7, 1, 5, 2, 4, 6].
    """
    order: List[int] = []
    for first in ((num_frames - 1) // 2, 0, num_frames - 1):
        if first not in order:
            order.append(first)
    parts = 2
    while len(order) < num_frames:
        bounds = [i * (num_frames - 1) // parts for i in range(parts + 1)]
        for a, b in zip(bounds[:-1], bounds[1:]):
            if (a + b) // 2 not in order:
                order.append((a + b) // 2)
        parts *= 2
    return order


def crop_patches(frames: torch.Tensor, corners: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cut one patch out of every frame, differentiably in ``corners``.

    frames: (M, C, H, W); corners: (M, 2) in [0, 1], the patch's top-left corner
    (y, x) as a fraction of (H - P, W - P). Returns (M, C, P, P), bilinearly sampled
    (``grid_sample`` with ``align_corners=False``, zeros outside), as the reference.
    """
    m, c, h, w = frames.shape
    top = corners[:, 0] * (h - patch_size)
    left = corners[:, 1] * (w - patch_size)
    zero = torch.zeros_like(top)
    theta = torch.stack([
        torch.stack([zero + patch_size / w, zero, (2 * left + patch_size) / w - 1], dim=1),
        torch.stack([zero, zero + patch_size / h, (2 * top + patch_size) / h - 1], dim=1),
    ], dim=1)
    grid = F.affine_grid(theta.to(frames.dtype), [m, c, patch_size, patch_size], align_corners=False)
    return F.grid_sample(frames, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def feature_map(backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The last feature map (before pooling) of a torchvision MobileNetV2 or ResNet."""
    if hasattr(backbone, "features"):
        return backbone.features(x)
    x = backbone.maxpool(backbone.relu(backbone.bn1(backbone.conv1(x))))
    return backbone.layer4(backbone.layer3(backbone.layer2(backbone.layer1(x))))


def head(in_dim: int, num_classes: int, dropout: float) -> nn.Sequential:
    """Dropout + Linear (the reference's ``Sequential`` layout: the Linear is ``.1``)."""
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, num_classes))


class PolicySTN(nn.Module):
    """Where to look: glance feature maps (N*T, D, h, w) -> patch corners (N*T, 2) in [0, 1].

    Per frame: 1x1 conv to 64 channels + BN + tanh, flatten, Linear + BN1d + tanh;
    then a GRU over the T frames of each clip (causal: frame t's patch depends on
    frames 0..t) and Linear + sigmoid.
    """

    def __init__(self, in_channels: int, map_size: int, hidden_dim: int) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, POLICY_CHANNELS, kernel_size=1, bias=False),
            nn.BatchNorm2d(POLICY_CHANNELS),
            nn.Tanh(),
            nn.Flatten(),
            nn.Linear(POLICY_CHANNELS * map_size * map_size, hidden_dim),
            nn.BatchNorm1d(hidden_dim),
            nn.Tanh(),
        )
        self.gru = nn.GRU(hidden_dim, hidden_dim, batch_first=True)
        self.fc = nn.Sequential(nn.Linear(hidden_dim, 2), nn.Sigmoid())

    def forward(self, maps: torch.Tensor, num_frames: int) -> torch.Tensor:
        state = self.encoder(maps)
        out, _ = self.gru(state.view(-1, num_frames, state.shape[-1]))
        return self.fc(out.reshape(maps.shape[0], -1))


class MLP(nn.Module):
    """Linear + BN1d + ReLU (``layers.0`` / ``layers.1``, as the reference names them)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(in_dim, out_dim), nn.BatchNorm1d(out_dim), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class PoolingClassifier(nn.Module):
    """Frame features (N, T, D) -> logits of every exit (N, T, K).

    ``z_t = MLP(x_t)``; ``c_t = max(z_0 .. z_t)`` (element-wise); exit t = ``classifiers[t](c_t)``.
    """

    def __init__(self, in_dim: int, hidden_dim: int, num_exits: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.mlp = MLP(in_dim, hidden_dim)
        self.classifiers = nn.ModuleList(head(hidden_dim, num_classes, dropout) for _ in range(num_exits))

    def pool(self, feats: torch.Tensor) -> torch.Tensor:
        """(N, T, D) -> (N, T, hidden): ``c_t`` of every frame."""
        n, t, d = feats.shape
        return self.mlp(feats.reshape(n * t, d)).view(n, t, -1).cummax(dim=1).values

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(feats)
        return torch.stack([clf(pooled[:, i]) for i, clf in enumerate(self.classifiers)], dim=1)


class AdaFocusV2(nn.Module):
    """AdaFocusV2: input (N, 3, T, H, W) with T = ``num_segments`` and H = W = ``input_size``.

    * ``forward`` -> (N, K), train and eval: the last exit (all T frames);
      ``forward_features`` -> (N, hidden_dim) its pooled features, ``forward_head`` its head.
    * ``forward_exits`` -> (N, T, K): exit t has seen frames 0..t (after the
      coarse-to-fine reordering when ``coarse_to_fine``).
    * ``training_loss`` -> (loss, last exit (N, K)): the reference objective, see there.

    ``hidden_dim`` (4096) and ``stn_hidden_dim`` (2048) default to the widths of the
    released checkpoints: the reference ignores its ``--hidden_dim`` flag (4096 is
    hard-coded) and trains with ``--stn_hidden_dim 2048``. ``dropout`` is the exit
    heads', ``fc_dropout`` the glance/focus heads'. ``imagenet_pretrained`` loads
    torchvision's ImageNet weights into both CNNs (the reference starts a ResNet-50
    glance from its own 96-px ImageNet model instead).
    """

    def __init__(self, num_classes: int, *, glance_arch: str = "mbv2", patch_size: int = 128,
                 num_segments: int = 16, input_size: int = 224, glance_size: Optional[int] = None,
                 hidden_dim: int = 4096, stn_hidden_dim: int = 2048, dropout: float = 0.8,
                 fc_dropout: float = 0.8, coarse_to_fine: bool = False, global_lr_ratio: float = 1.0,
                 stn_lr_ratio: float = 0.01, classifier_lr_ratio: float = 1.0,
                 imagenet_pretrained: bool = False) -> None:
        super().__init__()
        if glance_arch not in GLANCE_BACKBONES:
            raise ValueError(f"glance_arch must be one of {sorted(GLANCE_BACKBONES)}, not {glance_arch!r}")
        if not 0 < patch_size <= input_size:
            raise ValueError(f"patch_size must be in (0, input_size={input_size}], not {patch_size}")
        self.glance_arch = glance_arch
        self.patch_size = patch_size
        self.num_segments = num_segments
        self.input_size = input_size
        self.glance_size = glance_size or (input_size if glance_arch == "mbv2" else RES50_GLANCE_SIZE)
        self.frame_order = coarse_to_fine_order(num_segments) if coarse_to_fine else None
        self.lr_ratios = {"global_CNN.": global_lr_ratio, "global_CNN_fc.": global_lr_ratio,
                          "policy_stn.": stn_lr_ratio, "classifier.": classifier_lr_ratio}

        self.global_CNN, glance_dim = torchvision_backbone(GLANCE_BACKBONES[glance_arch], imagenet_pretrained)
        self.global_CNN_fc = head(glance_dim, num_classes, fc_dropout)
        self.local_CNN, focus_dim = torchvision_backbone("resnet50", imagenet_pretrained)
        self.local_CNN_fc = head(focus_dim, num_classes, fc_dropout)
        map_size = -(-self.glance_size // 32)  # both backbones: 5 stride-2 stages, each ceil(h / 2)
        self.policy_stn = PolicySTN(glance_dim, map_size, stn_hidden_dim)
        self.classifier = PoolingClassifier(glance_dim + focus_dim, hidden_dim, num_segments, num_classes, dropout)
        self.input_spec = InputSpec(num_segments=num_segments, sampling="segment", crop_size=input_size,
                                    scale_size=input_size * 256 // 224)

    def _frames(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, T, H, W) -> (N*T, 3, H, W), frames in coarse-to-fine order if asked."""
        if x.shape[2] != self.num_segments:
            raise ValueError(f"AdaFocusV2 was built for {self.num_segments} frames, got {x.shape[2]}")
        if self.frame_order is not None:
            x = x[:, :, self.frame_order]
        return fold_time(x)

    def _glance(self, frames: torch.Tensor):
        """(M, 3, H, W) -> glance feature map (M, D, h, w) and vector (M, D)."""
        if frames.shape[-2:] != (self.glance_size, self.glance_size):
            frames = F.interpolate(frames, size=(self.glance_size, self.glance_size), mode="bilinear",
                                   align_corners=True)
        maps = feature_map(self.global_CNN, frames)
        return maps, maps.mean(dim=(2, 3))

    def _focus(self, frames: torch.Tensor, glance: torch.Tensor, corners: torch.Tensor):
        """Patches at ``corners`` -> focus features (M, 2048) and glance + focus features (N, T, D)."""
        local = self.local_CNN(crop_patches(frames, corners, self.patch_size))
        feats = torch.cat([glance, local], dim=1).view(-1, self.num_segments, glance.shape[1] + local.shape[1])
        return local, feats

    def _frame_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, T, H, W) -> glance + focus features of every frame (N, T, D), patches where the policy looks."""
        frames = self._frames(x)
        maps, glance = self._glance(frames)
        corners = self.policy_stn(maps.detach(), self.num_segments)  # no gradient from the policy into the glance CNN
        return self._focus(frames, glance, corners)[1]

    def forward_exits(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, T, H, W) -> (N, T, K): logits after each frame."""
        return self.classifier(self._frame_features(x))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, T, H, W) -> (N, hidden_dim): the last exit's pooled features (max over frames)."""
        return self.classifier.pool(self._frame_features(x))[:, -1]

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """(N, hidden_dim) -> (N, K): the last exit's head."""
        return self.classifier.classifiers[-1](features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def training_loss(self, x: torch.Tensor, target: torch.Tensor,
                      criterion: Criterion) -> Tuple[torch.Tensor, torch.Tensor]:
        """The reference objective: (loss, last exit of the policy pass (N, K)).

        Six groups of T targets each: the glance head (counted twice), the focus head and the
        exits on random patches, the focus head and the exits on policy patches; the loss is
        the mean of ``criterion`` over these 6T logits (:func:`archs.layers.per_step_loss`),
        which is the reference loss ``(CE_policy + CE_random) / 2`` (each CE = exits + glance
        + focus head) divided by 3: use a 3x learning rate to match its step size.
        """
        n = x.shape[0]
        frames = self._frames(x)
        maps, glance = self._glance(frames)
        glance_logits = self.global_CNN_fc(glance).view(n, self.num_segments, -1)
        policy = self.policy_stn(maps.detach(), self.num_segments)
        targets = [glance_logits, glance_logits]
        for corners in (torch.rand_like(policy), policy):
            local, feats = self._focus(frames, glance, corners)
            exits = self.classifier(feats)
            targets += [self.local_CNN_fc(local).view(n, self.num_segments, -1), exits]
        return per_step_loss(torch.cat(targets, dim=1), target, criterion), exits[:, -1]

    def get_classifier(self) -> nn.Module:
        """The last exit's Linear (the head of the eval output)."""
        return self.classifier.classifiers[-1][1]

    def reset_classifier(self, num_classes: int) -> None:
        """New class count for every class-dependent head: glance, focus and each exit."""
        for seq in [self.global_CNN_fc, self.local_CNN_fc, *self.classifier.classifiers]:
            seq[1] = nn.Linear(seq[1].in_features, num_classes)

    def lr_multipliers(self) -> Dict[str, float]:
        """Parameter-name prefix -> lr multiplier (``--global-lr-ratio``, ``--stn-lr-ratio``,
        ``--classifier-lr-ratio``); the focus CNN and its head train at the base lr."""
        return dict(self.lr_ratios)

    def convert_state_dict(self, state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Released checkpoints (``module.`` already stripped by the loader): drop the
        unused ImageNet heads and map the reference MobileNetV2 (tonylins layout:
        ``conv.{0,1,3,4,6,7}``) onto torchvision's (``conv.{0.0,0.1,1.0,1.1,2,3}``)."""
        own = self.state_dict()
        block_key = re.compile(r"^global_CNN\.features\.(\d+)\.conv\.(\d+)\.(.+)$")
        reference_layout = any(block_key.match(k) and k not in own for k in state)
        out = {}
        for key, value in state.items():
            if key not in own and key.startswith(("global_CNN.classifier.", "global_CNN.fc.", "local_CNN.fc.")):
                continue
            match = block_key.match(key) if reference_layout else None
            if match:
                block, index, rest = int(match.group(1)), match.group(2), match.group(3)
                expand = len(self.global_CNN.features[block].conv) == 4
                index = ({"0": "0.0", "1": "0.1", "3": "1.0", "4": "1.1", "6": "2", "7": "3"} if expand
                         else {"0": "0.0", "1": "0.1", "3": "1", "4": "2"})[index]
                key = f"global_CNN.features.{block}.conv.{index}.{rest}"
            out[key] = value
        return out


@register_model("adafocusv2", family="adafocus", aliases=("adafocus",),
                description="AdaFocusV2: glance CNN + policy GRU + focus ResNet-50 on a patch, one exit per frame")
def adafocusv2(num_classes: int = 200, *, glance_arch: str = "mbv2", patch_size: int = 128, num_segments: int = 16,
               input_size: int = 224, glance_size: Optional[int] = None, hidden_dim: int = 4096,
               stn_hidden_dim: int = 2048, dropout: float = 0.8, fc_dropout: float = 0.8,
               coarse_to_fine: bool = False, global_lr_ratio: float = 1.0, stn_lr_ratio: float = 0.01,
               classifier_lr_ratio: float = 1.0, imagenet_pretrained: bool = False) -> AdaFocusV2:
    """AdaFocusV2 with a ``glance_arch`` (mbv2 / res50) glance CNN and ``patch_size`` patches on
    ``num_segments`` frames of ``input_size``; see :class:`AdaFocusV2` for every option."""
    return AdaFocusV2(num_classes, glance_arch=glance_arch, patch_size=patch_size, num_segments=num_segments,
                      input_size=input_size, glance_size=glance_size, hidden_dim=hidden_dim,
                      stn_hidden_dim=stn_hidden_dim, dropout=dropout, fc_dropout=fc_dropout,
                      coarse_to_fine=coarse_to_fine, global_lr_ratio=global_lr_ratio, stn_lr_ratio=stn_lr_ratio,
                      classifier_lr_ratio=classifier_lr_ratio, imagenet_pretrained=imagenet_pretrained)
