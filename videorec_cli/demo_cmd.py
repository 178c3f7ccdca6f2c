"""`videorec demo`: the whole pipeline on the built-in synthetic dataset."""
from __future__ import annotations

from pathlib import Path

import typer


def command(
    output_dir: Path = typer.Option(Path("demo_run"), "--output-dir", "-o", help="Where data, runs and scores go (data is reused on re-runs)."),
    num_videos: int = typer.Option(300, help="Synthetic videos to render (10 motion classes)."),
    epochs: int = typer.Option(12, help="Training epochs per model."),
    workers: int = typer.Option(2, "--workers", "-j", help="Worker processes for ffmpeg and data loading."),
) -> None:
    """Render videos, extract frames, annotate, train TSN and TSM (MobileNetV2), test 2x3 views, fuse, print a table."""
    from ops.demo import DemoSettings, format_table, run_demo

    rows = run_demo(DemoSettings(output_dir=output_dir, num_videos=num_videos, epochs=epochs, workers=workers),
                    say=typer.echo)
    typer.echo("")
    typer.echo(format_table(rows))
