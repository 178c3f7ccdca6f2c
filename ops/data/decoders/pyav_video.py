"""PyAV backend: maintained, and its wheels bundle FFmpeg (works on machines without one)."""
from __future__ import annotations

from typing import Dict

import numpy as np
import torch

from ops.data.decoders.base import VideoFile
from ops.data.decoders.frame_index import load_frame_index


class PyAVVideo(VideoFile):
    """Exact frames by timestamp, from the cached frame index (see ``frame_index``).

    Decoding seeks to the keyframe before a wanted frame unless going on from the last
    decoded one is shorter. On the way, packets of frames nobody asked for are decoded with
    ``skip_frame=NONREF``: frames no other frame refers to (most B-frames) are not decoded at
    all, which leaves every reference, and so every wanted frame, bit-exact. PyAV returns the
    stored frames; the display orientation read with the index turns them upright.
    """

    name = "pyav"

    def _open(self, threads: int) -> int:
        import av

        av.logging.set_level(None)
        self.index = load_frame_index(self.path)
        self.orientation = self.index.orientation
        self.container = av.open(str(self.path), metadata_errors="ignore")
        self.stream = self.container.streams[self.index.stream]
        self.stream.thread_type = "AUTO"
        self.stream.thread_count = threads
        return self.index.num_frames

    def _decode(self, indices: np.ndarray) -> torch.Tensor:
        pts = self.index.pts
        wanted: Dict[int, int] = {int(pts[i]): int(i) for i in indices}  # pts -> frame index
        got: Dict[int, np.ndarray] = {}
        ctx = self.stream.codec_context
        pending = [int(i) for i in indices]  # sorted; the first is the next to reach
        while pending:
            start = self.index.keyframe_before(pending[0])
            self.container.seek(int(pts[start]), stream=self.stream, backward=True)
            pos = -1  # the last frame decoded since the seek
            for packet in self.container.demux(self.stream):
                ctx.skip_frame = "DEFAULT" if packet.pts in wanted or packet.pts is None else "NONREF"
                for frame in ctx.decode(packet if packet.size else None):
                    if frame.pts is None:
                        continue
                    pos = max(pos, int(np.searchsorted(pts, frame.pts)))
                    if frame.pts in wanted:
                        got[wanted[frame.pts]] = frame.to_ndarray(format="rgb24")
                while pending and (pending[0] in got or pending[0] < pos):
                    if pending[0] not in got:
                        raise ValueError(f"frame {pending[0]} (pts {pts[pending[0]]}) missing from the decoded stream")
                    pending.pop(0)
                if not pending or (pos >= start and self.index.keyframe_before(pending[0]) > pos + 1):
                    break  # done, or a seek is shorter than decoding on
            else:
                raise EOFError(f"frame {pending[0]} does not decode")
        ctx.skip_frame = "DEFAULT"
        return torch.from_numpy(np.stack([got[int(i)] for i in indices]))

    def __del__(self) -> None:
        container = getattr(self, "container", None)
        if container is not None:
            container.close()
