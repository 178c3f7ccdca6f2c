"""One registry for every model of the zoo.

A family file registers its builder functions with :func:`register_model`; users
call :func:`create_model` by name. Every built model carries an :class:`InputSpec`
(``model.input_spec``) from which the data pipeline configures itself.

Model interface (every registered model):

* ``forward(x)`` with ``x`` a float clip of shape (N, C, T, H, W), already
  normalised as ``model.input_spec`` says, returns logits (N, K) in eval mode.
  In train mode a model with several exits may return (N, E, K); the engine then
  averages the loss over the E exits.
* ``get_classifier() -> nn.Module`` and ``reset_classifier(num_classes)``.
* Optional ``forward_exits(x) -> (N, E, K)``: logits after each exit (frame),
  for ``videorec early-exit``; the last exit equals ``forward(x)`` in eval mode.
* Optional ``convert_state_dict(state_dict) -> state_dict``: maps the keys of a
  released checkpoint of the reference repository onto ours. It must pass our
  own keys through unchanged.
* Optional ``lr_multipliers() -> dict[str, float]``: parameter-name prefix to
  learning-rate multiplier (e.g. AdaFocusV2's policy network at 0.01).
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
KINETICS_MEAN = (0.45, 0.45, 0.45)
KINETICS_STD = (0.225, 0.225, 0.225)


@dataclass(frozen=True)
class InputSpec:
    """What a model expects as input; the data pipeline follows it.

    num_segments: TSN segments (2D models) or frames of the clip (3D models).
    frames_per_segment: consecutive frames read per segment (``new_length``; 5 for TDN/MSN).
    sampling: ``"segment"`` (TSN sparse sampling) or ``"dense"`` (frames at a fixed stride).
    dense_stride: frame stride of dense sampling.
    crop_size / scale_size: train/test crop and the short side resized to before test crops.
    mean / std: per-channel normalisation applied after scaling pixels to ``[0, value_range]``.
    """

    num_segments: int = 8
    frames_per_segment: int = 1
    sampling: str = "segment"
    dense_stride: int = 8
    crop_size: int = 224
    scale_size: int = 256
    mean: Tuple[float, float, float] = IMAGENET_MEAN
    std: Tuple[float, float, float] = IMAGENET_STD
    value_range: float = 1.0

    @property
    def num_frames(self) -> int:
        """Frames in one clip: T = segments x frames per segment."""
        return self.num_segments * self.frames_per_segment

    def replace(self, **changes) -> "InputSpec":
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


@dataclass
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]
    family: str
    description: str = ""
    defaults: Dict[str, object] = field(default_factory=dict)


_REGISTRY: Dict[str, ModelEntry] = {}


class UnknownModelError(KeyError):
    """A model name that is not registered."""

    def __str__(self) -> str:
        return str(self.args[0])

# Extra FLOP formulas for ops FlopCounterMode does not know (e.g. deformable
# convolution); a family file adds ``{op: formula}`` here at import.
CUSTOM_FLOP_FORMULAS: Dict[object, Callable] = {}


def register_model(name: str, *, family: str, description: str = "", **defaults) -> Callable:
    """Decorator: register ``builder(num_classes, **options) -> nn.Module`` under ``name``.

    ``defaults`` are options passed to the builder unless the caller overrides them,
    so one builder function can serve several names (``tsm_r50``, ``tsm_mbv2`` ...).
    """

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelEntry(name, builder, family, description or (builder.__doc__ or "").strip().split("\n")[0], dict(defaults))
        return builder

    return wrap


def _load_families() -> None:
    # Importing the package registers every family (archs/__init__.py imports them).
    import archs  # noqa: F401


def list_models(pattern: str = "*") -> List[str]:
    """Registered model names matching a shell pattern, sorted."""
    _load_families()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def get_entry(name: str) -> ModelEntry:
    _load_families()
    if name not in _REGISTRY:
        close = [n for n in _REGISTRY if name.split("_")[0] in n][:8]
        hint = f" Similar: {', '.join(close)}." if close else ""
        raise UnknownModelError(f"unknown model {name!r}; `videorec models` lists them.{hint}")
    return _REGISTRY[name]


def create_model(name: str, num_classes: int, pretrained: Optional[str] = None, **options) -> nn.Module:
    """Build a registered model.

    pretrained: ``None``/``"none"``; ``"imagenet"`` (backbone weights where the family
    supports them); or a checkpoint path, loaded strictly through the family's key map.
    Options whose value is ``None`` are dropped, so CLI flags left unset keep the
    builder's defaults.
    """
    entry = get_entry(name)
    kwargs = dict(entry.defaults)
    kwargs.update({k: v for k, v in options.items() if v is not None})
    if pretrained == "imagenet":
        kwargs["imagenet_pretrained"] = True
    model = entry.builder(num_classes=num_classes, **kwargs)
    if not isinstance(getattr(model, "input_spec", None), InputSpec):
        raise TypeError(f"builder of {name!r} did not set model.input_spec")
    model.arch_name = name
    if pretrained not in (None, "none", "imagenet"):
        from archs.checkpoint import load_pretrained

        load_pretrained(model, pretrained)
    return model


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def measure_gmacs(model: nn.Module, input_shape: Tuple[int, ...]) -> float:
    """GMACs of one forward of a batch of shape ``input_shape`` (N, C, T, H, W).

    Measured with ``torch.utils.flop_counter`` (which counts 2 FLOPs per MAC);
    we report MACs, which the papers call "GFLOPs".
    """
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False, custom_mapping=dict(CUSTOM_FLOP_FORMULAS))
    try:
        with torch.no_grad(), counter:
            model(torch.zeros(input_shape))
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 2e9


def view_shape(spec: InputSpec, crop_size: Optional[int] = None) -> Tuple[int, int, int, int, int]:
    """Shape (1, 3, T, H, W) of one view of ``spec``."""
    size = crop_size or spec.crop_size
    return (1, 3, spec.num_frames, size, size)
