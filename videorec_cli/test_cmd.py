"""`videorec test DATASET --weights CKPT|NAME [--protocol NAME]`: multi-view testing, one score file per clip index."""
from __future__ import annotations

import sys
from typing import List, Optional

import typer

from ops.common.options import MODEL_OPTION_HELP
from ops.evaluation.protocols import ALIASES, list_protocols

PROTOCOL_NAMES = ", ".join(sorted([p.name for p in list_protocols()] + list(ALIASES)))


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
    weights: str = typer.Option(..., "--weights", help="Checkpoint: a videorec one (knows its model), a released one "
                                "(with --arch), or a name of `videorec weights` (downloaded; brings its model, "
                                "input and the table row's protocol)."),
    protocol: Optional[str] = typer.Option(None, "--protocol", help=f"Named test protocol (views, sampling, sizes): "
                                           f"{PROTOCOL_NAMES}; default: the --weights row's, else 1 clip x 1 centre "
                                           "crop. View flags override it."),
    arch: Optional[str] = typer.Option(None, "--arch", "-a", help="Model name, for checkpoints that do not say it."),
    model_option: List[str] = typer.Option([], "--model-option", "-m", help=MODEL_OPTION_HELP + " Default: as trained."),
    test_segments: Optional[int] = typer.Option(None, "--test-segments", help="Segments (or frames) at test time; default: as trained."),
    test_crops: Optional[int] = typer.Option(None, help="1 (centre), 3 (along the long side) or 10 (corners, centre and mirrors); default: the protocol's, else 1."),
    full_res: Optional[bool] = typer.Option(None, "--full-res/--no-full-res", help="3-crop testing with scale-size square crops (256x256), no centre cut."),
    dense_sample: Optional[bool] = typer.Option(None, "--dense-sample/--no-dense-sample", help="Dense (I3D-style) clips instead of TSN segments."),
    dense_stride: Optional[int] = typer.Option(None, "--dense-stride", help="Frame stride of dense clips; default: as trained."),
    twice_sample: Optional[bool] = typer.Option(None, "--twice-sample/--no-twice-sample", help="Two clips per segment set: centres and starts (TSM)."),
    clip_index: Optional[str] = typer.Option(None, help="Which temporal clip(s) of --num-clips to test: i, i,j,... or all (default)."),
    num_clips: Optional[int] = typer.Option(None, help="Temporal clips the video is divided into (e.g. 10); default: the protocol's, else 1."),
    batch_size: int = typer.Option(4, "--batch-size", "-b", help="Videos per batch (each with all its crops)."),
    workers: int = typer.Option(2, "--workers", "-j", help="Data-loading worker processes."),
    output_dir: str = typer.Option("runs/test", "--output-dir", "-o", help="Where scores_clip{i}of{n}.pkl go."),
    exits: bool = typer.Option(False, "--exits", help="Also store per-exit logits (for `videorec early-exit`)."),
    root: Optional[str] = typer.Option(None, help="Dataset root (overrides the registry)."),
    test_list: Optional[str] = typer.Option(None, help="Test list file (default: the registry's test or val list)."),
    frame_template: Optional[str] = typer.Option(None, help="Frame file template, e.g. img_{:05d}.jpg."),
    crop_size: Optional[int] = typer.Option(None, help="Crop size; default: the protocol's, else as trained."),
    scale_size: Optional[int] = typer.Option(None, help="Short side before cropping; default: the protocol's, else as trained (crop x 256/224 with --crop-size)."),
    decoder: str = typer.Option("auto", help="Video decoder: auto (the fastest usable; see `videorec doctor`), pyav, decord or torchcodec."),
    decode_device: str = typer.Option("cpu", help="Decode videos on cpu or cuda (torchcodec on NVDEC, in the main process: --workers 0)."),
    amp: bool = typer.Option(False, help="Mixed precision."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    nproc_per_node: int = typer.Option(1, "--nproc-per-node", help="Processes (DDP-sharded test; scores gathered in list order)."),
    master_port: int = typer.Option(29500, help="Port for the DDP rendezvous."),
) -> None:
    """Score every video of the test list for each clip index; print view-level top-1/top-5.

    The views come from a protocol: --protocol NAME, else the --weights catalog row's, else 1 clip x 1 centre crop; each view flag overrides it (and says so).
    """
    from ops.common.download import find_entry, resolve_weights
    from ops.common.options import given_options
    from ops.engine.config import DataSettings
    from ops.engine.distributed import launch, launched
    from ops.engine.tester import TestSettings, protocol_settings, run_test
    from ops.evaluation.protocols import resolve_protocol

    given = given_options({"--test-segments": test_segments}, model_option)
    flags = {"test_segments": test_segments, "num_clips": num_clips, "test_crops": test_crops, "full_res": full_res,
             "twice_sample": twice_sample, "dense_sample": dense_sample, "dense_stride": dense_stride,
             "crop_size": crop_size, "scale_size": scale_size}
    merged = resolve_protocol(find_entry(weights), protocol, flags)
    indices = clip_indices(clip_index or "all", merged.protocol.num_clips)
    if nproc_per_node > 1 and not launched():
        resolve_weights(weights)  # a catalog name is downloaded once, before the processes start
        raise typer.Exit(launch(nproc_per_node, 1, 0, "127.0.0.1", master_port, sys.argv[1:]))
    data = DataSettings(dataset=dataset, root=root, test_list=test_list, frame_template=frame_template, workers=workers,
                        decoder=decoder, decode_device=decode_device)
    fields = {**protocol_settings(data, merged, given), "clip_indices": indices}
    run_test(TestSettings(weights=weights, arch=arch, batch_size=batch_size, output_dir=output_dir, exits=exits,
                          amp=amp, device=device, **fields), say=typer.echo)
