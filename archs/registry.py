"""One registry for every model of the zoo.

A family file has one public builder function (keyword-only options, a docstring) and
stacks one :func:`register_model` decorator per model name on it; the name fixes its
constants (backbone, depth, variant, stream ...) and may carry family aliases
(``msn`` -> ``msn_r50``). Users call :func:`create_model` by name or alias. Every built
model carries an :class:`InputSpec` (``model.input_spec``) from which the data pipeline
configures itself.

Model interface (every registered model; shapes with N clips, C channels, T frames,
K classes, D feature channels, E exits):

* ``forward(x) -> (N, K)`` logits, in train and eval mode alike, with ``x`` a float
  clip (N, C, T, H, W) normalised as ``model.input_spec`` says.
* ``forward_features(x) -> (N, D)`` pooled features and ``forward_head(f) -> (N, K)``;
  in eval mode ``forward(x) == forward_head(forward_features(x))`` to float rounding.
* ``get_classifier() -> nn.Module`` and ``reset_classifier(num_classes)``.
* Optional ``forward_exits(x) -> (N, E, K)``: logits after each exit (frame or
  segment), called only when exits are asked for; the last exit equals ``forward(x)``
  in eval mode. An output's shape never carries meaning.
* Optional ``training_loss(x, target, criterion) -> (loss, logits (N, K))``: a
  structured training objective (auxiliary heads, random-patch passes, per-segment
  supervision); without it the engine uses ``criterion(forward(x), target)``
  (:func:`training_loss`).
* Optional ``convert_state_dict(state_dict) -> state_dict``: maps the keys of a
  released checkpoint of the reference repository onto ours. It must pass our
  own keys through unchanged.
* Optional ``lr_multipliers() -> dict[str, float]``: parameter-name prefix to
  learning-rate multiplier (e.g. AdaFocusV2's policy network at 0.01).

Builders declare every option by keyword (no ``**kwargs``); ``num_segments`` means
segments for 2D-backbone models and frames for 3D and stream models.
"""
from __future__ import annotations

import fnmatch
import inspect
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

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
    channel_order: ``"rgb"``, or ``"bgr"`` for weights trained on BGR frames (the channels are
    swapped before normalising; mean/std are in the model's channel order).
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
    channel_order: str = "rgb"

    @property
    def num_frames(self) -> int:
        """Frames in one clip: T = segments x frames per segment."""
        return self.num_segments * self.frames_per_segment

    def replace(self, **changes) -> "InputSpec":
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


@dataclass
class ModelEntry:
    """A registered builder: ``fixed`` options are set by the name (``tsm_r50`` fixes the
    backbone and the shift) and cannot be changed; ``options`` are the ones a user may set,
    with this name's defaults; ``aliases`` are other names of this model; ``imagenet``: the
    builder can start from ImageNet backbone weights (it takes ``imagenet_pretrained``)."""

    name: str
    builder: Callable[..., nn.Module]
    family: str
    description: str = ""
    fixed: Dict[str, object] = field(default_factory=dict)
    options: Dict[str, object] = field(default_factory=dict)
    aliases: Tuple[str, ...] = ()
    imagenet: bool = False


_REGISTRY: Dict[str, ModelEntry] = {}
_ALIASES: Dict[str, str] = {}

# Set by the data (class count) and by ``pretrained``, never as a model option.
NOT_MODEL_OPTIONS = ("num_classes", "pretrained", "imagenet_pretrained")


class UnknownModelError(KeyError):
    """A model name that is not registered."""

    def __str__(self) -> str:
        return str(self.args[0])


class ModelOptionError(ValueError):
    """An option the model does not take; the message names the ones it does take."""


# Extra FLOP formulas for ops FlopCounterMode does not know (e.g. deformable
# convolution); a family file adds ``{op: formula}`` here at import.
CUSTOM_FLOP_FORMULAS: Dict[object, Callable] = {}


def builder_parameters(builder: Callable[..., nn.Module]) -> Dict[str, object]:
    """Keyword options of a builder function and their defaults.

    Builders declare every option by name: a builder with ``**kwargs`` is refused,
    because its options could not be checked."""
    params = inspect.signature(builder).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        raise TypeError(f"builder {builder.__name__} takes **kwargs; declare each option by name")
    return {k: (None if p.default is inspect.Parameter.empty else p.default) for k, p in params.items()
            if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)}


def register_model(name: str, *, family: str, description: str = "", aliases: Sequence[str] = (),
                   defaults: Optional[Mapping[str, object]] = None, **fixed) -> Callable:
    """Decorator: register ``builder(num_classes, *, **options) -> nn.Module`` under ``name``.

    ``fixed`` options are passed to the builder for this name and cannot be overridden,
    so one builder serves several names (``tsm_r50``, ``tsm_mbv2`` ...). ``defaults`` change
    the default of user options for this name (``movinet_a3`` clips have 120 frames, not 50).
    ``aliases`` are other names for this model (family names such as ``msn`` -> ``msn_r50``).
    Stack one decorator per name on the family's builder function.
    """

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY or name in _ALIASES:
            raise ValueError(f"model {name!r} is registered twice")
        params = builder_parameters(builder)
        unknown = set(fixed) - set(params)
        if unknown:
            raise TypeError(f"{name}: fixed options {sorted(unknown)} are not parameters of {builder.__name__}")
        options = {k: v for k, v in params.items() if k not in fixed and k not in NOT_MODEL_OPTIONS}
        unknown = set(defaults or {}) - set(options)
        if unknown:
            raise TypeError(f"{name}: defaults {sorted(unknown)} are not user options of {builder.__name__}")
        options.update(defaults or {})
        doc = description or (builder.__doc__ or "").strip().split("\n")[0]
        _REGISTRY[name] = ModelEntry(name, builder, family, doc, dict(fixed), options, tuple(aliases),
                                     "imagenet_pretrained" in params)
        for alias in aliases:
            if alias in _REGISTRY or alias in _ALIASES:
                raise ValueError(f"alias {alias!r} is registered twice")
            _ALIASES[alias] = name
        return builder

    return wrap


def _load_families() -> None:
    # Importing the package registers every family (archs/__init__.py imports them).
    import archs  # noqa: F401


def list_models(pattern: str = "*") -> List[str]:
    """Registered model names matching a shell pattern, sorted."""
    _load_families()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def list_aliases() -> Dict[str, str]:
    """Family alias -> model name (``msn`` -> ``msn_r50``)."""
    _load_families()
    return dict(sorted(_ALIASES.items()))


def resolve_name(name: str) -> str:
    """The registered name of ``name`` (an alias resolves to its model)."""
    _load_families()
    name = _ALIASES.get(name, name)
    if name not in _REGISTRY:
        close = [n for n in list(_REGISTRY) + list(_ALIASES) if name.split("_")[0] in n][:8]
        hint = f" Similar: {', '.join(close)}." if close else ""
        raise UnknownModelError(f"unknown model {name!r}; `videorec models` lists them.{hint}")
    return name


def get_entry(name: str) -> ModelEntry:
    return _REGISTRY[resolve_name(name)]


def model_options(name: str) -> Dict[str, object]:
    """The options ``name`` takes, with their defaults."""
    return dict(get_entry(name).options)


def check_options(name: str, options: Mapping[str, object]) -> None:
    """Raise :class:`ModelOptionError` for an option ``name`` does not take, naming the valid ones."""
    entry = get_entry(name)
    misplaced = sorted(set(options) & set(NOT_MODEL_OPTIONS))
    if misplaced:
        raise ModelOptionError(f"{misplaced[0]} is not a model option of {entry.name} (it comes from the dataset "
                               "or the weights)")
    unknown = sorted(set(options) - set(entry.options))
    if unknown:
        fixed = [k for k in unknown if k in entry.fixed]
        why = f" ({', '.join(fixed)} is fixed by the name)" if fixed else ""
        raise ModelOptionError(f"{entry.name} does not take option(s) {', '.join(unknown)}{why}; it takes: "
                               f"{', '.join(sorted(entry.options)) or 'none'}")


def create_model(name: str, num_classes: int, pretrained: Optional[str] = None, **options) -> nn.Module:
    """Build a registered model (or an alias of one).

    pretrained: ``None``/``"none"``; ``"imagenet"`` (backbone weights where the family
    supports them); or a checkpoint path, loaded strictly through the family's key map.
    Options whose value is ``None`` are dropped, so CLI flags left unset keep the
    builder's defaults; any other option the model does not take raises
    :class:`ModelOptionError`. The built model carries ``arch_name`` and the resolved
    ``model_options`` (what a checkpoint records to rebuild it).
    """
    entry = get_entry(name)
    given = {k: v for k, v in options.items() if v is not None}
    check_options(entry.name, given)
    resolved = {**entry.options, **given}
    kwargs = {**entry.fixed, **resolved}
    if pretrained == "imagenet":
        if not entry.imagenet:
            raise ModelOptionError(f"{entry.name} has no ImageNet backbone weights; use --pretrained none or a "
                                   "checkpoint")
        kwargs["imagenet_pretrained"] = True
    model = entry.builder(num_classes=num_classes, **kwargs)
    if not isinstance(getattr(model, "input_spec", None), InputSpec):
        raise TypeError(f"builder of {entry.name!r} did not set model.input_spec")
    model.arch_name = entry.name
    model.model_options = resolved
    if pretrained not in (None, "none", "imagenet"):
        from archs.checkpoint import load_pretrained

        load_pretrained(model, pretrained)
    return model


def training_loss(model: nn.Module, x: torch.Tensor, target: torch.Tensor,
                  criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
    """The model's training objective on a batch: ``model.training_loss`` where the model
    defines one, else ``criterion(model(x), target)``. Returns (loss, logits (N, K))."""
    own = getattr(model, "training_loss", None)
    if own is not None:
        return own(x, target, criterion)
    logits = model(x)
    return criterion(logits, target), logits


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
