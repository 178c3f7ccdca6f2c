"""The frame index of a video: every frame's timestamp, which frames are keyframes, the
stored frame size and the display orientation (see ``orientation``).

Exact frame access needs it (frame ``i`` is the one with the i-th smallest timestamp;
decoding starts at the last keyframe before it). Building it reads every packet of the
file (demuxing, no decoding), so it is done once per file and cached in
``<cache>/frame_index/<key>.npz``, the key made of the file's absolute path, size and
``st_mtime_ns``: a replaced file gets a new index, and opening a file for each clip costs
one small read instead of a scan.

The cache folder is ``$VIDEOREC_CACHE_DIR``, else ``$XDG_CACHE_HOME/videorec``, else
``~/.cache/videorec``; where it cannot be written the index is simply not kept.
"""
from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ops.common.fileio import atomic_open
from ops.data.decoders.orientation import display_matrix_of, from_display_matrix


@dataclass(frozen=True)
class FrameIndex:
    """One video stream of a file (``container``: the demuxer's name, ``mov,mp4,m4a,...``), its
    frames in presentation order: ``pts`` (F,) int64 in the stream's time base, ``keyframe``
    (F,) bool, ``duration`` (F,) int64 (0 where unknown); ``coded_size`` (2,) int64, the
    stored (height, width) before any turn; ``orientation`` (2, 2) int64, what turns a stored
    frame upright."""

    stream: int
    container: str
    pts: np.ndarray
    keyframe: np.ndarray
    duration: np.ndarray
    coded_size: np.ndarray
    orientation: np.ndarray

    @property
    def num_frames(self) -> int:
        return len(self.pts)

    @functools.cached_property
    def keyframes(self) -> np.ndarray:
        """Indices of the keyframes, ascending (computed once per index)."""
        return np.flatnonzero(self.keyframe)

    def keyframe_before(self, i: int) -> int:
        """The index of the last keyframe at or before frame ``i`` (0 if none): a binary search,
        since the decoders ask for every packet of a clip."""
        j = int(np.searchsorted(self.keyframes, i, side="right")) - 1
        return int(self.keyframes[j]) if j >= 0 else 0


_ARRAYS = ("pts", "keyframe", "duration", "coded_size", "orientation")  # FrameIndex's array fields


def cache_dir() -> Path:
    """Where cached indexes go (see the module docstring)."""
    if os.environ.get("VIDEOREC_CACHE_DIR"):
        return Path(os.environ["VIDEOREC_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "videorec"


def cache_path(path: Path, folder: Optional[Path] = None) -> Path:
    """The cache file of ``path``'s index, keyed by absolute path, size and mtime_ns."""
    st = Path(path).stat()
    key = hashlib.sha1(f"{Path(path).resolve()}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()
    return (folder or cache_dir()) / "frame_index" / f"{key}.npz"


def _frames_from(stream, packet) -> list:
    """The frames ``packet`` completes (none when it does not decode)."""
    import av

    try:
        return list(stream.codec_context.decode(packet if packet.size else None))
    except av.FFmpegError:
        return []  # a damaged packet: a later one may decode


def scan_frames(path: Path) -> FrameIndex:
    """Read every packet of the first video stream of ``path`` with PyAV, decoding only up to
    the first frame: FFmpeg hands the stream's display matrix to every frame, and PyAV shows
    it only there."""
    import av

    with av.open(str(path), metadata_errors="ignore") as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        size = np.array([stream.codec_context.height, stream.codec_context.width], dtype=np.int64)
        rows = []
        first = None  # the first decoded frame
        for packet in container.demux(stream):
            if first is None:
                first = next(iter(_frames_from(stream, packet)), None)
            if packet.size == 0 or packet.is_discard or packet.is_corrupt:
                continue
            stamp = packet.pts if packet.pts is not None else packet.dts
            if stamp is None:
                raise ValueError("packets without timestamps")
            rows.append((stamp, packet.is_keyframe, packet.duration or 0))
        number, container_name = stream.index, container.format.name
        matrix = display_matrix_of(first) if first is not None else None
    rows.sort()
    table = np.array(rows, dtype=np.int64).reshape(-1, 3)
    return FrameIndex(number, container_name, table[:, 0], table[:, 1].astype(bool), table[:, 2], size,
                      from_display_matrix(matrix))


def load_frame_index(path: Path, folder: Optional[Path] = None) -> FrameIndex:
    """``path``'s frame index from the cache, scanned (and cached) on first use."""
    cached = cache_path(path, folder)
    try:
        with np.load(cached) as data:
            return FrameIndex(int(data["stream"]), str(data["container"]), *(data[key] for key in _ARRAYS))
    except (OSError, KeyError, ValueError):
        pass  # not cached yet (or a damaged entry: scanned again and replaced)
    index = scan_frames(path)
    try:
        with atomic_open(cached, "wb") as fh:
            np.savez(fh, stream=index.stream, container=index.container,
                     **{key: getattr(index, key) for key in _ARRAYS})
    except OSError:
        pass  # an unwritable cache folder costs a scan per open, nothing else
    return index
