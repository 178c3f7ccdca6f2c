"""`videorec make-annotations`: list files and classes.txt from a dataset's official annotations."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from ops.common.fileio import check_output_dir
from ops.prep.annotations import AnnotationInputs, MediaLookup, read_annotations, write_annotations
from ops.prep.media import DEFAULT_TEMPLATE


def command(
    fmt: str = typer.Option(..., "--format", "-f", help="folder, sthv1, sthv2, kinetics, ucf101 or hmdb51."),
    media_dir: Path = typer.Option(..., help="Folder holding the frame folders or videos (folder format: <class>/<item>)."),
    media: str = typer.Option("frames", help="frames (rows 'path num_frames label') or videos (rows 'path label')."),
    root: Optional[Path] = typer.Option(None, help="Paths in the lists are relative to this (default: --media-dir)."),
    output_dir: Optional[Path] = typer.Option(None, "--output-dir", "-o",
                                              help="Where the lists and classes.txt go (default: --root)."),
    frame_template: str = typer.Option(DEFAULT_TEMPLATE, "--frame-template",
                                       help="Frame file names; only matching files are counted."),
    labels: Optional[Path] = typer.Option(None, help="sthv1: labels .csv; sthv2: labels .json; kinetics: optional label map."),
    train: Optional[Path] = typer.Option(None, help="sthv1/sthv2/kinetics: the train annotation file."),
    val: Optional[Path] = typer.Option(None, help="sthv1/sthv2/kinetics: the validation annotation file."),
    test: Optional[Path] = typer.Option(None, help="sthv2/kinetics (optional): the test annotation file (no labels: label 0)."),
    split_dir: Optional[Path] = typer.Option(None, help="ucf101: ucfTrainTestlist folder; hmdb51: testTrainMulti_7030_splits folder."),
    split: int = typer.Option(1, help="ucf101/hmdb51: official split 1, 2 or 3."),
    val_fraction: float = typer.Option(0.0, help="folder: fraction of each class held out as val (0: train.txt only)."),
    seed: int = typer.Option(0, help="folder: seed of the per-class train/val split."),
) -> None:
    """Write train.txt, val.txt (and test.txt) and classes.txt.

    Missing or empty frame folders and videos, and videos ffmpeg cannot decode, are
    left out and listed in missing_<split>.txt.
    """
    root = root or media_dir
    out = check_output_dir(output_dir or root, "output folder")
    inputs = AnnotationInputs(media_dir=media_dir, media=media, labels=labels, train=train, val=val, test=test,
                              split_dir=split_dir, split=split, val_fraction=val_fraction, seed=seed)
    annotations = read_annotations(fmt, inputs)
    lookup = MediaLookup(media_dir, media, frame_template, workers=os.cpu_count() or 1)
    classes_file, results = write_annotations(annotations, lookup, root=root, out=out)
    typer.echo(f"{len(annotations.classes)} classes -> {classes_file}")
    for r in results:
        counts = [f"{n} {what}" for n, what in ((r.missing - r.undecodable, "missing or empty"),
                                                 (r.undecodable, "undecodable")) if n]
        note = f"; {', '.join(counts)}, listed in {r.missing_file}" if r.missing else ""
        typer.echo(f"{r.split}: {r.written} entries -> {r.list_file}{note}")
