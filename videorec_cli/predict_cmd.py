"""`videorec predict VIDEO --weights CKPT`: the top classes of one video."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ops.common.options import MODEL_OPTION_HELP


def command(
    video: Path = typer.Argument(..., help="A video file or a frame folder."),
    weights: str = typer.Option(..., "--weights", help="A videorec checkpoint (knows its model, classes and input); "
                                "a released one with --arch/--num-classes; or a name of `videorec weights` "
                                "(downloaded; brings its model, classes count and input)."),
    arch: Optional[str] = typer.Option(None, "--arch", "-a", help="Model name, for checkpoints that do not say it."),
    num_classes: Optional[int] = typer.Option(None, help="Class count, for checkpoints that do not say it."),
    model_option: List[str] = typer.Option([], "--model-option", "-m", help=MODEL_OPTION_HELP + " Default: as trained."),
    test_segments: Optional[int] = typer.Option(None, "--test-segments", help="Segments (or frames) of the clip; default: as trained."),
    classes: Optional[Path] = typer.Option(None, help="classes.txt (default: the names stored in the checkpoint)."),
    top_k: int = typer.Option(5, help="How many classes to print."),
    frame_template: str = typer.Option("img_{:05d}.jpg", "--frame-template", help="Frame file template, for a frame folder."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
) -> None:
    """Print the top-k classes (name and probability) of VIDEO, centre crop, one clip."""
    from ops.apps.predict import PredictSettings, predict_video
    from ops.common.options import given_options

    settings = PredictSettings(video=video, weights=weights, arch=arch, num_classes=num_classes, classes=classes,
                               top_k=top_k, frame_template=frame_template, device=device,
                               model_options=given_options({"--test-segments": test_segments}, model_option))
    for name, prob in predict_video(settings, say=lambda line: typer.echo(line, err=True)):
        typer.echo(f"{prob * 100:6.2f}%  {name}")
