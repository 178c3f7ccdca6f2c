"""Named test protocols: the views a model-zoo row was measured with, by name.

A protocol fixes how many temporal clips and spatial crops each video is tested
with, how frames are sampled and at which size: the settings of ``videorec test``
(``--num-clips``, ``--test-crops``, ``--full-res``, ``--twice-sample``,
``--dense-sample``, ``--dense-stride``, ``--crop-size``, ``--scale-size``,
``--test-segments``). A value left ``None`` keeps the model's input spec (its
segments, crop and short side).

:func:`merge_protocol` layers a preset, a weights row's own changes and the user's
flags (flags win) and remembers where each value came from, so a run can print
and record exactly what it tested.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Dict, List, Mapping, Optional, Tuple

from ops.common.errors import UserError


@dataclass(frozen=True)
class Protocol:
    """Test-time views. Views per video: num_clips x test_crops (x 2 with twice_sample).

    test_segments: segments (2D models) or frames (3D); None keeps the model's.
    num_clips: temporal clips (clip i samples each segment at (i + 0.5) / n, or the i-th dense window).
    test_crops: 1 (centre), 3 (along the long side) or 10 (corners, centre and their mirrors).
    full_res: the 3 crops are scale_size squares instead of crop_size ones.
    twice_sample: TSM's second set of segment starts (segment sampling only).
    dense_sample / dense_stride: dense clips of T frames at a stride instead of TSN segments.
    crop_size / scale_size: the crop and the short side frames are resized to first.
    """

    test_segments: Optional[int] = None
    num_clips: int = 1
    test_crops: int = 1
    full_res: bool = False
    twice_sample: bool = False
    dense_sample: bool = False
    dense_stride: Optional[int] = None
    crop_size: Optional[int] = None
    scale_size: Optional[int] = None

    @property
    def views(self) -> int:
        """Views per video (clips x crops, twice for twice_sample)."""
        return self.num_clips * self.test_crops * (2 if self.twice_sample else 1)

    def check(self) -> "Protocol":
        """Raise :class:`UserError` for settings the tester cannot honour."""
        if self.test_crops not in (1, 3, 10):
            raise UserError(f"--test-crops must be 1, 3 or 10, not {self.test_crops}")
        if self.num_clips < 1:
            raise UserError(f"--num-clips must be at least 1, not {self.num_clips}")
        if self.full_res and self.test_crops != 3:
            raise UserError("--full-res applies to 3-crop testing; add --test-crops 3 or drop --full-res")
        if self.twice_sample and self.dense_sample:
            raise UserError("--twice-sample applies to segment sampling; drop it or --dense-sample")
        for key in ("test_segments", "dense_stride", "crop_size", "scale_size"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise UserError(f"--{key.replace('_', '-')} must be positive, not {value}")
        return self


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    protocol: Protocol


_PRESETS: Dict[str, Preset] = {p.name: p for p in [
    Preset("center-crop-1clip", "1 clip, 1 centre crop at the model's own crop and short side (TSN/TDN/MSN val)",
           Protocol()),
    Preset("tsn-1x1", "1 clip, 1 centre crop of 224 after short side 256", Protocol(crop_size=224, scale_size=256)),
    Preset("tsn-10crop", "1 clip, 10 crops of 224 (corners, centre, mirrored) after short side 256",
           Protocol(test_crops=10, crop_size=224, scale_size=256)),
    Preset("full-res-1x3", "1 clip, 3 full-resolution 256x256 crops after short side 256",
           Protocol(test_crops=3, full_res=True, scale_size=256)),
    Preset("tsn-10x3", "10 clips of TSN segments x 3 full-resolution crops at 256 (30 views)",
           Protocol(num_clips=10, test_crops=3, full_res=True, scale_size=256)),
    Preset("dense-10x3", "10 dense clips x 3 full-resolution crops at 256 (30 views)",
           Protocol(num_clips=10, test_crops=3, full_res=True, dense_sample=True, scale_size=256)),
    Preset("tsm-2x3", "TSM's accurate setting: segment centres and starts (--twice-sample) x 3 crops of 224 "
           "after short side 256", Protocol(test_crops=3, twice_sample=True, crop_size=224, scale_size=256)),
    Preset("ssv2-2x3", "2 clips x 3 full-resolution crops at 256 (PySlowFast's Something 6 views)",
           Protocol(num_clips=2, test_crops=3, full_res=True, scale_size=256)),
    Preset("x3d-1x1", "1 clip, 1 centre crop of 256 after short side 256 (PySlowFast with 1 ensemble view and 1 "
           "spatial crop at a 256 test size)", Protocol(crop_size=256, scale_size=256)),
    Preset("movinet-whole-video", "1 clip of the model's frames at its stride (the whole clip), 1 centre crop at "
           "the model's size", Protocol(dense_sample=True)),
]}

# Other names for the presets above, as the seed repositories call their protocols.
ALIASES: Dict[str, str] = {
    "30-view": "tsn-10x3",
    "tsm-10x3": "dense-10x3",
    "mvfnet-30view": "dense-10x3",
    "x3d-30view": "dense-10x3",
}

KEYS = tuple(f.name for f in fields(Protocol))


def list_protocols() -> List[Preset]:
    """Every preset, sorted by name (aliases in :data:`ALIASES`)."""
    return [_PRESETS[n] for n in sorted(_PRESETS)]


def get_preset(name: str) -> Preset:
    """The preset called ``name`` (or an alias of one); :class:`UserError` lists the names."""
    preset = _PRESETS.get(ALIASES.get(name, name))
    if preset is None:
        names = ", ".join(sorted([*_PRESETS, *ALIASES]))
        raise UserError(f"unknown test protocol {name!r}; choose one of: {names}")
    return preset


@dataclass(frozen=True)
class MergedProtocol:
    """A protocol and, per setting, where its value came from (``default``, ``preset NAME``,
    ``weights NAME`` or ``flag``); ``notes``: one line per flag that changed a preset's or a
    row's value (``--num-clips 1 overrides preset dense-10x3's 10``)."""

    protocol: Protocol
    origin: Mapping[str, str]
    notes: Tuple[str, ...] = ()

    def describe(self) -> str:
        """One line: every setting that is not the default, with its origin."""
        parts = [f"{key}={getattr(self.protocol, key)} ({src})" for key, src in self.origin.items()
                 if src != "default"]
        views = self.protocol.views
        return f"{views} view{'s' if views > 1 else ''} per video: " + (", ".join(parts) or "defaults")

    def as_record(self) -> dict:
        """Plain data for a run's resolved settings: values and their origins."""
        return {"values": asdict(self.protocol), "origin": dict(self.origin)}


def _checked_keys(values: Mapping[str, object], where: str) -> None:
    unknown = sorted(set(values) - set(KEYS))
    if unknown:
        raise UserError(f"{where}: {', '.join(unknown)} is not a protocol setting; settings: {', '.join(KEYS)}")


def merge_protocol(preset: Optional[str] = None, row: Optional[Mapping[str, object]] = None,
                   flags: Optional[Mapping[str, object]] = None, row_label: str = "weights") -> MergedProtocol:
    """Layer ``preset`` < ``row`` (a weights entry's overrides) < ``flags`` (the user's).

    Values that are ``None`` in ``flags`` count as not given (CLI flags left unset);
    ``row_label`` names the row in the origins (e.g. ``weights mvfnet_r50_k400_8x8``).
    The result is checked (:meth:`Protocol.check`).
    """
    values = asdict(Protocol())
    origin = {key: "default" for key in KEYS}
    notes: List[str] = []
    layers = [(asdict(get_preset(preset).protocol), f"preset {preset}", True)] if preset else []
    layers += [(dict(row or {}), row_label, False), (dict(flags or {}), "flag", False)]
    for layer, source, whole in layers:
        _checked_keys(layer, source)
        for key, value in layer.items():
            if value is None or (whole and value == values[key]):
                continue
            if source == "flag" and origin[key] != "default" and value != values[key]:
                notes.append(f"{flag_text(key, value)} overrides {origin[key]}'s {key}={values[key]}")
            values[key] = value
            origin[key] = source
    return MergedProtocol(Protocol(**values).check(), origin, tuple(notes))


def flag_text(key: str, value: object) -> str:
    """The ``videorec test`` flag that sets ``key`` to ``value`` (``--num-clips 2``, ``--no-full-res``)."""
    flag = key.replace("_", "-")
    if isinstance(value, bool):
        return f"--{flag}" if value else f"--no-{flag}"
    return f"--{flag} {value}"


def resolve_protocol(entry=None, preset: Optional[str] = None,
                     flags: Optional[Mapping[str, object]] = None) -> MergedProtocol:
    """The protocol of a test run: ``preset`` (``--protocol``) with the flags; else the weights
    entry's row protocol (``archs.weights.WeightsEntry``) with the flags; else the flags alone
    (the model's spec, 1 clip, 1 centre crop). ``--protocol`` replaces the row's protocol whole."""
    if preset is not None or entry is None:
        return merge_protocol(preset, None, flags)
    return weights_protocol(entry, flags)


def fields_for_tester(protocol: Protocol) -> Dict[str, object]:
    """The ``TestSettings`` fields a protocol sets (all clip indices are tested). Its segment
    count (``protocol.test_segments``) is a model option: it goes with the model options, as
    ``num_segments``."""
    return {"test_crops": protocol.test_crops,
            "full_res": protocol.full_res, "twice_sample": protocol.twice_sample,
            "num_clips": protocol.num_clips, "clip_indices": list(range(protocol.num_clips))}


def fields_for_data(protocol: Protocol) -> Dict[str, object]:
    """The ``DataSettings`` fields a protocol sets (None keeps the model's spec)."""
    return {"crop_size": protocol.crop_size, "scale_size": protocol.scale_size,
            "dense_sample": protocol.dense_sample, "dense_stride": protocol.dense_stride}


def weights_protocol(entry, flags: Optional[Mapping[str, object]] = None) -> MergedProtocol:
    """The protocol of a weights catalog entry (``archs.weights.WeightsEntry``) with the user's flags."""
    return merge_protocol(entry.protocol, entry.protocol_overrides, flags, row_label=f"weights {entry.name}")
