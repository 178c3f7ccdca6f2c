"""`videorec demo`: the whole pipeline on the built-in synthetic dataset."""
from __future__ import annotations

from pathlib import Path

import typer

from ops.apps.demo_settings import DemoSettings

_DEFAULT = DemoSettings()


def command(
    output_dir: Path = typer.Option(_DEFAULT.output_dir, "--output-dir", "-o", help="Where data, runs and scores go (data is reused on re-runs)."),
    num_videos: int = typer.Option(_DEFAULT.num_videos, help="Synthetic videos to render (the four motion directions)."),
    epochs: int = typer.Option(_DEFAULT.epochs, help="Training epochs per model."),
    workers: int = typer.Option(_DEFAULT.workers, "--workers", "-j", help="Worker processes for ffmpeg and data loading."),
) -> None:
    """Render videos, extract frames, annotate, train TSN and TSM (MobileNetV2), test 2x3 views, fuse, print a table.

    The classes are the four directions of motion: every single frame looks alike
    across them, so TSN (an average over frames) stays near chance and TSM's
    temporal shift tells them apart.
    """
    from ops.apps.demo import format_table, run_demo

    rows = run_demo(DemoSettings(output_dir=output_dir, num_videos=num_videos, epochs=epochs, workers=workers),
                    say=typer.echo)
    typer.echo("")
    typer.echo(format_table(rows))
