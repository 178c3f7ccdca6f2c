"""`videorec transcode SRC DST`: re-encode videos for fast training-time decoding."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer


def command(
    src: Path = typer.Argument(..., help="A video, or a folder searched recursively for videos."),
    dst: Path = typer.Argument(..., help="Output folder (outside SRC); video SRC/a/b/c.avi becomes DST/a/b/c.mp4."),
    short_side: int = typer.Option(256, help="Resize so the shorter side is this many pixels, even (0 = keep the size)."),
    gop: int = typer.Option(16, help="Frames between keyframes: reading a sampled frame decodes at most this many."),
    crf: int = typer.Option(23, help="x264 quality, 0..51 (lower is better and larger)."),
    fps: Optional[float] = typer.Option(None, help="Resample to this frame rate (default: keep the native rate)."),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", help="Parallel ffmpeg processes (default: the CPU count)."),
    overwrite: bool = typer.Option(False, help="Transcode again videos whose output exists (default: skip them)."),
) -> None:
    """Transcode to H.264 mp4 with short keyframe intervals; finished files are skipped, so an
    interrupted run can be restarted.

    Videos that fail (empty, truncated, no video stream) do not stop the others: they are
    listed in DST/transcode_failures.txt and the exit code is 1.
    """
    from ops.prep.transcode import TranscodeSettings, transcode_tree

    settings = TranscodeSettings(short_side=short_side, gop=gop, crf=crf, fps=fps)
    summary = transcode_tree(src, dst, settings, workers=workers or os.cpu_count() or 1, overwrite=overwrite)
    typer.echo(f"transcoded {summary.transcoded} videos ({summary.frames} frames, {summary.bytes_in / 1e6:.1f} MB -> "
               f"{summary.bytes_out / 1e6:.1f} MB), skipped {summary.skipped} already done, failed {len(summary.failures)}")
    if summary.failures:
        typer.echo(f"{len(summary.failures)} videos failed; see {summary.failures_file}", err=True)
        raise typer.Exit(1)
