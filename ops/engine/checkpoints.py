"""Checkpoints: written atomically, read with ``weights_only=True``, describing themselves.

A training checkpoint holds everything to continue exactly (model without DDP's
``module.`` prefix, optimizer, schedule iteration, AMP scaler, epoch and step inside
it, best metric, RNG states, the resolved settings) and what it takes to use the model
without any flag (:func:`model_metadata`): the model name, its resolved options, the
class count and names, and the input spec it was trained with. :func:`load_model`
rebuilds a model from such a file (or from a released one, given ``arch``).
"""
from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from archs.checkpoint import drop_classifier, extract_state_dict, load_state_dict_strict, read_checkpoint
from archs.registry import InputSpec, create_model
from ops.common.errors import UserError
from ops.common.fileio import atomic_open
from ops.common.options import GivenOptions

# ops.common.fileio.atomic_open's temporary files: ".NAME.tmp-PID"
TMP_PATTERN = re.compile(r"^\..+\.tmp-(\d+)$")


def save_checkpoint(path: Path, state: dict) -> None:
    with atomic_open(Path(path), "wb") as fh:
        torch.save(state, fh)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def remove_stale_temporaries(folder: Path) -> List[Path]:
    """Delete the temporary files :func:`~ops.common.fileio.atomic_open` left in ``folder`` when
    its process died mid-write (``.NAME.tmp-PID`` with no process PID). Returns them."""
    removed = []
    if not Path(folder).is_dir():
        return removed
    for path in Path(folder).iterdir():
        match = TMP_PATTERN.match(path.name)
        if match and path.is_file() and not pid_alive(int(match.group(1))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def resume_path(resume: Optional[str], output_dir: Path) -> Optional[Path]:
    """``auto``: the run folder's last.pth if there is one (else start fresh); a path must exist."""
    if not resume:
        return None
    if resume == "auto":
        last = output_dir / "last.pth"
        return last if last.is_file() else None
    path = Path(resume)
    if not path.is_file():
        raise UserError(f"{path}: --resume checkpoint not found")
    return path


def load_training_state(path: Path) -> dict:
    state = read_checkpoint(path)
    if not isinstance(state, dict) or "model" not in state or "optimizer" not in state:
        raise UserError(f"{path}: not a videorec training checkpoint (use --tune-from or --pretrained for weights)")
    return state


def model_metadata(model: nn.Module, num_classes: int, class_names: List[str], spec: InputSpec) -> dict:
    """What a checkpoint records to rebuild and feed ``model`` with no flags: ``arch``,
    ``model_options`` (resolved, defaults included), ``num_classes``, ``class_names`` and
    ``input_spec`` (segments, frames per segment, sampling, crop, scale, mean/std, value range)."""
    return {"arch": model.arch_name, "model_options": dict(model.model_options), "num_classes": num_classes,
            "class_names": list(class_names), "input_spec": asdict(spec)}


def stored_spec(ckpt: dict) -> Optional[InputSpec]:
    """The input spec a checkpoint was trained with (None when it does not say)."""
    saved = ckpt.get("input_spec")
    if not saved:
        return None
    return InputSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()})


@dataclass
class LoadedModel:
    """A model rebuilt from a checkpoint (CPU, weights loaded strictly).

    path: the file read (a catalog name's cached file); entry: the catalog entry
    (``archs.weights.WeightsEntry``) when the weights were given by name, else None."""

    model: nn.Module
    spec: InputSpec               # the trained input spec; segments follow the model's options
    class_names: List[str]
    notes: List[str] = field(default_factory=list)  # "--flag X overrides the checkpoint's Y", one per override
    path: str = ""
    entry: Optional[object] = None


def override_note(flag: str, stored: object) -> str:
    return f"{flag} overrides the checkpoint's {stored}"


def described(ckpt: dict, entry) -> dict:
    """What the file says of its model (``arch``, ``model_options``, ``num_classes``), filled in
    from its catalog entry where the file is a released one that does not say it."""
    said = {"arch": ckpt.get("arch"), "model_options": ckpt.get("model_options"), "num_classes": ckpt.get("num_classes")}
    if entry is not None and not said["arch"]:
        said.update(arch=entry.arch, model_options=dict(entry.options))
    if entry is not None and not said["num_classes"]:
        said["num_classes"] = entry.num_classes
    return said


def entry_class_names(entry) -> List[str]:
    """The class names of a catalog entry's dataset where its classes file is on this machine
    (the dataset registry's root), else none."""
    from dataset_configs import DatasetConfigError, get_dataset, read_class_names

    try:
        cfg = get_dataset(entry.dataset)
    except DatasetConfigError:
        return []
    path = Path(cfg.root) / cfg.classes_file
    names = read_class_names(path) if cfg.root and path.is_file() else []
    return names if len(names) == entry.num_classes else []


def load_model(weights: str, *, arch: Optional[str] = None, num_classes: Optional[int] = None,
               options: Optional[GivenOptions] = None, fallback_classes: Optional[int] = None,
               classes_from: str = "--num-classes", classes_fix: str = "drop --num-classes") -> LoadedModel:
    """Rebuild the model of ``weights``: a checkpoint path, or a name of the weights catalog
    (``videorec weights``), fetched into the cache (``ops.common.download.resolve_weights``).
    Its model, options, class count, class names and input spec come from the file, or for a
    released file from its catalog entry (with the entry's input spec and channel order, and
    the class names of its dataset where they are on this machine);
    ``arch``, ``num_classes`` and ``options`` (the user's flags) are needed only for files that
    say none of it, and override what they say (each override gives a note). A class count
    that differs from the file's is a :class:`UserError` saying ``classes_from`` and
    ``classes_fix`` (flags the command has); ``fallback_classes`` is the class count of a file
    that says neither."""
    from ops.common.download import find_entry, resolve_weights

    options = options or GivenOptions()
    entry = find_entry(str(weights))
    path = str(resolve_weights(weights))
    ckpt = read_checkpoint(path)
    said = described(ckpt, entry)
    notes: List[str] = []
    stored_arch = said["arch"]
    if not (arch or stored_arch):
        raise UserError(f"{path}: the checkpoint does not say its model; pass --arch")
    name = options.check(arch or stored_arch)
    if stored_arch and name != stored_arch:
        notes.append(override_note(f"--arch {arch}", stored_arch))
    stored: Dict[str, object] = dict(said["model_options"] or {}) if name == stored_arch else {}
    for key, value in options.values.items():
        if key in stored and stored[key] != value:
            notes.append(override_note(options.flags[key], stored[key]))
    stored_classes = said["num_classes"]
    if stored_classes and num_classes is not None and num_classes != stored_classes:
        raise UserError(f"{path}: the checkpoint has {stored_classes} classes but {classes_from} has {num_classes}; "
                        f"{classes_fix}")
    num_classes = stored_classes or num_classes or fallback_classes
    if num_classes is None:
        raise UserError(f"{path}: the checkpoint does not say its class count; pass {classes_from}")
    model = create_model(name, num_classes, **{**stored, **options.values})
    state = extract_state_dict(ckpt)
    check_classifier(model, state, path, classes_from, classes_fix)
    load_state_dict_strict(model, state, source=path)
    spec = stored_spec(ckpt) or model.input_spec
    if entry is not None:
        spec = entry.input_spec(spec)
    spec = spec.replace(num_segments=model.input_spec.num_segments)
    names = list(ckpt.get("class_names") or []) or (entry_class_names(entry) if entry is not None else [])
    return LoadedModel(model, spec, names, notes, path, entry)


def catalog_model(name: str, options: GivenOptions) -> Tuple[str, GivenOptions, Optional[int]]:
    """A catalog entry's model without its file (for costs): its arch, its options under the
    user's (``options`` win; the entry's are labelled ``weights NAME``) and its crop size
    (None: the model's). :class:`UserError` for a name that is not in the catalog."""
    from ops.common.download import find_entry

    entry = find_entry(name)
    if entry is None:
        raise UserError(f"{name}: give a name of `videorec weights` here, not a file")
    merged = GivenOptions({**entry.options, **options.values},
                          {**{k: f"weights {entry.name} ({k}={v})" for k, v in entry.options.items()}, **options.flags})
    return entry.arch, merged, entry.spec.get("crop_size")


def check_classifier(model: nn.Module, state: Dict[str, torch.Tensor], path: str, classes_from: str,
                     classes_fix: str) -> None:
    """A :class:`UserError` when the weights' classifier has another class count than ``model``
    (a released file that does not say its class count)."""
    convert: Optional[Callable] = getattr(model, "convert_state_dict", None)
    converted = convert(dict(state)) if convert else dict(state)
    remaining = dict(converted)
    dropped = drop_classifier(model, remaining)
    if dropped:
        raise UserError(f"{path}: the checkpoint's classifier has {converted[dropped[0]].shape[0]} classes but "
                        f"{classes_from} has {model.get_classifier().weight.shape[0]}; {classes_fix}")
