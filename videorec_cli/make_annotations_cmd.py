"""`videorec make-annotations`: list files and classes.txt from a dataset's official annotations."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ops.prep.annotations import AnnotationInputs, MediaLookup, read_annotations, write_annotations
from ops.prep.media import DEFAULT_TEMPLATE


def command(
    fmt: str = typer.Option(..., "--format", "-f", help="folder, sthv1, sthv2, kinetics, ucf101 or hmdb51."),
    media_dir: Path = typer.Option(..., help="Folder holding the frame folders or videos (folder format: <class>/<item>)."),
    media: str = typer.Option("frames", help="frames (rows 'path num_frames label') or videos (rows 'path label')."),
    root: Optional[Path] = typer.Option(None, help="Paths in the lists are relative to this (default: --media-dir)."),
    out: Optional[Path] = typer.Option(None, help="Where the lists and classes.txt go (default: --root)."),
    template: str = typer.Option(DEFAULT_TEMPLATE, help="Frame file names; only matching files are counted."),
    labels: Optional[Path] = typer.Option(None, help="sthv1: labels .csv; sthv2: labels .json; kinetics: optional label map."),
    train: Optional[Path] = typer.Option(None, help="sthv1/sthv2/kinetics: the train annotation file."),
    val: Optional[Path] = typer.Option(None, help="sthv1/sthv2/kinetics: the validation annotation file."),
    test: Optional[Path] = typer.Option(None, help="sthv2/kinetics (optional): the test annotation file (no labels: label 0)."),
    split_dir: Optional[Path] = typer.Option(None, help="ucf101: ucfTrainTestlist folder; hmdb51: testTrainMulti_7030_splits folder."),
    split: int = typer.Option(1, help="ucf101/hmdb51: official split 1, 2 or 3."),
    val_fraction: float = typer.Option(0.0, help="folder: fraction of each class held out as val (0: train.txt only)."),
    seed: int = typer.Option(0, help="folder: seed of the per-class train/val split."),
) -> None:
    """Write train.txt, val.txt (and test.txt) and classes.txt; missing or empty videos go to missing_<split>.txt."""
    inputs = AnnotationInputs(media_dir=media_dir, media=media, labels=labels, train=train, val=val, test=test,
                              split_dir=split_dir, split=split, val_fraction=val_fraction, seed=seed)
    annotations = read_annotations(fmt, inputs)
    root = root or media_dir
    classes_file, results = write_annotations(annotations, MediaLookup(media_dir, media, template),
                                              root=root, out=out or root)
    typer.echo(f"{len(annotations.classes)} classes -> {classes_file}")
    for r in results:
        note = f"; {r.missing} missing or empty, listed in {r.missing_file}" if r.missing else ""
        typer.echo(f"{r.split}: {r.written} entries -> {r.list_file}{note}")
