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
scalars of numbers or strings, so a crafted file cannot run code; every array's
dtype, shape and byte count are checked against the file before anything is
allocated (in all, at most ``EXPANSION`` times the file's size), so a crafted file
cannot eat the memory either. The score files of the MSN/TDN test scripts (a list
of ``[logits (1, C), label]`` per video) are read too.
"""
from __future__ import annotations

import codecs
import math
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Union

import numpy as np

try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray, numeric as _numeric
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _multiarray, numeric as _numeric

from ops.common.errors import UserError
from ops.common.fileio import atomic_open

FORMAT = "videorec-scores"
VERSION = 1
ARRAY_KINDS = "biufU"  # bool, integers, floats, unicode strings
EXPANSION = 64  # the arrays of a file may take at most this many times its size (plus SLACK)
SLACK = 1 << 20


class _Refused(Exception):
    """A score file that asks for something plain data does not need."""


class _PendingArray:
    """Stands in for an array between numpy's ``_reconstruct`` and its ``__setstate__`` (the pickle BUILD)."""

    def __init__(self, reader: "_RestrictedUnpickler") -> None:
        self.reader = reader
        self.array: Optional[np.ndarray] = None

    def __setstate__(self, state: tuple) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _Refused("malformed array state")
        shape, dtype, _, data = state[-4:]
        if not isinstance(data, (bytes, bytearray)):
            raise _Refused(f"array of dtype {dtype} without raw data")
        self.reader.admit(dtype, shape, len(data))
        array = np.ndarray((0,), np.uint8)
        array.__setstate__(state)
        self.array = array


class _RestrictedUnpickler(pickle.Unpickler):
    """Rebuilds plain containers, numbers, strings and checked numpy arrays; refuses every other global."""

    def __init__(self, fh, budget: int) -> None:
        super().__init__(fh)
        self.budget = budget
        self.allowed: Dict[tuple, Callable] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                                               ("_codecs", "encode"): self.encode,
                                               ("collections", "OrderedDict"): dict}
        for module in ("numpy.core", "numpy._core"):
            self.allowed.update({(f"{module}.multiarray", "_reconstruct"): self.reconstruct,
                                 (f"{module}.multiarray", "scalar"): self.scalar,
                                 (f"{module}.numeric", "_frombuffer"): self.frombuffer})

    def find_class(self, module: str, name: str):
        if (module, name) in self.allowed:
            return self.allowed[(module, name)]
        raise _Refused(f"refused to load {module}.{name} (score files hold plain data only)")

    def spend(self, nbytes: int) -> None:
        if nbytes > self.budget:
            raise _Refused("its arrays would take more memory than a file of this size can hold")
        self.budget -= nbytes

    def admit(self, dtype: object, shape: object, nbytes: int) -> None:
        """Check an array before it exists: a number or string dtype, a shape whose size is ``nbytes``."""
        if not isinstance(dtype, np.dtype) or dtype.kind not in ARRAY_KINDS or dtype.itemsize <= 0:
            raise _Refused(f"array of dtype {dtype} (score files hold numbers and strings only)")
        if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise _Refused(f"array with shape {str(shape)[:60]}")
        if math.prod(shape) * dtype.itemsize != nbytes:
            raise _Refused(f"array of shape {shape} and dtype {dtype} does not match its {nbytes} bytes of data")
        self.spend(nbytes)

    def reconstruct(self, cls: object, shape: object, typecode: object) -> _PendingArray:
        if cls is not np.ndarray:
            raise _Refused(f"refused to rebuild {cls}")
        return _PendingArray(self)

    def frombuffer(self, buf: object, dtype: object, shape: object, order: object) -> np.ndarray:
        self.admit(dtype, shape, memoryview(buf).nbytes)
        return _numeric._frombuffer(buf, dtype, shape, order)

    def scalar(self, dtype: object, data: object = None) -> np.generic:
        if not isinstance(data, bytes):
            raise _Refused(f"scalar of dtype {dtype} without raw data")
        self.admit(dtype, (), len(data))
        return _multiarray.scalar(dtype, data)

    def encode(self, text: object, encoding: object = "latin1") -> bytes:
        if not isinstance(text, str) or encoding != "latin1":
            raise _Refused("unexpected _codecs.encode call")
        self.spend(len(text))
        return codecs.encode(text, "latin1")


def _arrays_in(obj: object, done: Dict[int, object], depth: int = 0) -> object:
    """``obj`` with every pending array replaced by the array it became; an object shared
    by several containers is converted once (``done``: id -> converted)."""
    if depth > 100:
        raise _Refused("nested more than 100 levels deep")
    if isinstance(obj, _PendingArray):
        if obj.array is None:
            raise _Refused("array without data")
        return obj.array
    if not isinstance(obj, (dict, list, tuple)):
        return obj
    if id(obj) not in done:
        if isinstance(obj, dict):
            done[id(obj)] = {k: _arrays_in(v, done, depth + 1) for k, v in obj.items()}
        else:
            done[id(obj)] = type(obj)(_arrays_in(v, done, depth + 1) for v in obj)
    return done[id(obj)]


def safe_load(path: Path) -> object:
    """Unpickle ``path`` allowing only plain containers and checked numpy arrays (see the module docstring)."""
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, 2)
            fh.seek(0)
            return _arrays_in(_RestrictedUnpickler(fh, EXPANSION * size + SLACK).load(), {})
    except FileNotFoundError:
        raise UserError(f"{path}: no such score file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: a folder, not a score file") from None
    except _Refused as exc:
        raise UserError(f"{path}: refused score file: {exc}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            MemoryError, OverflowError, RecursionError) as exc:
        raise UserError(f"{path}: not a readable score file ({str(exc)[:200]})") from None


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
    try:
        if isinstance(obj, dict) and obj.get("format") == FORMAT:
            return _from_dict(obj, path)
        if isinstance(obj, list):
            return _from_legacy(obj, path)
    except (TypeError, ValueError, OverflowError) as exc:
        raise UserError(f"{path}: malformed score file ({str(exc)[:200]})") from None
    raise UserError(f"{path}: not a videorec or MSN/TDN score file (found {type(obj).__name__})")


def _array(obj: dict, key: str, path: Path) -> np.ndarray:
    """``obj[key]``, which must be an array (a list could repeat one shared row without end)."""
    if key not in obj:
        raise UserError(f"{path}: score file lacks {key!r}")
    if not isinstance(obj[key], np.ndarray):
        raise UserError(f"{path}: {key!r} is a {type(obj[key]).__name__}, not an array")
    return obj[key]


def _from_dict(obj: dict, path: Path) -> ScoreFile:
    logits = _array(obj, "logits", path).astype(np.float32, copy=False)
    labels = _array(obj, "labels", path)
    exits = obj.get("exit_logits")
    exits = None if exits is None else _array(obj, "exit_logits", path).astype(np.float32, copy=False)
    ids = obj.get("video_ids")
    if not isinstance(ids, list) or not all(isinstance(v, (str, int, np.str_, np.integer)) for v in ids):
        raise UserError(f"{path}: 'video_ids' must be a list of names")
    ids = [str(v) for v in ids]
    if logits.ndim != 3 or len(logits) != len(ids) or len(labels) != len(ids):
        raise UserError(f"{path}: inconsistent shapes (logits {logits.shape}, {len(ids)} ids, labels {labels.shape})")
    settings = obj.get("settings", {})
    return ScoreFile(ids, labels, logits, int(obj.get("clip_index", 0)), int(obj.get("num_clips", 1)),
                     dict(settings) if isinstance(settings, dict) else {}, exits, str(path))


def _from_legacy(rows: list, path: Path) -> ScoreFile:
    """MSN/TDN: ``[[float32 (1, C) logits, int label], ...]`` in list order, no ids."""
    logits, labels = [], []
    for i, row in enumerate(rows):
        if not (isinstance(row, (list, tuple)) and len(row) == 2 and isinstance(row[0], np.ndarray)):
            raise UserError(f"{path}: entry {i} is not [scores (array), label]")
        logits.append(row[0].astype(np.float32, copy=False).reshape(1, -1))
        labels.append(int(row[1]))
    if len({a.shape for a in logits}) > 1:
        raise UserError(f"{path}: entries hold different numbers of classes")
    if sum(a.size for a in logits) * 4 > EXPANSION * path.stat().st_size + SLACK:  # rows may share one array
        raise UserError(f"{path}: refused score file: its scores would take more memory than a file of this size "
                        "can hold")
    stem = path.stem  # "{clip}_crop{k}"
    clip = int(stem.split("_")[0]) if stem.split("_")[0].isdigit() else 0
    ids = [f"#{i}" for i in range(len(rows))]  # legacy files carry no ids: list order
    return ScoreFile(ids, np.asarray(labels, np.int64), np.stack(logits), clip, 1, {"legacy": "msn/tdn"}, None, str(path))
