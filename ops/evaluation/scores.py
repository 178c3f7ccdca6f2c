"""Score files: the raw logits `videorec test` writes, one file per clip index.

A score file is a pickled dict of plain data (numpy arrays, strings, numbers)::

    {"format": "videorec-scores", "version": 1,
     "video_ids": [str, ...],                 # list order
     "labels": int64 (V,) | uint8 (V, K),     # multi-hot for multi-label datasets
     "logits": float32 (V, crops, K),         # raw logits, one row per spatial crop
     "exit_logits": float32 (V, E, K),        # optional: logits after each exit (early exit)
     "clip_index": int, "num_clips": int,
     "settings": {...}}                        # the resolved settings that made them

Reading goes through a restricted unpickler that only rebuilds numpy arrays and
scalars, so a crafted file cannot run code. The score files of the MSN/TDN test
scripts (a list of ``[logits (1, C), label]`` per video) are read too.
"""
from __future__ import annotations

import io
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np

from ops.common.errors import UserError
from ops.common.fileio import atomic_open

FORMAT = "videorec-scores"
VERSION = 1

_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"), ("collections", "OrderedDict"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name} (score files hold plain data only)")


def safe_load(path: Path) -> object:
    """Unpickle ``path`` allowing only plain containers and numpy arrays."""
    try:
        with open(path, "rb") as fh:
            return _RestrictedUnpickler(io.BufferedReader(fh)).load()
    except FileNotFoundError:
        raise UserError(f"{path}: no such score file") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise UserError(f"{path}: not a readable score file ({exc})") from None


@dataclass
class ScoreFile:
    """The content of one score file (see the module docstring)."""

    video_ids: List[str]
    labels: np.ndarray
    logits: np.ndarray
    clip_index: int = 0
    num_clips: int = 1
    settings: Dict[str, object] = field(default_factory=dict)
    exit_logits: Optional[np.ndarray] = None
    path: str = ""

    @property
    def multi_label(self) -> bool:
        return self.labels.ndim == 2

    def to_dict(self) -> dict:
        out = {"format": FORMAT, "version": VERSION, "video_ids": [str(v) for v in self.video_ids],
               "labels": np.asarray(self.labels), "logits": np.asarray(self.logits, dtype=np.float32),
               "clip_index": int(self.clip_index), "num_clips": int(self.num_clips), "settings": plain(self.settings)}
        if self.exit_logits is not None:
            out["exit_logits"] = np.asarray(self.exit_logits, dtype=np.float32)
        return out


def plain(value: object) -> object:
    """Settings as plain data: dicts, lists, str, int, float, bool, None (others as str)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def write_scores(path: Union[str, Path], scores: ScoreFile) -> None:
    """Write atomically: a temporary file in the same folder, then rename."""
    with atomic_open(Path(path), "wb") as fh:
        pickle.dump(scores.to_dict(), fh, protocol=pickle.HIGHEST_PROTOCOL)


def read_scores(path: Union[str, Path]) -> ScoreFile:
    """Read a videorec score file or a legacy MSN/TDN one."""
    path = Path(path)
    obj = safe_load(path)
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        return _from_dict(obj, path)
    if isinstance(obj, list):
        return _from_legacy(obj, path)
    raise UserError(f"{path}: not a videorec or MSN/TDN score file (found {type(obj).__name__})")


def _from_dict(obj: dict, path: Path) -> ScoreFile:
    try:
        logits = np.asarray(obj["logits"], dtype=np.float32)
        labels = np.asarray(obj["labels"])
        ids = [str(v) for v in obj["video_ids"]]
    except KeyError as exc:
        raise UserError(f"{path}: score file lacks {exc}") from None
    if logits.ndim != 3 or len(logits) != len(ids) or len(labels) != len(ids):
        raise UserError(f"{path}: inconsistent shapes (logits {logits.shape}, {len(ids)} ids, labels {labels.shape})")
    exits = obj.get("exit_logits")
    return ScoreFile(ids, labels, logits, int(obj.get("clip_index", 0)), int(obj.get("num_clips", 1)),
                     dict(obj.get("settings", {})), None if exits is None else np.asarray(exits, np.float32), str(path))


def _from_legacy(rows: list, path: Path) -> ScoreFile:
    """MSN/TDN: ``[[float32 (1, C) logits, int label], ...]`` in list order, no ids."""
    logits, labels = [], []
    for i, row in enumerate(rows):
        try:
            scores, label = row
            logits.append(np.asarray(scores, dtype=np.float32).reshape(1, -1))
            labels.append(int(label))
        except (TypeError, ValueError):
            raise UserError(f"{path}: entry {i} is not [scores, label]") from None
    stem = path.stem  # "{clip}_crop{k}"
    clip = int(stem.split("_")[0]) if stem.split("_")[0].isdigit() else 0
    ids = [f"#{i}" for i in range(len(rows))]  # legacy files carry no ids: list order
    return ScoreFile(ids, np.asarray(labels, np.int64), np.stack(logits), clip, 1, {"legacy": "msn/tdn"}, None, str(path))
