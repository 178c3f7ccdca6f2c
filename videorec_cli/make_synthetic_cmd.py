"""`videorec make-synthetic DST`: render the synthetic motion dataset (10 classes) as mp4 videos."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from ops.prep.synthetic import SyntheticSettings, make_synthetic


def command(
    dst: Path = typer.Argument(..., help="Dataset folder; videos go to DST/videos/<class>/<class>_<id>.mp4."),
    num_videos: int = typer.Option(300, help="Number of videos (the classes take turns)."),
    frames: int = typer.Option(32, help="Frames per video."),
    size: int = typer.Option(96, help="Width and height in pixels (even)."),
    fps: float = typer.Option(16, help="Frame rate written into the videos."),
    seed: int = typer.Option(0, help="Random seed: the same seed gives the same frames."),
    classes: Optional[str] = typer.Option(None, help="Comma list of classes to render (default: all 10), e.g. move_left,move_right,move_up,move_down."),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", help="Parallel encoders (default: the CPU count)."),
) -> None:
    """Render shapes whose class is their motion (move, rotate, grow/shrink, appear/disappear)."""
    chosen = {"classes": tuple(c.strip() for c in classes.split(","))} if classes else {}
    settings = SyntheticSettings(num_videos=num_videos, frames=frames, size=size, fps=fps, seed=seed, **chosen)
    paths = make_synthetic(dst, settings, workers=workers or os.cpu_count() or 1)
    typer.echo(f"wrote {len(paths)} videos under {Path(dst) / 'videos'}")
    typer.echo(f"next: videorec make-annotations --format folder --media videos --media-dir {Path(dst) / 'videos'} "
               f"--root {dst} --val-fraction 0.2")
