"""torchcodec backend: PyTorch's maintained decoder, on the CPU or on an NVIDIA GPU (NVDEC).

It needs FFmpeg's shared libraries on the machine (or PyAV's copy, see ``pyav_library_path``);
``availability()`` says why it cannot be used where they are missing.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ops.data.decoders.base import VideoFile, first_line
from ops.data.decoders.frame_index import load_frame_index
from ops.data.decoders.orientation import rotation, undo_then

FFMPEG_LIBS = ("libavutil", "libavcodec", "libavformat", "libavfilter", "libavdevice", "libswscale", "libswresample")


def availability() -> Optional[str]:
    """None when torchcodec can decode here, else why not (one line)."""
    try:
        import torchcodec  # noqa: F401
        from torchcodec._core import ops
    except Exception as exc:
        return f"not installed ({first_line(exc)})" if isinstance(exc, ImportError) else first_line(exc)
    if not ops._FFMPEG_AVAILABLE:
        return ("FFmpeg's shared libraries (libavutil, libavcodec, ...) not found: install FFmpeg "
                "(e.g. apt-get install ffmpeg), or start with the LD_LIBRARY_PATH `videorec doctor` prints "
                "(PyAV's bundled copy)")
    return None


def pyav_library_path(folder: Path) -> str:
    """An ``LD_LIBRARY_PATH`` with which torchcodec loads the FFmpeg bundled in PyAV's wheel, on
    machines without FFmpeg: ``folder`` gets links under the names torchcodec asks for
    (``libavutil.so.60`` ...) to the wheel's renamed copies. Takes effect in a new process."""
    import av

    bundled = Path(av.__file__).resolve().parent.parent / "av.libs"
    folder.mkdir(parents=True, exist_ok=True)
    for lib in FFMPEG_LIBS:
        found = sorted(bundled.glob(f"{lib}-*.so.*"))
        if not found:
            raise FileNotFoundError(f"{bundled}: no {lib} in PyAV's wheel")
        major = re.search(r"\.so\.(\d+)", found[0].name).group(1)
        link = folder / f"{lib}.so.{major}"
        link.unlink(missing_ok=True)
        link.symlink_to(found[0])
    return f"{folder}:{bundled}"


def ffmpeg_version() -> str:
    """The FFmpeg major version torchcodec loaded."""
    from torchcodec._core import ops

    return str(ops.ffmpeg_major_version)


class TorchCodecVideo(VideoFile):
    """Exact frames by index, with torchcodec's frame table taken from the cached frame index
    (``custom_frame_mappings``): no scan of the file per clip (torchcodec's own exact mode scans
    it at every open), and exact for variable frame rates too. torchcodec turns frames by the
    display rotation itself but ignores mirroring; what it leaves undone is applied after."""

    name = "torchcodec"

    def _open(self, threads: int) -> int:
        from torchcodec.decoders import VideoDecoder

        index = load_frame_index(self.path)
        rows = zip(index.pts.tolist(), index.duration.tolist(), index.keyframe.astype(np.int64).tolist())
        mappings = json.dumps({"frames": [{"pts": pts, "duration": duration, "key_frame": key}
                                          for pts, duration, key in rows]})
        self.decoder = VideoDecoder(str(self.path), stream_index=index.stream, dimension_order="NHWC",
                                    num_ffmpeg_threads=threads, device=self.device, custom_frame_mappings=mappings)
        self.orientation = undo_then(rotation(self.decoder.metadata.rotation or 0.0), index.orientation)
        return index.num_frames

    def _decode(self, indices: np.ndarray) -> torch.Tensor:
        return self.decoder.get_frames_at(indices.tolist()).data
