"""Frame folders: one JPEG per frame, decoded with simplejpeg (libjpeg-turbo, maintained)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import simplejpeg
import torch

from ops.data.decoders.base import SourceError, reorder

FRAME_TEMPLATES = ("img_{:05d}.jpg", "{:05d}.jpg", "{:06d}.jpg", "image_{:05d}.jpg")


class FrameFolderSource:
    """A folder of JPEG frames named by a 1-based template (``img_{:05d}.jpg``).

    Every bad frame (missing, empty, truncated, not a JPEG, another size than the
    others) is a :class:`SourceError` naming the file.
    """

    name = "simplejpeg"

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

    def _bytes(self, index: int) -> tuple:
        path = self.folder / self.template.format(index + 1)
        try:
            data = path.read_bytes()
        except OSError:
            raise SourceError(f"{path}: frame missing") from None
        if not data:
            raise SourceError(f"{path}: empty JPEG")
        return path, data

    def read(self, indices: Sequence[int]) -> torch.Tensor:
        """Frames at ``indices`` as uint8 (T, H, W, 3); each distinct frame is decoded once,
        straight into the clip's memory."""
        unique, inverse = np.unique(np.asarray(indices, dtype=np.int64).reshape(-1), return_inverse=True)
        files = [self._bytes(int(i)) for i in unique]
        out = None
        for j, (path, data) in enumerate(files):
            try:
                height, width, _, _ = simplejpeg.decode_jpeg_header(data)
                if out is None:
                    out = np.empty((len(files), height, width, 3), np.uint8)
                elif (height, width) != out.shape[1:3]:
                    raise SourceError(f"{path}: {width}x{height} frame among {out.shape[2]}x{out.shape[1]} ones")
                simplejpeg.decode_jpeg(data, colorspace="RGB", buffer=out[j], strict=True)
            except ValueError as exc:
                raise SourceError(f"{path}: corrupt JPEG ({str(exc).splitlines()[0][:120]})") from None
        return reorder(torch.from_numpy(out), inverse.reshape(-1))
