"""`videorec test DATASET --weights CKPT`: multi-view testing, one score file per clip index."""
from __future__ import annotations

import sys
from typing import List, Optional

import typer

from ops.engine.config import DataSettings


def clip_indices(value: str, num_clips: int) -> List[int]:
    """'all' or a comma list of clip indices, each in [0, num_clips)."""
    if value == "all":
        return list(range(num_clips))
    try:
        out = [int(v) for v in value.split(",")]
    except ValueError:
        raise typer.BadParameter(f"--clip-index takes 'all' or integers, got {value!r}") from None
    bad = [i for i in out if not 0 <= i < num_clips]
    if bad:
        raise typer.BadParameter(f"--clip-index {bad[0]} is outside [0, {num_clips}) (set --num-clips)")
    return out


def command(
    dataset: str = typer.Argument(..., help="Dataset name or custom .json (gives the test list, root and classes)."),
    weights: str = typer.Option(..., "--weights", help="Checkpoint: a videorec one (knows its model) or a released one (with --arch)."),
    arch: Optional[str] = typer.Option(None, "--arch", "-a", help="Model name, for checkpoints that do not say it."),
    test_segments: Optional[int] = typer.Option(None, help="Segments (or frames) at test time; default: as trained."),
    test_crops: int = typer.Option(1, help="1 (centre), 3 (along the long side) or 10 (corners, centre and mirrors)."),
    full_res: bool = typer.Option(False, "--full-res", help="3-crop testing with scale-size square crops (256x256), no centre cut."),
    dense_sample: bool = typer.Option(False, "--dense-sample", help="Dense (I3D-style) clips instead of TSN segments."),
    twice_sample: bool = typer.Option(False, "--twice-sample", help="Two clips per segment set: centres and starts (TSM)."),
    clip_index: str = typer.Option("0", help="Which temporal clip(s) of --num-clips to test: i, i,j,... or all."),
    num_clips: int = typer.Option(1, help="Temporal clips the video is divided into (e.g. 10)."),
    batch_size: int = typer.Option(4, "--batch-size", "-b", help="Videos per batch (each with all its crops)."),
    workers: int = typer.Option(2, "--workers", "-j", help="Data-loading worker processes."),
    output_dir: str = typer.Option("runs/test", "--output-dir", "-o", help="Where scores_clip{i}of{n}.pkl go."),
    exits: bool = typer.Option(False, "--exits", help="Also store per-exit logits (for `videorec early-exit`)."),
    root: Optional[str] = typer.Option(None, help="Dataset root (overrides the registry)."),
    test_list: Optional[str] = typer.Option(None, help="Test list file (default: the registry's test or val list)."),
    frame_template: Optional[str] = typer.Option(None, help="Frame file template, e.g. img_{:05d}.jpg."),
    crop_size: Optional[int] = typer.Option(None, help="Crop size; default: as trained / the model's."),
    scale_size: Optional[int] = typer.Option(None, help="Short side before cropping; default crop x 256/224."),
    decoder: str = typer.Option("auto", help="Video decoder: auto (the fastest usable; see `videorec doctor`), pyav, decord or torchcodec."),
    decode_device: str = typer.Option("cpu", help="Decode videos on cpu or cuda (torchcodec on NVDEC, in the main process: --workers 0)."),
    amp: bool = typer.Option(False, help="Mixed precision."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    nproc_per_node: int = typer.Option(1, "--nproc-per-node", help="Processes (DDP-sharded test; scores gathered in list order)."),
    master_port: int = typer.Option(29500, help="Port for the DDP rendezvous."),
) -> None:
    """Score every video of the test list for each clip index; print view-level top-1/top-5."""
    from ops.engine.distributed import launch, launched
    from ops.engine.tester import TestSettings, run_test

    if nproc_per_node > 1 and not launched():
        raise typer.Exit(launch(nproc_per_node, 1, 0, "127.0.0.1", master_port, sys.argv[1:]))
    data = DataSettings(dataset=dataset, root=root, test_list=test_list, frame_template=frame_template,
                        crop_size=crop_size, scale_size=scale_size, dense_sample=dense_sample, workers=workers,
                        decoder=decoder, decode_device=decode_device)
    run_test(TestSettings(data=data, weights=weights, arch=arch, test_segments=test_segments, test_crops=test_crops,
                          full_res=full_res, twice_sample=twice_sample, clip_indices=clip_indices(clip_index, num_clips),
                          num_clips=num_clips, batch_size=batch_size, output_dir=output_dir, exits=exits, amp=amp,
                          device=device))
