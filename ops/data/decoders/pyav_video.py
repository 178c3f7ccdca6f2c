"""PyAV backend: maintained, and its wheels bundle FFmpeg (works on machines without one)."""
from __future__ import annotations

import numpy as np
import torch

from ops.data.decoders.base import VideoFile
from ops.data.decoders.frame_index import load_frame_index


class PyAVVideo(VideoFile):
    """Exact frames by timestamp: the cached frame index (see ``frame_index``) says where each
    frame is; decoding seeks to the keyframe before a wanted frame unless going on from the
    last decoded one is shorter."""

    name = "pyav"

    def _open(self, threads: int) -> int:
        import av

        av.logging.set_level(None)
        self.index = load_frame_index(self.path)
        self.container = av.open(str(self.path), metadata_errors="ignore")
        self.stream = self.container.streams[self.index.stream]
        self.stream.thread_type = "AUTO"
        self.stream.thread_count = threads
        return self.index.num_frames

    def _decode(self, indices: np.ndarray) -> torch.Tensor:
        pts = self.index.pts
        out = []
        frames = None  # the running decode, positioned after frame ``pos``
        pos = -1
        for target in indices.tolist():
            key = self.index.keyframe_before(target)
            if frames is None or target <= pos or key > pos + 1:
                self.container.seek(int(pts[key]), stream=self.stream, backward=True, any_frame=False)
                frames = self.container.decode(self.stream)
                pos = -1
            for frame in frames:
                if frame.pts is None:
                    continue
                pos = int(np.searchsorted(pts, frame.pts))
                if pos >= target:
                    break
            else:
                frames = None
                raise EOFError(f"frame {target} does not decode")
            if pos != target or pts[pos] != frame.pts:
                raise ValueError(f"frame {target} (pts {pts[target]}) missing from the decoded stream")
            out.append(frame.to_ndarray(format="rgb24"))
        return torch.from_numpy(np.stack(out))

    def __del__(self) -> None:
        container = getattr(self, "container", None)
        if container is not None:
            container.close()
