"""Train configs in files: read YAML or JSON, check every key, merge with the flags.

A config holds any train setting under the names of :class:`ops.engine.config.TrainSettings`,
with the data settings in a nested ``data:`` section and model options in a nested
``model_options:`` mapping -- the layout of a run's ``settings.json``, so that file is
itself a valid config (its resolved extras, :data:`DERIVED_KEYS`, are recognised and
ignored). Values are resolved by :func:`merge` with the precedence

    flags > config file > recipe > defaults

and each resolved value remembers where it came from (:func:`format_config` prints
both, as a YAML document that is itself a valid config).
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from ops.common.errors import UserError
from ops.engine.config import DataSettings, TrainSettings

# Keys a run's settings.json holds beside the settings: resolved from the dataset, the
# model and the launch, never read back (the run that repeats resolves them again).
DERIVED_KEYS = ("num_classes", "class_names", "input_spec", "dataset_config", "world_size")
# Sections whose value is a mapping merged key by key (a flag overrides one model option).
MAPPING_KEYS = ("model_options",)


def _line_of(exc: Exception) -> Optional[int]:
    """The 1-based line of a YAML or JSON parse error, where the parser says."""
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        return mark.line + 1
    return getattr(exc, "lineno", None)


def load_config(path: Path) -> dict:
    """Read a config file: ``.yaml``/``.yml`` or ``.json`` (by extension) holding one mapping.

    Raises :class:`UserError` naming the file (and line) for a missing file, an unknown
    extension, a parse error or a document that is not a mapping.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise UserError(f"config {path}: unknown format {suffix or '(no extension)'}; use a .yaml, .yml or .json file")
    try:
        text = path.read_text()
    except OSError as exc:
        raise UserError(f"config {path}: cannot read it ({exc.strerror or exc})") from None
    try:
        if suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # yaml.YAMLError / json.JSONDecodeError
        line = _line_of(exc)
        where = f", line {line}" if line else ""
        reason = getattr(exc, "problem", None) or getattr(exc, "msg", None) or str(exc).splitlines()[0]
        raise UserError(f"config {path}{where}: not valid {suffix[1:].upper()} ({reason})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"config {path}: must hold a mapping of setting: value, not a {type(data).__name__}")
    return data


def _hints(cls: type) -> Dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, hint: Any, key: str, source: str) -> Any:
    """``value`` checked against a field's type; ints pass as floats, and numbers YAML 1.1
    reads as strings (``1e-3``) are read as numbers. Raises :class:`UserError` otherwise."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        return _coerce(value, next(a for a in args if a is not type(None)), key, source)
    if origin in (list, List):
        if not isinstance(value, (list, tuple)):
            value = [value]
        return [_coerce(v, args[0], key, source) for v in value] if args else list(value)
    if origin in (dict, Dict):
        if not isinstance(value, dict):
            raise UserError(f"{source}: {key} must be a mapping of name: value, not {value!r}")
        return dict(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, str):
            return value
    else:
        return value
    raise UserError(f"{source}: {key} must be {hint.__name__}, not {value!r}")


def _unknown(key: str, valid: List[str], source: str) -> UserError:
    close = difflib.get_close_matches(key, valid, n=3)
    hint = f"; did you mean {' or '.join(close)}?" if close else f"; valid keys: {', '.join(sorted(valid))}"
    return UserError(f"{source}: unknown key {key!r}{hint}")


def validate_keys(d: Mapping[str, Any], settings_cls: type = TrainSettings, source: str = "config") -> dict:
    """The settings of ``d`` (a loaded config, a recipe's or the flags' values), checked.

    Keys are the fields of ``settings_cls``; a field whose type is a dataclass (``data``)
    is a nested section checked the same way. :data:`DERIVED_KEYS` at the top level (a
    run's ``settings.json``) are dropped. Values are checked against the field types.
    Raises :class:`UserError` naming ``source`` and the key (with close matches).
    Returns a new nested dict holding only settings.
    """
    hints = _hints(settings_cls)
    fields = {f.name: hints[f.name] for f in dataclasses.fields(settings_cls)}
    out: dict = {}
    for key, value in d.items():
        if key in DERIVED_KEYS and settings_cls is TrainSettings:
            continue
        if key not in fields:
            raise _unknown(key, list(fields) + (list(DERIVED_KEYS) if settings_cls is TrainSettings else []), source)
        hint = fields[key]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, Mapping):
                raise UserError(f"{source}: {key} must be a section of settings (key: value lines)")
            out[key] = validate_keys(value, hint, f"{source}: {key}")
        else:
            out[key] = _coerce(value, hint, key, source)
    return out


def nest_flat(flat: Mapping[str, Any]) -> dict:
    """Flat ``name: value`` pairs (the flags a user gave, as TrainSettings/DataSettings field
    names) -> a nested layer for :func:`merge`: DataSettings fields go under ``data``."""
    data_fields = {f.name for f in dataclasses.fields(DataSettings)}
    out: dict = {}
    for key, value in flat.items():
        if key in data_fields:
            out.setdefault("data", {})[key] = value
        else:
            out[key] = value
    return out


def defaults_of(settings_cls: type = TrainSettings) -> dict:
    """The fields of ``settings_cls`` that have defaults, nested as a config (required ones left out)."""
    hints = _hints(settings_cls)
    out: dict = {}
    for f in dataclasses.fields(settings_cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out[f.name] = defaults_of(hints[f.name])
        elif f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


@dataclass
class Resolved:
    """Merged settings (nested as settings.json) and, per dotted key, where each came from."""

    values: dict
    origin: Dict[str, str]

    def settings(self) -> TrainSettings:
        """The :class:`TrainSettings`; a required setting no layer gave is a :class:`UserError`."""
        missing = [f"data.{f.name}" for f in dataclasses.fields(DataSettings)
                   if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                   and f.name not in self.values.get("data", {})]
        missing += [f.name for f in dataclasses.fields(TrainSettings)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                    and f.name not in self.values]
        if missing:
            raise UserError(f"setting {missing[0]} is not given: pass it on the command line, in --config or "
                            "through --recipe")
        return TrainSettings.from_dict(self.values)


def _merge_into(values: dict, origin: Dict[str, str], layer: Mapping[str, Any], label: str, prefix: str = "") -> None:
    for key, value in layer.items():
        dotted = prefix + key
        if isinstance(value, Mapping) and (key in MAPPING_KEYS or isinstance(values.get(key), dict)):
            _merge_into(values.setdefault(key, {}), origin, value, label, dotted + ".")
        else:
            values[key] = value
            origin[dotted] = label


def merge(defaults: Mapping[str, Any], recipe: Optional[Mapping[str, Any]] = None,
          config: Optional[Mapping[str, Any]] = None, flags: Optional[Mapping[str, Any]] = None, *,
          recipe_label: str = "recipe", config_label: str = "config") -> Resolved:
    """Merge the layers, later over earlier: flags > config > recipe > defaults.

    Each layer is a nested dict as :func:`validate_keys` returns (``flags`` holds only the
    flags the user really gave). Sections (``data``) and ``model_options`` merge key by
    key. ``origin`` maps every dotted key to ``"default"``, ``recipe_label``,
    ``config_label`` or ``"flag"``.
    """
    values: dict = {}
    origin: Dict[str, str] = {}
    for layer, label in ((defaults, "default"), (recipe, recipe_label), (config, config_label), (flags, "flag")):
        if layer:
            _merge_into(values, origin, layer, label)
    return Resolved(values, origin)


def load_and_validate(path: Path) -> dict:
    """:func:`load_config` then :func:`validate_keys`, errors naming the file."""
    return validate_keys(load_config(path), TrainSettings, f"config {path}")


def format_config(resolved: Resolved) -> str:
    """The resolved settings as YAML, each value followed by ``# <where it came from>``.

    Values are written as JSON scalars and flow lists/mappings (valid YAML), so the
    output can be saved and passed back with ``--config``.
    """
    lines: List[str] = []

    def emit(values: Mapping[str, Any], prefix: str, indent: str) -> None:
        for key in sorted(values):
            value, dotted = values[key], prefix + key
            if isinstance(value, dict) and value:
                lines.append(f"{indent}{key}:")
                emit(value, dotted + ".", indent + "  ")
            else:
                lines.append(f"{indent}{key}: {json.dumps(value)}  # {resolved.origin.get(dotted, 'default')}")

    emit(resolved.values, "", "")
    return "\n".join(lines) + "\n"

