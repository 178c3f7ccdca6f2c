"""The early-exit report: score files with per-exit logits in; the curve out as
``early_exit.csv``, ``early_exit.json`` and ``early_exit.png`` plus a text table.

Score files carry ``exit_logits`` (V, E, K), written by ``videorec test --exits``.
Thresholds are fitted on one split and applied to another (see :mod:`ops.evaluation.early_exit`
for the protocol); every file is written atomically.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from ops.evaluation.early_exit import (OperatingPoint, Split, best_under_budget, curve, exit_costs, holdout_split, metric_name,
                            per_exit_gmacs, static_points)
from ops.common.errors import UserError
from ops.common.fileio import check_output_dir, write_figure, write_text_atomic
from ops.common.options import GivenOptions
from ops.evaluation.scores import ScoreFile, read_scores


def exit_scores(path: str) -> ScoreFile:
    """A score file that has per-exit logits (a :class:`UserError` otherwise)."""
    scores = read_scores(path)
    if scores.exit_logits is None:
        raise UserError(f"{path}: no per-exit logits (exit_logits); write the score file with `videorec test --exits`")
    return scores


def load_splits(eval_scores: str, fit_scores: Optional[str], holdout: float, seed: int,
                confidence: str) -> Tuple[Split, Split, str]:
    """(fit, evaluation, description of the fitting data): thresholds are fitted on
    ``fit_scores``, or without it on a random ``holdout`` fraction of ``eval_scores``."""
    evaluation_file = exit_scores(eval_scores)
    logits, labels = evaluation_file.exit_logits, evaluation_file.labels
    if fit_scores is not None:
        fit_file = exit_scores(fit_scores)
        if fit_file.exit_logits.shape[1:] != logits.shape[1:] or fit_file.labels.ndim != labels.ndim:
            raise UserError(f"{fit_scores}: exits/classes {fit_file.exit_logits.shape[1:]} do not match "
                            f"{eval_scores}'s {logits.shape[1:]} (or one is multi-label and the other not)")
        return (Split.make(fit_file.exit_logits, fit_file.labels, confidence),
                Split.make(logits, labels, confidence), fit_scores)
    fit_rows, eval_rows = holdout_split(len(logits), holdout, seed)
    if len(fit_rows) == 0 or len(eval_rows) == 0:
        raise UserError(f"{eval_scores}: {len(logits)} videos are too few to hold out a fraction {holdout}")
    return (Split.make(logits[fit_rows], labels[fit_rows], confidence),
            Split.make(logits[eval_rows], labels[eval_rows], confidence), f"{holdout:g} of {eval_scores} (seed {seed})")


def point_row(point: OperatingPoint, name: str) -> dict:
    """One CSV row: kind, p or static exit, cost and metric on both splits."""
    return {"kind": "static" if point.static_exit is not None else "dynamic", "p": point.p,
            "exit": point.static_exit, "eval_gflops": point.eval_gflops, f"eval_{name}": point.eval_metric,
            "fit_gflops": point.fit_gflops, f"fit_{name}": point.fit_metric}


def point_json(point: OperatingPoint, name: str) -> dict:
    """A JSON-safe record (thresholds +-inf as the strings "inf" / "-inf")."""
    out = point_row(point, name)
    out["thresholds"] = [float(t) if math.isfinite(t) else ("inf" if t > 0 else "-inf") for t in point.thresholds]
    out["eval_exit_shares"] = [float(s) for s in point.eval_shares]
    return out


def csv_text(points: List[OperatingPoint], name: str) -> str:
    rows = [point_row(p, name) for p in points]
    lines = [",".join(rows[0])]
    for row in rows:
        lines.append(",".join("" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v)) for v in row.values()))
    return "\n".join(lines) + "\n"


def write_plot(path: Path, dynamic: List[OperatingPoint], static: List[OperatingPoint], name: str,
               best: Optional[OperatingPoint], budget: Optional[float], title: str) -> None:
    """Metric vs expected GFLOPs: the early-exit curve, the fixed exits and the best point within the budget."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4.2))
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
    write_figure(fig, path, dpi=120)


def summary_lines(dynamic: List[OperatingPoint], static: List[OperatingPoint], name: str, gflops_per_exit: float,
                  costs: np.ndarray, best: Optional[OperatingPoint], budget: Optional[float]) -> List[str]:
    """The summary lines: cost of the exits, one row per p, and the best point within the budget."""
    lines = [f"exits {len(costs)}, {gflops_per_exit:.4f} GFLOPs per exit; last exit: {static[-1].eval_gflops:.3f} GFLOPs, "
             f"{name} {static[-1].eval_metric:.2f}",
             f"{'p':>5} {'GFLOPs':>8} {name:>7} {'fit GFLOPs':>10}"]
    lines += [f"{p.p:>5.1f} {p.eval_gflops:>8.3f} {p.eval_metric:>7.2f} {p.fit_gflops:>10.3f}" for p in dynamic]
    if budget is not None:
        if best is None:
            lines.append(f"budget {budget:g} GFLOPs: no thresholds fit (one exit costs {costs[0]:.3f})")
        else:
            how = f"p={best.p:.3f}" if best.p is not None else f"fixed exit {best.static_exit}"
            lines.append(f"budget {budget:g} GFLOPs: {how}, {best.eval_gflops:.3f} GFLOPs (fit {best.fit_gflops:.3f}), "
                         f"{name} {best.eval_metric:.2f}")
    return lines


def early_exit_report(*, eval_scores: str, fit_scores: Optional[str], holdout: float, seed: int, confidence: str,
                      gflops_per_exit: Optional[float], arch: Optional[str], crop_size: Optional[int],
                      model_options: GivenOptions, budget_gflops: Optional[float], output_dir: str) -> str:
    """Fit, evaluate and write the curve to ``output_dir``; returns the text summary.

    The per-exit cost is ``gflops_per_exit``, or when that is None, measured by
    :func:`per_exit_gmacs` for ``arch`` (with ``crop_size`` and ``model_options``), else for
    the model, options and crop the score file records (``videorec test`` writes them).
    """
    check_output_dir(Path(output_dir))
    fit, evaluation, fit_source = load_splits(eval_scores, fit_scores, holdout, seed, confidence)
    num_exits, num_classes = evaluation.logits.shape[1:]
    if gflops_per_exit is None:
        recorded = read_scores(eval_scores).settings if arch is None else {}
        arch = arch or recorded.get("arch")
        if not arch:
            raise UserError(f"{eval_scores}: the score file does not say its model; give --arch or --gflops-per-exit")
        crop_size = crop_size or recorded.get("input_spec", {}).get("crop_size")
        gflops_per_exit = per_exit_gmacs(arch, num_exits, num_classes, crop_size, model_options,
                                         recorded.get("model_options"))
    costs = exit_costs(gflops_per_exit, num_exits)
    name = metric_name(evaluation.labels)

    dynamic = curve(fit, evaluation, costs)
    static = static_points(fit, evaluation, costs)
    best = best_under_budget(fit, evaluation, costs, budget_gflops) if budget_gflops is not None else None

    out = Path(output_dir)
    paths = [out / "early_exit.csv", out / "early_exit.json", out / "early_exit.png"]
    write_text_atomic(paths[0], csv_text(dynamic + static, name))
    report = {"eval_scores": eval_scores, "fit": fit_source, "confidence": confidence, "metric": name,
              "num_exits": int(num_exits), "gflops_per_exit": float(gflops_per_exit),
              "cost_source": f"measured: {arch} {model_options}" if arch else "given",
              "exit_gflops": [float(c) for c in costs], "videos": {"fit": len(fit.labels), "eval": len(evaluation.labels)},
              "curve": [point_json(p, name) for p in dynamic], "static": [point_json(p, name) for p in static],
              "budget_gflops": budget_gflops, "best_under_budget": point_json(best, name) if best else None}
    write_text_atomic(paths[1], json.dumps(report, indent=1) + "\n")
    title = f"{Path(eval_scores).name}: thresholds from {Path(fit_scores).name if fit_scores else 'held-out val'} ({confidence})"
    write_plot(paths[2], dynamic, static, name, best, budget_gflops, title)

    lines = summary_lines(dynamic, static, name, gflops_per_exit, costs, best, budget_gflops)
    lines.append(f"wrote {', '.join(str(p) for p in paths)}")
    return "\n".join(lines)
