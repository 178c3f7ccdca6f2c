"""`videorec plot RUN_DIR... -o FILE.png`: training curves of one or several runs in one PNG."""
from __future__ import annotations

from pathlib import Path
from typing import List

import typer


def command(
    run_dirs: List[Path] = typer.Argument(..., help="Run folders of `videorec train` (each holds log.txt)."),
    output: Path = typer.Option(Path("curves.png"), "--output", "-o", help="PNG file to write."),
) -> None:
    """Draw loss, lr, train top-1 and val accuracy per epoch of each run into one PNG."""
    from ops.common.errors import UserError
    from ops.common.fileio import check_output_dir
    from ops.evaluation.curves import plot_curves, read_run, run_names

    if output.suffix.lower() != ".png":
        raise UserError(f"-o/--output {output}: the plot is a PNG; give a file name ending in .png")
    check_output_dir(output.parent, "output folder of -o/--output")
    runs = [read_run(d, name) for d, name in zip(run_dirs, run_names(run_dirs))]
    plot_curves(runs, output)
    for run in runs:
        epochs, _ = run.points("loss")
        val = next((k for k in ("val_top1", "val_mAP") if run.series.get(k)), None)
        best = f", best {val[4:]} {max(run.series[val].values()):.2f}" if val else ""
        typer.echo(f"{run.name}: {len(epochs)} epochs{best}")
    typer.echo(f"wrote {output}")
