"""Which video decoder to use: ``auto`` or a name, checked once, before any work.

``auto`` takes the first usable one of ``AUTO_ORDER``: fastest first, as measured by
``scripts/bench_loader.py`` (one thread, 8 frames of a 10 s 340x256 H.264 clip at x264's
default keyframe interval: PyAV 45 ms, decord 70 ms, torchcodec on FFmpeg 8 136 ms).
``--decode-device cuda`` needs torchcodec, a CUDA device and decoding in the main process.
Every backend needs PyAV as well: the cached frame index (``frame_index``) is read with it.
"""
from __future__ import annotations

import functools
from typing import Dict, List, Optional, Tuple, Type

from ops.common.errors import UserError
from ops.data.decoders.base import VideoFile, first_line
from ops.data.decoders.decord_video import DecordVideo
from ops.data.decoders.pyav_video import PyAVVideo
from ops.data.decoders.torchcodec_video import TorchCodecVideo
from ops.data.decoders import torchcodec_video

BACKENDS: Dict[str, Type[VideoFile]] = {"torchcodec": TorchCodecVideo, "pyav": PyAVVideo, "decord": DecordVideo}
AUTO_ORDER = ("pyav", "decord", "torchcodec")
DECODER_CHOICES = ("auto",) + AUTO_ORDER
DEVICE_CHOICES = ("cpu", "cuda")


def _import_problem(module: str) -> Optional[str]:
    try:
        __import__(module)
    except Exception as exc:  # a broken native library raises more than ImportError
        return f"not installed ({first_line(exc)})" if isinstance(exc, ImportError) else first_line(exc)
    return None


@functools.lru_cache(maxsize=None)
def availability(name: str) -> Optional[str]:
    """None when backend ``name`` can decode on this machine, else why not (one line).
    Probed once per process (it loads the native libraries)."""
    if name == "torchcodec":
        return torchcodec_video.availability() or _import_problem("av")  # av builds the frame index
    if name == "decord":
        return _import_problem("decord") or _import_problem("av")  # and reads the display orientation
    return _import_problem("av")


def version(name: str) -> str:
    import importlib.metadata as md

    try:
        return md.version({"pyav": "av"}.get(name, name))
    except md.PackageNotFoundError:
        return "?"


def report() -> List[Tuple[str, str, Optional[str]]]:
    """(name, version, None or why it is unusable) for every backend, in ``auto``'s order."""
    return [(name, version(name), availability(name)) for name in AUTO_ORDER]


def cuda_problem() -> Optional[str]:
    """None when ``--decode-device cuda`` can work here, else why not."""
    import torch

    if not torch.cuda.is_available():
        return "no CUDA device (torch.cuda.is_available() is False)"
    problem = availability("torchcodec")
    return f"torchcodec cannot be loaded: {problem}" if problem else None


def resolve_decoder(name: str = "auto", device: str = "cpu", workers: int = 0) -> str:
    """The backend to use: ``name`` checked, or ``auto``'s pick; raises UserError in one line."""
    if name not in DECODER_CHOICES:
        raise UserError(f"--decoder {name}: choose from {', '.join(DECODER_CHOICES)}")
    if device not in DEVICE_CHOICES:
        raise UserError(f"--decode-device {device}: choose from {', '.join(DEVICE_CHOICES)}")
    if device == "cuda":
        if name not in ("auto", "torchcodec"):
            raise UserError(f"--decode-device cuda decodes with torchcodec, not --decoder {name}")
        problem = cuda_problem()
        if problem:
            raise UserError(f"--decode-device cuda is unavailable: {problem}; use --decode-device cpu")
        if workers:
            raise UserError("--decode-device cuda decodes in the main process: use --workers 0")
        return "torchcodec"
    if name == "auto":
        usable = [n for n in AUTO_ORDER if availability(n) is None]
        if not usable:
            raise UserError("no video decoder is usable here (see `videorec doctor`): pip install av")
        return usable[0]
    problem = availability(name)
    if problem:
        raise UserError(f"--decoder {name} is unavailable: {problem} "
                        "(see `videorec doctor`; --decoder auto picks one that works)")
    return name


def describe(name: str, device: str = "cpu") -> str:
    """One run-log line: the video decoder and the JPEG decoder in use."""
    extra = f", FFmpeg {torchcodec_video.ffmpeg_version()}" if name == "torchcodec" else ""
    return f"decoders: video {name} {version(name)} ({device}{extra}), JPEG simplejpeg {version('simplejpeg')}"
