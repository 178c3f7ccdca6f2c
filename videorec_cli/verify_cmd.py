"""`videorec verify NAME --root DATA`: a model-zoo row's number on your copy of the dataset."""
from __future__ import annotations

import sys
from typing import Optional

import typer


def command(
    name: str = typer.Argument(..., help="Weights name (`videorec weights` lists them)."),
    root: Optional[str] = typer.Option(None, help="Your copy of the dataset (overrides the registry's root)."),
    dataset: Optional[str] = typer.Option(None, help="Dataset name or custom .json; default: the row's dataset."),
    test_list: Optional[str] = typer.Option(None, help="Test list file (default: the registry's test or val list)."),
    frame_template: Optional[str] = typer.Option(None, help="Frame file template, e.g. img_{:05d}.jpg."),
    output_dir: str = typer.Option("runs/verify", "--output-dir", "-o", help="Where the score files and card.json/card.md go."),
    batch_size: int = typer.Option(4, "--batch-size", "-b", help="Videos per batch (each with all its crops)."),
    workers: int = typer.Option(2, "--workers", "-j", help="Data-loading worker processes."),
    amp: bool = typer.Option(False, help="Mixed precision."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    nproc_per_node: int = typer.Option(1, "--nproc-per-node", help="Processes (DDP-sharded test; scores gathered in list order)."),
    master_port: int = typer.Option(29500, help="Port for the DDP rendezvous."),
) -> None:
    """Test NAME with its table row's whole protocol (all clips and crops), fuse the views and
    print ours vs the published top-1/top-5 (or mAP); write a reproduction card (JSON + Markdown)."""
    from ops.common.download import resolve_weights
    from ops.engine.distributed import launch, launched
    from ops.evaluation.verify import VerifySettings, verify

    if nproc_per_node > 1 and not launched():
        resolve_weights(name)  # downloaded once, before the processes start
        raise typer.Exit(launch(nproc_per_node, 1, 0, "127.0.0.1", master_port, sys.argv[1:]))
    verify(VerifySettings(name=name, output_dir=output_dir, dataset=dataset, root=root, test_list=test_list,
                          frame_template=frame_template, batch_size=batch_size, workers=workers, amp=amp,
                          device=device), say=typer.echo)
