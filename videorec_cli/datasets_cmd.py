"""`videorec datasets`: the dataset registry as a table."""
from __future__ import annotations

import typer

from dataset_configs import list_datasets


def command() -> None:
    """List the known datasets: classes, frame template, flip rule, metric."""
    typer.echo(f"{'name':<12} {'classes':>7}  {'frames':<18} {'flip':<6} {'metric':<7} description")
    for cfg in list_datasets():
        metric = "mAP" if cfg.multi_label else "top-1"
        typer.echo(f"{cfg.name:<12} {cfg.num_classes:>7}  {cfg.frame_template:<18} {cfg.flip:<6} {metric:<7} {cfg.description}")
    typer.echo("A custom dataset: pass a .json file with the keys of dataset_configs.DatasetConfig as the dataset name.")
