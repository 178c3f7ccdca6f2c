"""`videorec extract-features LIST_OR_VIDEO --weights CKPT`: pooled features per video or window, in shards."""
from __future__ import annotations

from typing import List, Optional

import typer



def command(
    source: str = typer.Argument(..., help="A list file (path [num_frames] label per line) or one video / frame "
                                 "folder."),
    weights: Optional[str] = typer.Option(None, "--weights", help="A videorec checkpoint (or a released one with "
                                          "--arch/--num-classes)."),
    arch: Optional[str] = typer.Option(None, "--arch", "-a", help="Model name: for checkpoints that do not say it, "
                                       "or without --weights random weights (tests)."),
    num_classes: Optional[int] = typer.Option(None, help="Class count (default: the checkpoint's, else 400)."),
    model_option: List[str] = typer.Option([], "--model-option", "-m", help="Model builder option key=value."),
    output_dir: str = typer.Option("features", "--output-dir", "-o", help="Folder of the shards "
                                   "(features_00000.npz ...) and bad_videos.txt."),
    root: Optional[str] = typer.Option(None, help="Folder the list's paths are relative to (default: the list's)."),
    frame_template: str = typer.Option("img_{:05d}.jpg", help="Frame file template of frame folders."),
    video_ext: str = typer.Option("", help="Extension appended to list paths that have none (e.g. .mp4)."),
    window: Optional[float] = typer.Option(None, help="One clip per window of this many seconds (default: one "
                                           "clip per video)."),
    stride: Optional[float] = typer.Option(None, help="Seconds between window starts (default: --window)."),
    fps: Optional[float] = typer.Option(None, help="Frame rate of the frames (default: the video's; frame folders "
                                        "need it for --window)."),
    crop_size: Optional[int] = typer.Option(None, help="Crop size (default: the model's)."),
    shard_size: int = typer.Option(256, help="Videos per shard file."),
    batch_size: int = typer.Option(8, "--batch-size", "-b", help="Clips per forward pass."),
    workers: int = typer.Option(2, "--workers", "-j", help="Decoding processes."),
    device: str = typer.Option("auto", help="auto | cpu | cuda."),
) -> None:
    """Write forward_features of every video (or window) in shards; finished shards are skipped on a rerun and
    unreadable videos listed in bad_videos.txt."""
    from ops.common.options import given_options
    from ops.apps.export import build_model
    from ops.apps.features import REPORT_NAME, FeatureSettings, extract_features

    options = given_options({}, model_option)
    model = build_model(arch, weights, num_classes, options, say=typer.echo)
    settings = FeatureSettings(source=source, output_dir=output_dir, root=root, frame_template=frame_template,
                               video_ext=video_ext, window=window, stride=stride, fps=fps, crop_size=crop_size,
                               shard_size=shard_size, batch_size=batch_size, workers=workers, device=device,
                               model={"arch": model.arch_name, "weights": weights, "options": dict(model.model_options)})
    paths = extract_features(model, settings)
    typer.echo(f"{len(paths)} shard(s) in {output_dir} (unreadable videos, if any: {output_dir}/{REPORT_NAME})")
