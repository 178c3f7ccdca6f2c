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
                                          "(e.g. movinet_a0_stream_k600, downloaded); with --runtime onnx, a stream "
                                          "step of `videorec export --format onnx`. Without it: "
                                          "random weights, for latency tests."),
    runtime: str = typer.Option("torch", "--runtime", help="torch (PyTorch) or onnx (ONNX Runtime, an exported "
                                ".onnx stream step: its manifest gives the model, input, state and classes)."),
    model_option: List[str] = typer.Option([], "--model-option", "-m", help=MODEL_OPTION_HELP + " Default: as trained."),
    classes: Optional[Path] = typer.Option(None, help="classes.txt, one name per line (default: the checkpoint's "
                                           "names, else class indices)."),
    top_k: int = typer.Option(5, help="How many classes to print."),
    num_classes: Optional[int] = typer.Option(None, help="Class count, for checkpoints that do not say it (default: "
                                              "the classes file's, else 600 as in the released weights)."),
    fps: Optional[float] = typer.Option(None, help="Frame rate fed to the model (default: 25 / the model's "
                                        "frame stride, e.g. 5 for A0-A2)."),
    every: float = typer.Option(1.0, help="Print the running top-k every this many seconds of video."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Also write the reports as a timeline "
                                          "(timeline.csv, timeline.json, timeline.png) to this folder."),
    input_format: Optional[str] = typer.Option(None, help="ffmpeg input format, e.g. v4l2 for /dev/video0."),
    device: str = typer.Option("auto", help="auto, cpu or cuda (with onnx: ONNX Runtime's CUDA provider)."),
    jit: Optional[bool] = typer.Option(None, "--jit/--no-jit", help="Trace the per-frame step with TorchScript (the "
                                       "default with torch: same logits, about 1.7x faster on CPU); --no-jit runs "
                                       "the model eagerly."),
) -> None:
    """Feed VIDEO to a stream model one frame at a time and print the running top-k once per second.

    Frames are fed at the input size and normalisation the checkpoint (or exported file) was trained with.
    """
    from ops.apps.stream import default_fps, load_stream_runner, read_frames, stream_predictions
    from ops.apps.runtime import check_runtime_flags
    from ops.common.fileio import check_output_dir

    check_runtime_flags(runtime, weights, {"--arch": arch is not None, "--num-classes": num_classes is not None,
                                           "-m/--model-option": bool(model_option), "--jit/--no-jit": jit is not None},
                        "--classes, --top-k, --fps, --every, -o, --input-format and --device")
    if output is not None:
        check_output_dir(output, "timeline folder", "choose another with -o")
    runner = load_stream_runner(runtime, arch, weights, num_classes, classes, model_option, device)
    for note in runner.notes:
        typer.echo(note, err=True)
    model, spec, names = runner.model, runner.spec, runner.class_names
    if weights is None:
        typer.echo(f"warning: no --weights: {model.arch_name} has random weights, its predictions mean nothing "
                   "(fine for latency tests)", err=True)
    rate = fps or default_fps(spec)
    typer.echo(f"{model.arch_name}: {spec.crop_size}x{spec.crop_size} frames at {rate:g} fps ({runtime})", err=True)
    frames = read_frames(video, spec.crop_size, fps=rate, input_format=input_format)
    preds = []
    for pred in stream_predictions(model, frames, fps=rate, top_k=top_k, every=every, device=runner.device,
                                   compiled=runtime == "torch" and jit is not False, spec=spec):
        top = "  ".join(f"{p * 100:5.1f}% {names[i] if i < len(names) else i}" for i, p in pred.top)
        typer.echo(f"{pred.seconds:7.1f}s {pred.frames:6d}  {top}")
        if output is not None:  # a timeline keeps the reports; otherwise memory stays constant
            preds.append(pred)
    if output is not None:
        from ops.apps.timeline import causal_timeline, write_timeline

        timeline = causal_timeline(preds, names, {"video": video, "arch": model.arch_name, "weights": weights,
                                                  "runtime": runtime, "stride": every, "model_fps": rate})
        paths = write_timeline(timeline, output, top_k)
        typer.echo(f"wrote {', '.join(str(p) for p in paths)}", err=True)
