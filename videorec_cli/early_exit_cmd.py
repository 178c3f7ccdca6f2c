"""`videorec early-exit`: accuracy (or mAP) vs GFLOPs of confidence-based early exit.

Reads score files with per-exit logits (``exit_logits`` (V, E, K), written by
``videorec test --exits``), fits thresholds on one split, applies them to another,
and writes the curve (CSV, JSON, PNG). See :mod:`ops.evaluation.early_exit` for the protocol
and :mod:`ops.evaluation.early_exit_report` for the outputs.
"""
from __future__ import annotations

from typing import List, Optional

import typer

from ops.common.options import MODEL_OPTION_HELP


def command(
    eval_scores: str = typer.Option(..., "--eval-scores", help="Score file to evaluate on (from `videorec test --exits`)."),
    fit_scores: Optional[str] = typer.Option(None, "--fit-scores", help="Score file to fit the thresholds on (the reference uses the train set); default: a held-out part of --eval-scores."),
    holdout: float = typer.Option(0.5, help="Without --fit-scores: this fraction of --eval-scores (random, --seed) fits the thresholds, the rest is evaluated."),
    seed: int = typer.Option(0, help="Seed of the --holdout split."),
    gflops_per_exit: Optional[float] = typer.Option(None, "--gflops-per-exit", help="GFLOPs (GMACs) one more exit (frame) costs; exit k costs (k+1) x this."),
    weights: Optional[str] = typer.Option(None, "--weights", help="A name of `videorec weights`: measure the cost of its model, options and crop (nothing is downloaded)."),
    arch: Optional[str] = typer.Option(None, "--arch", "-a", help="Measure the per-exit cost of this model (meta device: view GMACs / exits); default: the model the score file records."),
    crop_size: Optional[int] = typer.Option(None, help="Input size for the measured cost; default: the score file's, else the model's."),
    model_option: List[str] = typer.Option([], "--model-option", "-m", help=MODEL_OPTION_HELP + " For the measured cost (e.g. patch_size=128); default: the score file's."),
    budget_gflops: Optional[float] = typer.Option(None, "--budget-gflops", help="Also find the best thresholds whose average cost stays within this on both splits."),
    confidence: str = typer.Option("softmax", help="Exit criterion: softmax, logit or entropy (max softmax, max raw logit as the reference, negative entropy)."),
    output_dir: str = typer.Option("early_exit", "--output-dir", "-o", help="Folder for early_exit.csv, early_exit.json and early_exit.png."),
) -> None:
    """Early-exit curve (metric vs expected GFLOPs) from per-exit logits.

    Score files come from `videorec test --exits` (any model with forward_exits:
    AdaFocusV2+ exits after each frame, TSN averages the frames seen so far).
    Thresholds are fitted on --fit-scores for exit proportions q_k ∝ p^k
    (p = 0.5 ... 3.9) and applied to --eval-scores.
    """
    from ops.common.options import given_options
    from ops.evaluation.early_exit import CONFIDENCES
    from ops.evaluation.early_exit_report import early_exit_report

    if confidence not in CONFIDENCES:
        raise typer.BadParameter(f"--confidence must be one of {', '.join(CONFIDENCES)}")
    if gflops_per_exit is not None and (arch is not None or model_option or crop_size is not None):
        raise typer.BadParameter("--gflops-per-exit gives the cost; drop --arch/--crop-size/-m (they measure it)")
    if gflops_per_exit is not None and weights is not None:
        raise typer.BadParameter("--gflops-per-exit gives the cost; drop --weights (it names the model to measure)")
    if weights is not None and arch is not None:
        raise typer.BadParameter("--weights names the model; drop --arch")
    options = given_options({}, model_option)
    if weights is not None:
        from ops.engine.checkpoints import catalog_model

        arch, options, entry_crop = catalog_model(weights, options)
        crop_size = crop_size or entry_crop
    typer.echo(early_exit_report(eval_scores=eval_scores, fit_scores=fit_scores, holdout=holdout, seed=seed,
                                 confidence=confidence, gflops_per_exit=gflops_per_exit, arch=arch, crop_size=crop_size,
                                 model_options=options, budget_gflops=budget_gflops, output_dir=output_dir))
