"""decord backend (unmaintained since 2021; kept for machines that have it and for comparison)."""
from __future__ import annotations

import numpy as np
import torch

from ops.data.decoders.base import SourceError, VideoFile
from ops.data.decoders.frame_index import load_frame_index
from ops.data.decoders.orientation import UPRIGHT, rotation_part, turned_size, undo_then


class DecordVideo(VideoFile):
    """decord's ``VideoReader``: its own packet scan at open, exact frames by index.

    Two quirks of decord 0.6 are made up for here. It turns frames by the display rotation
    only where its own FFmpeg (4.x) reads one, in MP4/MOV files, and ignores mirroring: what
    it leaves undone of the orientation read with the frame index is applied after, and a
    frame of another shape than expected is refused. And for frames narrower than 64 pixels
    it mistakes the padding of an RGB row for a fourth channel (``get_batch`` then fails):
    frames are read one by one and the padding cut off.
    """

    name = "decord"

    def _open(self, threads: int) -> int:
        import decord

        decord.logging.set_level(decord.logging.QUIET)
        index = load_frame_index(self.path)
        done = rotation_part(index.orientation) if "mp4" in index.container.split(",") else UPRIGHT
        self.orientation = undo_then(done, index.orientation)
        self.frame_size = turned_size(index.coded_size, done)  # (height, width) decord returns
        self.reader = decord.VideoReader(str(self.path), num_threads=threads)
        return len(self.reader)

    def _decode(self, indices: np.ndarray) -> torch.Tensor:
        frames = []
        for i in indices.tolist():
            self.reader.seek_accurate(i)
            frame = self.reader.next().asnumpy()
            height, width, channels = frame.shape
            if (height, width) != self.frame_size:
                want_h, want_w = self.frame_size
                raise SourceError(f"{self.path}: decord turns its frames to {width}x{height}, not to {want_w}x{want_h} "
                                  "as the display matrix says (use --decoder pyav)")
            frames.append(frame.reshape(height, width * channels)[:, : width * 3].reshape(height, width, 3))
        return torch.from_numpy(np.stack(frames))
