"""What every frame source shares: the error type, quiet native calls, thread counts, and
the read contract of a video file.

``source.read(indices)`` returns a uint8 tensor (T, H, W, 3), channels last, in the order of
``indices`` (repeats allowed; each distinct frame is decoded once), turned upright as players
show the video (its display rotation and mirroring applied, so H and W are the displayed
ones). A backend only decodes sorted distinct frame indices and says what still turns its
frames upright; the clamping, the turning, the reordering and the error handling live here.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from ops.data.decoders.orientation import UPRIGHT, orient


class SourceError(OSError):
    """A sample that cannot be read (missing, corrupt, empty); the message is one line naming the file."""


_NATIVE_PREFIX = re.compile(r"^\[[\d:]+\] \S+:\d+: (Check failed: )?")  # decord's "[12:00:00] src/x.cc:61: "


def first_line(exc: BaseException, limit: int = 160) -> str:
    """An exception's first non-empty line (native libraries write pages) without source-file
    prefixes, or its type name."""
    lines = [_NATIVE_PREFIX.sub("", ln.strip()) for ln in str(exc).splitlines() if ln.strip()]
    return lines[0][:limit] if lines else type(exc).__name__


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null around native calls that print (FFmpeg's and decord's
    log lines such as ``moov atom not found`` bypass Python's ``sys.stderr``)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def decoder_threads() -> int:
    """FFmpeg threads for one decoder: the cores this process may use, shared among the
    DataLoader workers when called in one (one thread each with as many workers as cores)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    info = torch.utils.data.get_worker_info()
    return max(1, min(8, cores // (info.num_workers if info else 1)))


def reorder(frames: torch.Tensor, inverse: np.ndarray) -> torch.Tensor:
    """Frames decoded once each (U, H, W, 3) laid out as requested (T, H, W, 3)."""
    if len(inverse) == len(frames) and (inverse == np.arange(len(inverse))).all():
        return frames
    return frames[torch.from_numpy(inverse).to(frames.device)]


class VideoFile:
    """A video file read by frame index through one decoder backend (subclasses: ``_open``, ``_decode``).

    The decoder is created when the source is (in the DataLoader worker that reads the
    sample, after the fork), with :func:`decoder_threads` threads. Containers often
    over-report their frame count: a read past what really decodes lowers ``num_frames``
    to the frames that do and clamps to the last one. Every failure is a :class:`SourceError`
    naming the file, and the libraries' log lines never reach stderr. ``orientation`` (2, 2)
    turns the frames ``_decode`` returns upright (set by ``_open``; see ``orientation``).
    """

    name = ""

    def __init__(self, path: Path, device: str = "cpu") -> None:
        self.path = Path(path)
        self.device = device
        self.orientation = UPRIGHT
        if not self.path.is_file():
            raise SourceError(f"{self.path}: video not found")
        if self.path.stat().st_size == 0:
            raise SourceError(f"{self.path}: empty file")
        try:
            with quiet_stderr():
                self.num_frames = self._open(decoder_threads())
        except SourceError:
            raise
        except Exception as exc:  # each library has its own error types
            reason = first_line(exc).replace(f": '{self.path}'", "")  # FFmpeg's errors repeat the path
            raise SourceError(f"{self.path}: cannot open video ({reason})") from None
        if self.num_frames <= 0:
            raise SourceError(f"{self.path}: no video frames")

    def _open(self, threads: int) -> int:
        """Create the decoder; returns the frame count the container reports (or an index found)."""
        raise NotImplementedError

    def _decode(self, indices: np.ndarray) -> torch.Tensor:
        """Frames at sorted distinct ``indices`` (U,) as uint8 (U, H, W, 3); raises when one does not decode."""
        raise NotImplementedError

    def read(self, indices: Sequence[int]) -> torch.Tensor:
        """Frames at ``indices`` (clamped to the decodable ones) as uint8 (T, H, W, 3)."""
        for attempt in range(2):
            idx = np.clip(np.asarray(indices, dtype=np.int64).reshape(-1), 0, self.num_frames - 1)
            unique, inverse = np.unique(idx, return_inverse=True)
            try:
                with quiet_stderr():
                    return reorder(orient(self._decode(unique), self.orientation), inverse.reshape(-1))
            except SourceError:
                raise
            except Exception as exc:
                if attempt:
                    raise SourceError(f"{self.path}: decoding failed ({first_line(exc)})") from None
                self.num_frames = self._decodable_count()
        raise AssertionError("unreachable")

    def _decodable_count(self) -> int:
        """The number of frames that really decode (binary search from the end)."""
        def decodes(i: int) -> bool:
            try:
                with quiet_stderr():
                    self._decode(np.array([i]))
                return True
            except Exception:
                return False

        if not decodes(0):
            raise SourceError(f"{self.path}: no frame decodes")
        lo, hi = 0, self.num_frames - 1  # frame lo decodes; find the last one that does
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if decodes(mid) else (lo, mid - 1)
        return lo + 1
