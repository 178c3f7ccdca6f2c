"""`videorec extract-frames SRC DST`: decode videos into JPEG frame folders with ffmpeg."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from ops.prep.media import DEFAULT_TEMPLATE, extract_tree


def command(
    src: Path = typer.Argument(..., help="A video, or a folder searched recursively for videos."),
    dst: Path = typer.Argument(..., help="Output folder; video SRC/a/b/c.mp4 becomes frame folder DST/a/b/c."),
    short_side: int = typer.Option(320, help="Resize so the shorter side is this many pixels (0 = keep the size)."),
    fps: Optional[float] = typer.Option(None, help="Resample to this frame rate (default: every native frame)."),
    quality: int = typer.Option(2, help="JPEG quality, ffmpeg -q:v (lower is better; 2 is near-lossless)."),
    frame_template: str = typer.Option(DEFAULT_TEMPLATE, "--frame-template",
                                       help="Frame file names, numbered from 1: img_{:05d}.jpg, {:06d}.jpg, ..."),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", help="Parallel ffmpeg processes (default: the CPU count)."),
    overwrite: bool = typer.Option(False, help="Extract again into folders that already exist (default: skip them)."),
) -> None:
    """Extract frames; finished folders are skipped, so an interrupted run can be restarted.

    Videos that fail (empty, truncated, not a video) do not stop the others: they are
    listed in DST/extract_failures.txt and the exit code is 1. Ctrl-C stops every ffmpeg
    process and leaves only complete frame folders.
    """
    summary = extract_tree(src, dst, short_side=short_side, fps=fps, quality=quality, template=frame_template,
                           workers=workers or os.cpu_count() or 1, overwrite=overwrite, note=typer.echo)
    typer.echo(f"extracted {summary.extracted} videos ({summary.frames} frames), "
               f"skipped {summary.skipped} already done, failed {len(summary.failures)}")
    if summary.failures:
        typer.echo(f"{len(summary.failures)} videos failed; see {summary.failures_file}", err=True)
        raise typer.Exit(1)
