"""`videorec export (NAME | --weights CKPT) --format onnx -o FILE`: a model for other runtimes, checked."""
from __future__ import annotations

from typing import List, Optional

import typer



def command(
    name: Optional[str] = typer.Argument(None, help="Model name from `videorec models` (random weights unless "
                                         "--weights); with --weights, only for checkpoints that do not say it."),
    weights: Optional[str] = typer.Option(None, "--weights", help="A videorec checkpoint (its arch, options and "
                                          "classes are rebuilt), or a released one with NAME/--num-classes."),
    output: str = typer.Option(..., "--output", "-o", help="The file to write (exported-program: FILE.pt2); its "
                               "manifest goes to FILE.json beside it."),
    fmt: str = typer.Option("onnx", "--format", help="onnx | torchscript | exported-program."),
    num_classes: Optional[int] = typer.Option(None, help="Class count (default: the checkpoint's, else 400)."),
    model_option: List[str] = typer.Option([], "--model-option", "-m", help="Model builder option key=value "
                                           "(e.g. num_segments=16)."),
    batch_size: int = typer.Option(1, help="Batch of the sample input the file is traced and checked with."),
    frames: Optional[int] = typer.Option(None, "--frames", help="3D models: frames of the sample clip (default: "
                                         "the model's). 2D models: set segments with -m num_segments=N."),
    size: Optional[int] = typer.Option(None, help="Frame height and width (default: the model's crop size)."),
    dynamic_batch: bool = typer.Option(False, help="Leave the batch axis free."),
    dynamic_frames: bool = typer.Option(False, help="Leave the frame axis free (3D models)."),
    atol: float = typer.Option(1e-4, help="Largest |Δlogit| (and |Δstate|) allowed between the file and PyTorch."),
) -> None:
    """Export a model (a stream model as one frame step with its state as named inputs and outputs), run the
    written file on a sample and compare with PyTorch; beyond --atol nothing is written."""
    from ops.common.options import given_options
    from ops.apps.export import ExportSettings, build_model, export_model

    settings = ExportSettings(output=output, format=fmt, weights=weights, batch_size=batch_size, num_frames=frames,
                              size=size, dynamic_batch=dynamic_batch, dynamic_frames=dynamic_frames, atol=atol)
    model = build_model(name, weights, num_classes, given_options({}, model_option),
                        say=lambda line: typer.echo(line, err=True))
    result = export_model(model, settings, log=lambda line: typer.echo(line, err=True))
    typer.echo(f"{model.arch_name} -> {result.path} ({fmt}), manifest {result.manifest}")
