"""`videorec ensemble-pkl FILES_OR_DIR`: fuse score files and report accuracy."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def command(
    inputs: List[str] = typer.Argument(..., help="Score files (.pkl) or folders of them (videorec or MSN/TDN format)."),
    fusion: str = typer.Option("softmax-mean", help="softmax-mean (mean of per-view probabilities) or logit-mean."),
    weight: List[float] = typer.Option([], "--weight", "-w", help="One weight per file, in order (repeat the flag), e.g. to fuse 8- and 16-frame models."),
    classes: Optional[Path] = typer.Option(None, help="classes.txt: class names for the rows of the CSV files (with -o)."),
    output_dir: Optional[Path] = typer.Option(None, "--output-dir", "-o", help="Write per_class_accuracy.csv and confusion_matrix.csv here (single-label scores)."),
) -> None:
    """Fuse views and models; print top-1, top-5, mean class accuracy (or mAP for multi-label scores)."""
    from dataset_configs import read_class_names
    from ops.common.errors import UserError
    from ops.common.fileio import check_output_dir
    from ops.evaluation.fusion import fuse, report, score_paths, write_report_files

    if classes is not None and output_dir is None:
        raise UserError("--classes names the rows of the per-class CSV files: add -o/--output-dir")
    if output_dir is not None:
        check_output_dir(output_dir, "output folder")
    names = read_class_names(classes) if classes else None
    paths = score_paths(inputs)
    fused = fuse(paths, fusion, weight or None)
    if output_dir is not None and fused.labels.ndim == 2:
        raise UserError("-o/--output-dir writes per-class accuracy and a confusion matrix, which need single-label "
                        "scores; these are multi-label (mAP): leave out -o")
    metrics = report(fused)
    typer.echo(f"fused {len(paths)} files, {fused.num_views} views, {len(fused.video_ids)} videos ({fusion})")
    typer.echo(" ".join(f"{k} {v:.2f}" for k, v in metrics.items()))
    if output_dir is not None:
        for path in write_report_files(fused, output_dir, names):
            typer.echo(f"wrote {path}")
