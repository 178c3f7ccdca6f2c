"""Re-encode a video tree for training: decoding a sampled frame then costs a few frames, not a
whole keyframe interval.

Each video becomes an H.264 mp4 (video only) with a keyframe every ``gop`` frames (no
scene-cut keyframes), its shorter side ``short_side`` pixels, x264's ``fastdecode`` tuning,
quality ``crf``, and optionally a new frame rate. ``SRC/a/b/c.avi`` becomes ``DST/a/b/c.mp4``
(the layout is kept, so ``make-annotations`` works on DST as on SRC). Each output is written
to a temporary sibling and renamed when ffmpeg succeeded, so finished files are complete and
a rerun skips them; failures are listed in ``DST/transcode_failures.txt``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import ffmpeg

from ops.common.errors import UserError
from ops.common.fileio import check_output_dir, write_report
from ops.prep.media import (VIDEO_EXTENSIONS, MediaError, ffmpeg_exe, ffmpeg_message, find_videos, pending,
                            plan_outputs, remove_stale_temps, scale_short_side)
from ops.prep.synthetic import pick_encoder
from ops.prep.workers import ChildProcesses, run_jobs

FAILURES_FILE = "transcode_failures.txt"


@dataclass(frozen=True)
class TranscodeSettings:
    """``short_side`` 0 keeps the size (made even); ``fps`` None keeps the rate."""

    short_side: int = 256
    gop: int = 16
    crf: int = 23
    fps: Optional[float] = None

    def check(self) -> None:
        if self.short_side < 0 or self.short_side % 2:
            raise UserError(f"--short-side {self.short_side}: must be even and >= 0 (0 keeps the size)")
        if self.gop < 1:
            raise UserError(f"--gop {self.gop}: must be >= 1 (frames between keyframes)")
        if not 0 <= self.crf <= 51:
            raise UserError(f"--crf {self.crf}: must be 0..51 (lower is better; 23 is x264's default)")
        if self.fps is not None and self.fps <= 0:
            raise UserError(f"--fps {self.fps}: must be > 0 (leave it out for the native rate)")


def transcode_command(video: Path, out: Path, settings: TranscodeSettings) -> List[str]:
    """The ffmpeg command line that writes ``out`` (mp4) from ``video``'s first video stream."""
    stream = ffmpeg.input(f"file:{video}", threads=1)["v:0"]
    if settings.fps:
        stream = stream.filter("fps", fps=settings.fps)
    if settings.short_side:
        stream = scale_short_side(stream, settings.short_side)
    else:  # yuv420p needs even sizes
        stream = stream.filter("scale", w="trunc(iw/2)*2", h="trunc(ih/2)*2")
    encoded = stream.output(f"file:{out}", format="mp4", vcodec="libx264", pix_fmt="yuv420p", preset="veryfast",
                            tune="fastdecode", crf=settings.crf, g=settings.gop, keyint_min=settings.gop,
                            sc_threshold=0, threads=1, movflags="+faststart", map_metadata=-1)
    return encoded.global_args("-nostdin", "-hide_banner", "-loglevel", "error").overwrite_output().compile(cmd=ffmpeg_exe())


def _video_frames(path: Path) -> int:
    """The frame count an mp4 header gives (0 for an output with no frame)."""
    import av

    with av.open(str(path)) as container:
        return container.streams.video[0].frames if container.streams.video else 0


def transcode_video(video: Path, out: Path, settings: TranscodeSettings,
                    children: Optional[ChildProcesses] = None) -> int:
    """Transcode ``video`` to ``out`` through a temporary sibling; returns the frames written.
    Raises :class:`MediaError` with ffmpeg's message (``out`` untouched) when it fails;
    ``children`` lets a caller stop the encoder (Ctrl-C)."""
    video, out = Path(video), Path(out)
    if not video.is_file():
        raise MediaError(video, "no such file")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        code, stderr = (children or ChildProcesses()).run(transcode_command(video, tmp, settings))
        message = ffmpeg_message(stderr)
        if code != 0:
            raise MediaError(video, f"ffmpeg failed: {message or f'exit code {code}'}")
        frames = _video_frames(tmp)
        if frames == 0:
            raise MediaError(video, f"no frames decoded{': ' + message if message else ''}")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return frames


@dataclass
class TranscodeSummary:
    """What one ``transcode_tree`` run did; ``failures`` holds (video, reason)."""

    transcoded: int = 0
    skipped: int = 0
    frames: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    failures: List[Tuple[Path, str]] = field(default_factory=list)
    failures_file: Optional[Path] = None


def plan_transcode(src: Path, dst: Path) -> Dict[Path, Path]:
    """Video -> output mp4 (``SRC/a/b/c.avi`` -> ``DST/a/b/c.mp4``); DST must not lie inside SRC."""
    src, dst = Path(src), Path(dst)
    if src.is_dir() and (dst.resolve() == src.resolve() or src.resolve() in dst.resolve().parents):
        raise UserError(f"transcode output folder {dst} is inside {src}: a rerun would transcode the outputs; "
                        "choose a DST outside SRC")
    videos = find_videos(src)
    if not videos:
        raise UserError(f"{src}: no videos found (extensions {' '.join(VIDEO_EXTENSIONS)})")
    return {video: out.with_name(out.name + ".mp4") for video, out in plan_outputs(src, dst, videos).items()}


def transcode_tree(src: Path, dst: Path, settings: TranscodeSettings, *, workers: int = 1,
                   overwrite: bool = False) -> TranscodeSummary:
    """Transcode every video under ``src`` into ``dst`` with ``workers`` parallel ffmpeg processes.

    Finished outputs are skipped unless ``overwrite``. Failures do not stop the others;
    they are written to ``dst/transcode_failures.txt`` (``path<TAB>reason``), removed when
    a run has none.
    """
    settings.check()
    check_output_dir(dst, "transcode output folder")
    if pick_encoder() != "libx264":
        raise UserError(f"{ffmpeg_exe()} has no libx264 encoder: install an ffmpeg with it or `pip install imageio-ffmpeg`")
    plan = plan_transcode(src, dst)
    remove_stale_temps({out.parent for out in plan.values()})
    summary = TranscodeSummary()
    todo, summary.skipped = pending(plan, Path.is_file, overwrite)
    children = ChildProcesses()
    done = run_jobs(lambda video: transcode_video(video, todo[video], settings, children), list(todo),
                    workers=workers, children=children, desc="transcode", unit="video")
    for video, future in done:
        try:
            summary.frames += future.result()
        except MediaError as exc:
            summary.failures.append((video, exc.reason))
            continue
        except OSError as exc:
            summary.failures.append((video, f"{type(exc).__name__}: {exc}"))
            continue
        summary.transcoded += 1
        summary.bytes_in += video.stat().st_size
        summary.bytes_out += todo[video].stat().st_size
    summary.failures.sort()
    failures_file = Path(dst) / FAILURES_FILE
    write_report(failures_file, [f"{video}\t{reason}" for video, reason in summary.failures])
    summary.failures_file = failures_file if summary.failures else None
    return summary
