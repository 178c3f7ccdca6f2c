"""`videorec early-exit`: accuracy (or mAP) vs GFLOPs of confidence-based early exit.

Reads score files with per-exit logits (``exit_logits`` (V, E, K), written by
``videorec test --exits``), fits thresholds on one split, applies them to another,
and writes the curve (CSV, JSON, PNG). See :mod:`ops.early_exit` for the protocol.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import List, Optional

import typer

from ops.early_exit import (CONFIDENCES, OperatingPoint, Split, best_under_budget, curve, exit_costs, holdout_split,
                            metric_name, static_points)
from ops.errors import UserError
from ops.scores import ScoreFile, read_scores


def exit_scores(path: str) -> ScoreFile:
    scores = read_scores(path)
    if scores.exit_logits is None:
        raise UserError(f"{path}: no per-exit logits (exit_logits); write the score file with `videorec test --exits`")
    return scores


def per_exit_gmacs(arch: str, num_exits: int, num_classes: int, crop_size: Optional[int], options: dict) -> float:
    """GMACs one more frame costs: a view of ``arch`` built with ``num_exits`` segments,
    measured on the meta device (no weights, no compute), divided by ``num_exits``."""
    import torch

    from archs.registry import create_model, measure_gmacs, view_shape
    from ops.trainer import builder_options

    options = builder_options(arch, {"num_segments": num_exits, **options})
    with torch.device("meta"):
        model = create_model(arch, num_classes, **options)
        return measure_gmacs(model, view_shape(model.input_spec, crop_size)) / num_exits


def point_row(point: OperatingPoint, name: str) -> dict:
    return {"kind": "static" if point.static_exit is not None else "dynamic", "p": point.p,
            "exit": point.static_exit, "eval_gflops": point.eval_gflops, f"eval_{name}": point.eval_metric,
            "fit_gflops": point.fit_gflops, f"fit_{name}": point.fit_metric}


def point_json(point: OperatingPoint, name: str) -> dict:
    """A JSON-safe record (thresholds +-inf as the strings "inf" / "-inf")."""
    out = point_row(point, name)
    out["thresholds"] = [float(t) if math.isfinite(t) else ("inf" if t > 0 else "-inf") for t in point.thresholds]
    out["eval_exit_shares"] = [float(s) for s in point.eval_shares]
    return out


def write_csv(path: Path, points: List[OperatingPoint], name: str) -> None:
    rows = [point_row(p, name) for p in points]
    lines = [",".join(rows[0])]
    for row in rows:
        lines.append(",".join("" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v)) for v in row.values()))
    path.write_text("\n".join(lines) + "\n")


def plot(path: Path, dynamic: List[OperatingPoint], static: List[OperatingPoint], name: str,
         best: Optional[OperatingPoint], budget: Optional[float], title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot([p.eval_gflops for p in dynamic], [p.eval_metric for p in dynamic], "o-", ms=3, label="early exit")
    ax.plot([p.eval_gflops for p in static], [p.eval_metric for p in static], "s--", ms=3, label="fixed exit (k+1 frames)")
    if budget is not None:
        ax.axvline(budget, color="grey", lw=0.8, ls=":", label=f"budget {budget:g} GFLOPs")
    if best is not None:
        ax.plot([best.eval_gflops], [best.eval_metric], "r*", ms=12, label="best within budget")
    ax.set_xlabel("GFLOPs per video (expected)")
    ax.set_ylabel(name)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def command(
    eval_scores: str = typer.Option(..., "--eval-scores", help="Score file to evaluate on (from `videorec test --exits`)."),
    fit_scores: Optional[str] = typer.Option(None, "--fit-scores", help="Score file to fit the thresholds on (the reference uses the train set); default: a held-out part of --eval-scores."),
    holdout: float = typer.Option(0.5, help="Without --fit-scores: this fraction of --eval-scores (random, --seed) fits the thresholds, the rest is evaluated."),
    seed: int = typer.Option(0, help="Seed of the --holdout split."),
    gflops_per_exit: Optional[float] = typer.Option(None, "--gflops-per-exit", help="GFLOPs (GMACs) one more exit (frame) costs; exit k costs (k+1) x this."),
    arch: Optional[str] = typer.Option(None, "--arch", "-a", help="Measure the per-exit cost of this model instead (meta device: view GMACs / exits)."),
    crop_size: Optional[int] = typer.Option(None, help="With --arch: input size; default: the model's."),
    model_option: List[str] = typer.Option([], "--model-option", "-m", help="With --arch: builder option key=value (e.g. patch_size=128, glance_arch=res50)."),
    budget_gflops: Optional[float] = typer.Option(None, "--budget-gflops", help="Also find the best thresholds whose average cost stays within this on both splits."),
    confidence: str = typer.Option("softmax", help=f"Exit criterion: {', '.join(CONFIDENCES)} (max softmax, max raw logit as the reference, negative entropy)."),
    output_dir: str = typer.Option("early_exit", "--output-dir", "-o", help="Folder for early_exit.csv, early_exit.json and early_exit.png."),
) -> None:
    """Early-exit curve (metric vs expected GFLOPs) from per-exit logits.

    Score files come from `videorec test --exits` (any model with forward_exits:
    AdaFocusV2+ exits after each frame, TSN averages the frames seen so far).
    Thresholds are fitted on --fit-scores for exit proportions q_k ∝ p^k
    (p = 0.5 ... 3.9) and applied to --eval-scores.
    """
    from videorec_cli.train_cmd import parse_options

    if confidence not in CONFIDENCES:
        raise typer.BadParameter(f"--confidence must be one of {', '.join(CONFIDENCES)}")
    if (gflops_per_exit is None) == (arch is None):
        raise typer.BadParameter("give exactly one of --gflops-per-exit X and --arch NAME")
    evaluation_file = exit_scores(eval_scores)
    logits, labels = evaluation_file.exit_logits, evaluation_file.labels
    if fit_scores is not None:
        fit_file = exit_scores(fit_scores)
        if fit_file.exit_logits.shape[1:] != logits.shape[1:] or fit_file.labels.ndim != labels.ndim:
            raise UserError(f"{fit_scores}: exits/classes {fit_file.exit_logits.shape[1:]} do not match "
                            f"{eval_scores}'s {logits.shape[1:]} (or one is multi-label and the other not)")
        fit = Split.make(fit_file.exit_logits, fit_file.labels, confidence)
        evaluation = Split.make(logits, labels, confidence)
        fit_source = fit_scores
    else:
        fit_rows, eval_rows = holdout_split(len(logits), holdout, seed)
        if len(fit_rows) == 0 or len(eval_rows) == 0:
            raise UserError(f"{eval_scores}: {len(logits)} videos are too few to hold out a fraction {holdout}")
        fit = Split.make(logits[fit_rows], labels[fit_rows], confidence)
        evaluation = Split.make(logits[eval_rows], labels[eval_rows], confidence)
        fit_source = f"{holdout:g} of {eval_scores} (seed {seed})"
    num_exits, num_classes = logits.shape[1:]
    if arch is not None:
        gflops_per_exit = per_exit_gmacs(arch, num_exits, num_classes, crop_size, parse_options(model_option))
    costs = exit_costs(gflops_per_exit, num_exits)
    name = metric_name(labels)

    dynamic = curve(fit, evaluation, costs)
    static = static_points(fit, evaluation, costs)
    best = best_under_budget(fit, evaluation, costs, budget_gflops) if budget_gflops is not None else None

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "early_exit.csv", dynamic + static, name)
    report = {"eval_scores": eval_scores, "fit": fit_source, "confidence": confidence, "metric": name,
              "num_exits": int(num_exits), "gflops_per_exit": float(gflops_per_exit),
              "cost_source": f"measured: {arch} {parse_options(model_option)}" if arch else "given",
              "exit_gflops": [float(c) for c in costs], "videos": {"fit": len(fit.labels), "eval": len(evaluation.labels)},
              "curve": [point_json(p, name) for p in dynamic], "static": [point_json(p, name) for p in static],
              "budget_gflops": budget_gflops, "best_under_budget": point_json(best, name) if best else None}
    (out / "early_exit.json").write_text(json.dumps(report, indent=1) + "\n")
    title = f"{Path(eval_scores).name}: thresholds from {Path(fit_scores).name if fit_scores else 'held-out val'} ({confidence})"
    plot(out / "early_exit.png", dynamic, static, name, best, budget_gflops, title)

    typer.echo(f"exits {num_exits}, {gflops_per_exit:.4f} GFLOPs per exit; last exit: {static[-1].eval_gflops:.3f} GFLOPs, "
               f"{name} {static[-1].eval_metric:.2f}")
    typer.echo(f"{'p':>5} {'GFLOPs':>8} {name:>7} {'fit GFLOPs':>10}")
    for p in dynamic:
        typer.echo(f"{p.p:>5.1f} {p.eval_gflops:>8.3f} {p.eval_metric:>7.2f} {p.fit_gflops:>10.3f}")
    if budget_gflops is not None:
        if best is None:
            typer.echo(f"budget {budget_gflops:g} GFLOPs: no thresholds fit (one exit costs {costs[0]:.3f})")
        else:
            how = f"p={best.p:.3f}" if best.p is not None else f"fixed exit {best.static_exit}"
            typer.echo(f"budget {budget_gflops:g} GFLOPs: {how}, {best.eval_gflops:.3f} GFLOPs (fit {best.fit_gflops:.3f}), "
                       f"{name} {best.eval_metric:.2f}")
    typer.echo(f"wrote {out / 'early_exit.csv'}, {out / 'early_exit.json'}, {out / 'early_exit.png'}")
