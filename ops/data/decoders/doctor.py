"""What can decode on this machine: every decoder, the FFmpeg each one uses, and why the
others cannot be used. Each probe is guarded: a broken library is reported, never raised."""
from __future__ import annotations

import subprocess
from typing import Callable, List

from ops.data.decoders.base import first_line


def _probe(what: str, fn: Callable[[], str]) -> str:
    try:
        return f"  {what:<28} {fn()}"
    except Exception as exc:  # the point of the report: nothing it finds stops it
        return f"  {what:<28} unusable: {first_line(exc)}"


def _ffmpeg_binary() -> str:
    from ops.prep.media import ffmpeg_exe

    exe = ffmpeg_exe()
    out = subprocess.run([exe, "-hide_banner", "-version"], capture_output=True, text=True, timeout=30).stdout
    return f"{out.splitlines()[0] if out else '?'} ({exe})"


def _pyav_ffmpeg() -> str:
    import av

    libs = av.library_versions
    codec, container = (".".join(map(str, libs[name])) for name in ("libavcodec", "libavformat"))
    return f"libavcodec {codec}, libavformat {container} (bundled in the av wheel)"


def _jpeg() -> str:
    import simplejpeg

    return f"simplejpeg {simplejpeg.__version__} (libjpeg-turbo), for frame folders"


def _cuda() -> str:
    from ops.data.decoders.registry import cuda_problem

    problem = cuda_problem()
    return f"unavailable: {problem}" if problem else "available (torchcodec on NVDEC; --decode-device cuda --workers 0)"


def _torchcodec_on_pyav() -> str:
    from ops.data.decoders.frame_index import cache_dir
    from ops.data.decoders.torchcodec_video import pyav_library_path

    return f"export LD_LIBRARY_PATH={pyav_library_path(cache_dir() / 'pyav-ffmpeg')}"


def doctor_lines() -> List[str]:
    """The report, one line per item."""
    from ops.data.decoders.registry import report, resolve_decoder
    from ops.data.decoders import torchcodec_video

    lines = ["video decoders (--decoder; auto tries them in this order):"]
    for name, version, problem in report():
        extra = ""
        if name == "torchcodec" and problem is None:
            extra = f", FFmpeg {torchcodec_video.ffmpeg_version()} shared libraries"
        lines.append(f"  {name:<28} {version:<10} " + (f"usable{extra}" if problem is None else f"unusable: {problem}"))
    torchcodec_problem = torchcodec_video.availability()
    if torchcodec_problem is not None and "not installed" not in torchcodec_problem:
        lines.append(_probe("torchcodec on PyAV's FFmpeg", _torchcodec_on_pyav))
    lines.append(_probe("auto picks", resolve_decoder))
    lines.append("FFmpeg:")
    lines.append(_probe("ffmpeg binary", _ffmpeg_binary))
    lines.append(_probe("PyAV's FFmpeg", _pyav_ffmpeg))
    lines.append("other:")
    lines.append(_probe("JPEG decoder", _jpeg))
    lines.append(_probe("--decode-device cuda", _cuda))
    return lines
