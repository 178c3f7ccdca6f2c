"""`videorec stream VIDEO --arch movinet_a0_stream --weights CKPT`: running top-k, frame by frame."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ops.common.options import MODEL_OPTION_HELP


def command(
    video: str = typer.Argument(..., help="A video file, URL or capture device that ffmpeg opens "
                                "(see --input-format)."),
    arch: Optional[str] = typer.Option(None, "--arch", "-a", help="A stream model, movinet_a0_stream ... a5 (default: "
                                       "the checkpoint's, else movinet_a0_stream)."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Checkpoint: ours (knows its model, classes and "
                                          "input size), a released MoViNet-pytorch stream state dict, or a name of `videorec weights` "
                                          "(e.g. movinet_a0_stream_k600, downloaded). Without it: "
                                          "random weights, for latency tests."),
    model_option: List[str] = typer.Option([], "--model-option", "-m", help=MODEL_OPTION_HELP + " Default: as trained."),
    classes: Optional[Path] = typer.Option(None, help="classes.txt, one name per line (default: the checkpoint's "
                                           "names, else class indices)."),
    top_k: int = typer.Option(5, help="How many classes to print."),
    num_classes: Optional[int] = typer.Option(None, help="Class count, for checkpoints that do not say it (default: "
                                              "the classes file's, else 600 as in the released weights)."),
    fps: Optional[float] = typer.Option(None, help="Frame rate fed to the model (default: 25 / the model's "
                                        "frame stride, e.g. 5 for A0-A2)."),
    every: float = typer.Option(1.0, help="Print the running top-k every this many seconds of video."),
    input_format: Optional[str] = typer.Option(None, help="ffmpeg input format, e.g. v4l2 for /dev/video0."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    jit: bool = typer.Option(True, "--jit/--no-jit", help="Trace the per-frame step with TorchScript (same "
                             "logits, about 1.7x faster on CPU); --no-jit runs the model eagerly."),
) -> None:
    """Feed VIDEO to a stream model one frame at a time and print the running top-k once per second.

    Frames are fed at the input size and normalisation the checkpoint was trained with.
    """
    from dataset_configs import read_class_names
    from ops.apps.stream import default_fps, load_stream_model, read_frames, stream_predictions
    from ops.common.options import given_options
    from ops.engine.distributed import pick_device

    names = read_class_names(classes) if classes else []
    loaded = load_stream_model(arch, weights, num_classes, names, given_options({}, model_option))
    for note in loaded.notes:
        typer.echo(note, err=True)
    target = pick_device(0, device)
    model, spec, names = loaded.model.to(target), loaded.spec, loaded.class_names
    if weights is None:
        typer.echo(f"warning: no --weights: {model.arch_name} has random weights, its predictions mean nothing "
                   "(fine for latency tests)", err=True)
    rate = fps or default_fps(spec)
    typer.echo(f"{model.arch_name}: {spec.crop_size}x{spec.crop_size} frames at {rate:g} fps", err=True)
    frames = read_frames(video, spec.crop_size, fps=rate, input_format=input_format)
    for pred in stream_predictions(model, frames, fps=rate, top_k=top_k, every=every, device=str(target),
                                   compiled=jit, spec=spec):
        top = "  ".join(f"{p * 100:5.1f}% {names[i] if i < len(names) else i}" for i, p in pred.top)
        typer.echo(f"{pred.seconds:7.1f}s {pred.frames:6d}  {top}")
