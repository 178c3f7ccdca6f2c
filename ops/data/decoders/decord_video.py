"""decord backend (unmaintained since 2021; kept for machines that have it and for comparison)."""
from __future__ import annotations

import numpy as np
import torch

from ops.data.decoders.base import VideoFile


class DecordVideo(VideoFile):
    """decord's ``VideoReader``: its own packet scan at open, ``get_batch`` for exact frames."""

    name = "decord"

    def _open(self, threads: int) -> int:
        import decord

        decord.logging.set_level(decord.logging.QUIET)
        self.reader = decord.VideoReader(str(self.path), num_threads=threads)
        return len(self.reader)

    def _decode(self, indices: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.reader.get_batch(indices.tolist()).asnumpy())
