"""`videorec predict VIDEO --weights CKPT`: the top classes of one video, or a timeline of a long one."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ops.common.options import MODEL_OPTION_HELP


def command(
    video: Path = typer.Argument(..., help="A video file or a frame folder."),
    weights: str = typer.Option(..., "--weights", help="A videorec checkpoint (knows its model, classes and input); "
                                "a released one with --arch/--num-classes; a name of `videorec weights` "
                                "(downloaded; brings its model, classes count and input); or with --runtime onnx "
                                "a file of `videorec export --format onnx`."),
    runtime: str = typer.Option("torch", "--runtime", help="torch (PyTorch, a checkpoint) or onnx (ONNX Runtime, an "
                                "exported .onnx file: its manifest gives the model, input and classes)."),
    arch: Optional[str] = typer.Option(None, "--arch", "-a", help="Model name, for checkpoints that do not say it."),
    num_classes: Optional[int] = typer.Option(None, help="Class count, for checkpoints that do not say it."),
    model_option: List[str] = typer.Option([], "--model-option", "-m", help=MODEL_OPTION_HELP + " Default: as trained."),
    test_segments: Optional[int] = typer.Option(None, "--test-segments", help="Segments (or frames) of the clip; default: as trained."),
    classes: Optional[Path] = typer.Option(None, help="classes.txt (default: the names stored in the weights)."),
    top_k: int = typer.Option(5, help="How many classes to print (per window with --timeline)."),
    frame_template: str = typer.Option("img_{:05d}.jpg", "--frame-template", help="Frame file template, for a frame folder."),
    device: str = typer.Option("auto", help="auto, cpu or cuda (with onnx: ONNX Runtime's CUDA provider)."),
    timeline: bool = typer.Option(False, "--timeline", help="Slide windows over the video and write per-window "
                                  "top-k (timeline.csv, timeline.json) and a plot (timeline.png) to -o DIR; a "
                                  "stream model makes one causal pass, reporting every --stride."),
    window: Optional[float] = typer.Option(None, "--window", help="Seconds per window, one clip each "
                                           "(clip models; default 2)."),
    stride: Optional[float] = typer.Option(None, "--stride", help="Seconds between windows or reports (default 1)."),
    fps: Optional[float] = typer.Option(None, "--fps", help="Frame rate of a frame folder (a video file says its own)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Folder for the timeline files."),
) -> None:
    """Print the top-k classes (name and probability) of VIDEO, centre crop, one clip; with
    --timeline, the top-k of each window over time."""
    from ops.apps.predict import (PredictSettings, TimelineSettings, check_timeline_flags, predict_timeline,
                                  predict_video)
    from ops.apps.runtime import check_runtime_flags
    from ops.common.errors import UserError
    from ops.common.options import given_options

    check_runtime_flags(runtime, weights, {"--arch": arch is not None, "--num-classes": num_classes is not None,
                                           "-m/--model-option": bool(model_option),
                                           "--test-segments": test_segments is not None},
                        "--classes, --top-k, --device, --frame-template and the --timeline flags")
    check_timeline_flags(timeline, {"--window": window is not None, "--stride": stride is not None,
                                    "--fps": fps is not None, "-o/--output": output is not None})
    if timeline and output is None:
        raise UserError("--timeline writes its files to a folder: pass -o DIR")
    settings = PredictSettings(video=video, weights=weights, arch=arch, num_classes=num_classes, classes=classes,
                               top_k=top_k, frame_template=frame_template, device=device, runtime=runtime,
                               model_options=given_options({"--test-segments": test_segments}, model_option))

    def say(line: str) -> None:
        typer.echo(line, err=True)

    if not timeline:
        for name, prob in predict_video(settings, say=say):
            typer.echo(f"{prob * 100:6.2f}%  {name}")
        return
    found, paths = predict_timeline(settings, TimelineSettings(output=output, window=window, stride=stride or 1.0,
                                                               fps=fps), say=say)
    for row in found.rows:
        top = "  ".join(f"{p * 100:5.1f}% {found.name(i)}" for i, p in row.top(top_k))
        typer.echo(f"{row.start:7.1f}-{row.end:.1f}s  {top}")
    say(f"wrote {', '.join(str(p) for p in paths)}")
