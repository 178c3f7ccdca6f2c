"""`videorec predict VIDEO --weights CKPT`: the top classes of one video."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def command(
    video: Path = typer.Argument(..., help="A video file or a frame folder."),
    weights: str = typer.Option(..., "--weights", help="A videorec checkpoint (or a released one with --arch/--num-classes)."),
    arch: Optional[str] = typer.Option(None, "--arch", "-a", help="Model name, for checkpoints that do not say it."),
    num_classes: Optional[int] = typer.Option(None, help="Class count, for checkpoints that do not say it."),
    classes: Optional[Path] = typer.Option(None, help="classes.txt (default: the names stored in the checkpoint)."),
    top_k: int = typer.Option(5, help="How many classes to print."),
    frame_template: str = typer.Option("img_{:05d}.jpg", help="Frame template, for a frame folder."),
) -> None:
    """Print the top-k classes (name and probability) of VIDEO, centre crop, one clip."""
    from ops.apps.predict import predict_video

    for name, prob in predict_video(video, weights, arch, num_classes, classes, top_k, frame_template):
        typer.echo(f"{prob * 100:6.2f}%  {name}")
