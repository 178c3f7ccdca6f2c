"""Frame sources: read frames by 0-based index from a frame folder or a video file.

``source.read(indices)`` returns a uint8 tensor (T, H, W, 3) in the order of
``indices`` (repeats allowed; each distinct frame is decoded once). Every sample that
cannot be read raises :class:`SourceError` with one line naming the file. The decoders
themselves live in ``ops.data.decoders``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from ops.data.decoders.base import SourceError
from ops.data.decoders.jpeg_folder import FRAME_TEMPLATES, FrameFolderSource
from ops.data.decoders.registry import BACKENDS, resolve_decoder

VIDEO_EXTENSIONS = (".mp4", ".webm", ".avi", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ts", ".ogv")

__all__ = ["FRAME_TEMPLATES", "FrameFolderSource", "SourceError", "VIDEO_EXTENSIONS", "open_source", "resolve_path",
           "video_fps"]


def open_source(path: Path, template: str, num_frames: Optional[int] = None, decoder: str = "auto",
                device: str = "cpu"):
    """A video file (by extension) read with ``decoder`` on ``device``, or a frame folder."""
    if Path(path).suffix.lower() in VIDEO_EXTENSIONS:
        backend = BACKENDS[resolve_decoder(decoder, device)]
        return backend(path, device)
    return FrameFolderSource(path, template, num_frames)


def resolve_path(root: str, path: str, video_ext: str = "") -> Path:
    """A list-file path joined to the dataset root (absolute paths stay), with
    ``video_ext`` appended when the path has none and no folder of that name exists."""
    full = Path(path) if os.path.isabs(path) or not root else Path(root) / path
    if video_ext and not full.suffix and not full.is_dir():
        full = full.with_name(full.name + video_ext)
    return full


def video_fps(path: Path) -> float:
    """A video file's frame rate, as its container says (read with PyAV, whichever decoder reads the frames)."""
    import av

    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    except (OSError, IndexError, av.FFmpegError) as exc:
        raise SourceError(f"{path}: cannot read its frame rate ({exc})") from None
    if not rate or float(rate) <= 0:
        raise SourceError(f"{path}: the file does not say its frame rate")
    return float(rate)
