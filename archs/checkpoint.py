"""Loading weights: our checkpoints and the ones the reference repositories released.

Every read uses ``torch.load(..., weights_only=True)``: nothing we read can run code.
Loading is strict: every key of the checkpoint is used, every key of the model is
filled and every shape matches; otherwise :class:`CheckpointError` reports what
differs. A family's ``convert_state_dict`` may refuse another family's checkpoint
(a TSM one into a TSN model) with a :class:`CheckpointError` naming the arch to use.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Mapping, Union

import torch
from torch import nn

CONTAINER_KEYS = ("state_dict", "model_state", "model", "module")
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


class CheckpointError(ValueError):
    """A checkpoint that does not fit the model; the message says why."""


def read_checkpoint(path: Union[str, Path]) -> dict:
    """Read a checkpoint file safely (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for bad files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({first})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict of weights, found {type(obj).__name__}")
    return obj


def extract_state_dict(obj: Mapping) -> Dict[str, torch.Tensor]:
    """The model weights inside a checkpoint object, wrapper prefixes removed.

    Accepts a bare state dict or one nested under ``state_dict`` / ``model_state``
    (PySlowFast) / ``model``; strips ``module.`` (DataParallel/DDP) prefixes.
    """
    state = obj
    for key in CONTAINER_KEYS:
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
            break
    out = {}
    for name, value in state.items():
        if not isinstance(value, torch.Tensor):
            continue
        for prefix in WRAPPER_PREFIXES:
            while name.startswith(prefix):
                name = name[len(prefix):]
        out[name] = value
    return out


def mismatch_report(model: nn.Module, state: Mapping[str, torch.Tensor]) -> str:
    """A readable list of missing, unexpected and wrongly shaped keys ('' if none)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    parts = []
    for title, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
        if items:
            shown = "; ".join(items[:6]) + (f"; ... ({len(items)} in all)" if len(items) > 6 else "")
            parts.append(f"{title}: {shown}")
    return " | ".join(parts)


def load_state_dict_strict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Load ``state`` into ``model`` after the family's key map; strict, with a report."""
    convert = getattr(model, "convert_state_dict", None)
    if convert is not None:
        try:
            state = convert(dict(state))
        except CheckpointError as exc:  # e.g. another family's checkpoint: say which file
            raise CheckpointError(f"{source}: {exc}") from None
    report = mismatch_report(model, state)
    if report:
        cls = classifier_mismatch(model, state)
        hint = f" ({cls})" if cls else ""
        raise CheckpointError(f"{source} does not fit {getattr(model, 'arch_name', type(model).__name__)}{hint}: {report}")
    model.load_state_dict(state, strict=True)


def classifier_mismatch(model: nn.Module, state: Mapping[str, torch.Tensor]) -> str:
    """'checkpoint has K1 classes, model K2' when only the classifier differs, else ''."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    if head is None or getattr(head, "weight", None) is None:
        return ""
    for name, module in model.named_modules():
        if module is head:
            key = f"{name}.weight"
            if key in state and state[key].shape[0] != head.weight.shape[0]:
                return (f"checkpoint has {state[key].shape[0]} classes, model {head.weight.shape[0]}; "
                        "use --tune-from to fine-tune on another class count")
    return ""


def load_pretrained(model: nn.Module, path: Union[str, Path]) -> None:
    """Load a checkpoint file (ours or a released one) strictly into ``model``."""
    load_state_dict_strict(model, extract_state_dict(read_checkpoint(path)), source=str(path))


def drop_classifier(model: nn.Module, state: Dict[str, torch.Tensor]) -> list:
    """Remove classifier weights of another class count from ``state`` (for ``--tune-from``).

    The class counts come from ``model.get_classifier()`` and the checkpoint's
    entry for it; every tensor whose first dimension is the checkpoint's class
    count where the model has its own (and is otherwise the same shape) is
    dropped, so models with several heads (one per exit) lose all of them.
    Returns the dropped keys.
    """
    head = model.get_classifier()
    head_key = next(f"{name}.weight" for name, module in model.named_modules() if module is head)
    own = model.state_dict()
    if head_key not in state or state[head_key].shape == own[head_key].shape:
        return []
    theirs, ours = state[head_key].shape[0], own[head_key].shape[0]
    dropped = [key for key, value in state.items()
               if key in own and value.shape != own[key].shape and value.shape[0] == theirs
               and own[key].shape[0] == ours and value.shape[1:] == own[key].shape[1:]]
    for key in dropped:
        del state[key]
    return dropped
