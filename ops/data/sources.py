"""Frame sources: read frames by 0-based index from a frame folder or a video file.

``source.read(indices)`` returns a uint8 tensor (T, H, W, 3) in the order of
``indices`` (repeats allowed; each distinct frame is decoded once).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

VIDEO_EXTENSIONS = (".mp4", ".webm", ".avi", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ts", ".ogv")
FRAME_TEMPLATES = ("img_{:05d}.jpg", "{:05d}.jpg", "{:06d}.jpg", "image_{:05d}.jpg")


class SourceError(OSError):
    """A sample that cannot be read (missing, corrupt, empty)."""


class FrameFolderSource:
    """A folder of JPEG frames named by a 1-based template (``img_{:05d}.jpg``)."""

    def __init__(self, folder: Path, template: str, num_frames: Optional[int] = None) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise SourceError(f"{self.folder}: frame folder not found")
        if not (self.folder / template.format(1)).is_file():
            found = next((t for t in FRAME_TEMPLATES if (self.folder / t.format(1)).is_file()), None)
            if found is None:
                raise SourceError(f"{self.folder}: no frame {template.format(1)} (template {template})")
            template = found
        self.template = template
        self.num_frames = num_frames if num_frames else self._count()

    def _count(self) -> int:
        n = 0
        while (self.folder / self.template.format(n + 1)).is_file():
            n += 1
        return n

    def read(self, indices: Sequence[int]) -> torch.Tensor:
        from torchvision.io import ImageReadMode, decode_jpeg

        unique, inverse = np.unique(np.asarray(indices), return_inverse=True)
        datas = []
        for i in unique:
            path = self.folder / self.template.format(int(i) + 1)
            try:
                datas.append(torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8))
            except OSError:
                raise SourceError(f"{path}: frame missing") from None
        try:
            frames = decode_jpeg(datas, mode=ImageReadMode.RGB)
        except RuntimeError as exc:
            raise SourceError(f"{self.folder}: corrupt JPEG ({str(exc).splitlines()[0]})") from None
        # decode_jpeg's (3, H, W) is a view of (H, W, 3) memory: copy that memory as it is, each
        # requested index straight into the clip (repeats share a decode)
        return torch.stack([frames[j].permute(1, 2, 0) for j in inverse.reshape(-1).tolist()])


class VideoSource:
    """A video file decoded on the fly with decord.

    Containers often over-report their frame count: a read past what really
    decodes lowers ``num_frames`` to the last decodable frame and clamps.
    """

    def __init__(self, path: Path) -> None:
        import decord

        self.path = Path(path)
        if not self.path.is_file():
            raise SourceError(f"{self.path}: video not found")
        if self.path.stat().st_size == 0:
            raise SourceError(f"{self.path}: empty file")
        try:
            self.reader = decord.VideoReader(str(self.path), num_threads=1)
        except Exception as exc:  # decord raises DECORDError / RuntimeError
            raise SourceError(f"{self.path}: cannot open video ({str(exc).splitlines()[0][:120]})") from None
        self.num_frames = len(self.reader)
        if self.num_frames == 0:
            raise SourceError(f"{self.path}: no frames")

    def read(self, indices: Sequence[int]) -> torch.Tensor:
        idx = np.clip(np.asarray(indices, dtype=np.int64), 0, self.num_frames - 1)
        try:
            return torch.from_numpy(self.reader.get_batch(idx.tolist()).asnumpy())
        except Exception:
            self.num_frames = self._decodable_count()
            idx = np.minimum(idx, self.num_frames - 1)
            try:
                return torch.from_numpy(self.reader.get_batch(idx.tolist()).asnumpy())
            except Exception as exc:
                raise SourceError(f"{self.path}: decoding failed ({str(exc).splitlines()[0][:120]})") from None

    def _decodable_count(self) -> int:
        """The number of frames that really decode (binary search from the end)."""
        lo, hi = 0, self.num_frames - 1  # frame lo is assumed readable; find the last readable one
        while lo < hi:
            mid = (lo + hi + 1) // 2
            try:
                self.reader.seek_accurate(mid)
                self.reader.next()
                lo = mid
            except Exception:
                hi = mid - 1
        return lo + 1


def open_source(path: Path, template: str, num_frames: Optional[int] = None):
    """A video file (by extension) or a frame folder."""
    if Path(path).suffix.lower() in VIDEO_EXTENSIONS:
        return VideoSource(path)
    return FrameFolderSource(path, template, num_frames)


def resolve_path(root: str, path: str, video_ext: str = "") -> Path:
    """A list-file path joined to the dataset root (absolute paths stay), with
    ``video_ext`` appended when the path has none and no folder of that name exists."""
    full = Path(path) if os.path.isabs(path) or not root else Path(root) / path
    if video_ext and not full.suffix and not full.is_dir():
        full = full.with_name(full.name + video_ext)
    return full
