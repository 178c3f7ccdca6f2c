"""Small test videos made with the ffmpeg binary (imageio-ffmpeg's where there is no other)."""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import List

from ops.prep.media import ffmpeg_exe

# name -> (container suffix, ffmpeg encoder arguments); every one has FRAMES frames of 64x48 at 30 fps
CODECS = {
    "h264_default_gop": (".mp4", ["-c:v", "libx264", "-pix_fmt", "yuv420p"]),  # one keyframe: GOP 250 > FRAMES
    "h264_gop4": (".mp4", ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "4"]),
    # variable frame rate: a 5 s pause after frame 20
    "h264_vfr": (".mp4", ["-vf", "setpts='PTS+if(gt(N,20),5/TB,0)'", "-fps_mode", "vfr", "-c:v", "libx264",
                          "-pix_fmt", "yuv420p"]),
    "hevc": (".mp4", ["-c:v", "libx265", "-pix_fmt", "yuv420p", "-x265-params", "log-level=error"]),
    "vp9": (".webm", ["-c:v", "libvpx-vp9", "-pix_fmt", "yuv420p"]),
    "mpeg4": (".avi", ["-c:v", "mpeg4", "-q:v", "3"]),
    "mjpeg": (".avi", ["-c:v", "mjpeg", "-q:v", "3"]),
}
FRAMES = 45


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *map(str, args)], check=True)


def make_video(path: Path, encoder_args: List[str], frames: int = FRAMES, size: str = "64x48") -> Path:
    """A moving test pattern with noise (so frames differ and take real bytes)."""
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30,noise=alls=25:allf=t", "-frames:v", frames,
           *encoder_args, path)
    return path
