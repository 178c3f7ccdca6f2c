"""Score fusion across score files (clips x crops, or several models) and its report.

``softmax-mean`` (default, as the seeds' pkl_to_results): softmax over classes for
every view, mean over each file's views, then the weighted mean over files.
``logit-mean``: the same on raw logits. Files must hold the same videos with the
same labels in the same order; the first difference is reported.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ops.common.errors import UserError
from ops.evaluation.metrics import confusion, mean_average_precision, per_class_accuracy, softmax, topk_accuracy
from ops.evaluation.scores import ScoreFile, read_scores

FUSIONS = ("softmax-mean", "logit-mean")


def score_paths(inputs: Sequence[str]) -> List[Path]:
    """Files as given; a folder contributes its *.pkl files in name order."""
    paths: List[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(p.glob("*.pkl"))
            if not found:
                raise UserError(f"{p}: no .pkl score files in this folder")
            paths.extend(found)
        elif p.is_file():
            paths.append(p)
        else:
            raise UserError(f"{p}: no such score file or folder")
    return paths


def check_same_videos(reference: ScoreFile, other: ScoreFile) -> None:
    """Refuse files whose videos, labels or order differ, naming the first difference."""
    if len(reference.video_ids) != len(other.video_ids):
        raise UserError(f"{other.path}: {len(other.video_ids)} videos, but {reference.path} has {len(reference.video_ids)}")
    if reference.logits.shape[-1] != other.logits.shape[-1]:
        raise UserError(f"{other.path}: {other.logits.shape[-1]} classes, but {reference.path} has {reference.logits.shape[-1]}")
    legacy = reference.video_ids[0].startswith("#") or other.video_ids[0].startswith("#")
    if not legacy:
        for i, (a, b) in enumerate(zip(reference.video_ids, other.video_ids)):
            if a != b:
                raise UserError(f"{other.path}: video {i} is {b!r}, but {reference.path} has {a!r} (different list or order)")
    diff = np.nonzero(np.any((reference.labels != other.labels).reshape(len(reference.labels), -1), axis=1))[0]
    if len(diff):
        i = int(diff[0])
        raise UserError(f"{other.path}: label of video {i} ({reference.video_ids[i]}) differs from {reference.path}")


@dataclass
class Fused:
    video_ids: List[str]
    labels: np.ndarray
    scores: np.ndarray  # (V, K)
    num_views: int
    files: List[str]

    @cached_property
    def confusion_matrix(self) -> np.ndarray:
        """(K, K), rows: true class; computed once for the report and the CSV files."""
        return confusion(self.labels, self.scores.argmax(1), self.scores.shape[1])


def fuse(paths: Sequence[Path], fusion: str = "softmax-mean", weights: Optional[Sequence[float]] = None) -> Fused:
    """Fuse score files one at a time (memory: one file plus the running sum)."""
    if fusion not in FUSIONS:
        raise UserError(f"--fusion must be one of {FUSIONS}, not {fusion!r}")
    weights = list(weights) if weights else [1.0] * len(paths)
    if len(weights) != len(paths):
        raise UserError(f"{len(weights)} weights for {len(paths)} score files")
    if min(weights) < 0 or sum(weights) <= 0:
        raise UserError(f"--weight {' '.join(map(str, weights))}: weights must be >= 0 with a positive sum")
    reference: Optional[ScoreFile] = None
    total: Optional[np.ndarray] = None
    views = 0
    for path, weight in zip(paths, weights):
        scores = read_scores(path)
        if reference is None:
            reference = scores
        else:
            check_same_videos(reference, scores)
        per_view = softmax(scores.logits) if fusion == "softmax-mean" else scores.logits
        contribution = per_view.mean(axis=1) * weight
        total = contribution if total is None else total + contribution
        views += scores.logits.shape[1]
        del scores, per_view
    assert reference is not None and total is not None
    return Fused(reference.video_ids, reference.labels, total / sum(weights), views, [str(p) for p in paths])


def report(fused: Fused) -> Dict[str, float]:
    """top-1/top-5 and mean class accuracy (single-label) or mAP (multi-label)."""
    if fused.labels.ndim == 2:
        return {"mAP": mean_average_precision(fused.scores, fused.labels)}
    acc = topk_accuracy(fused.scores, fused.labels, (1, 5))
    per_class = per_class_accuracy(fused.confusion_matrix)
    return {"top1": acc[1], "top5": acc[5], "mean_class_acc": float(np.nanmean(per_class))}


def write_report_files(fused: Fused, out_dir: Path, class_names: Optional[List[str]] = None) -> List[Path]:
    """per_class_accuracy.csv and confusion_matrix.csv (rows: true class), atomically; single-label scores only.

    ``class_names`` (one per class) name the rows, else the class indices do.
    """
    from ops.common.fileio import write_text_atomic

    k = fused.scores.shape[1]
    if class_names is not None and len(class_names) != k:
        raise UserError(f"{len(class_names)} class names for scores of {k} classes (is --classes the right file?)")
    names = class_names if class_names is not None else [str(i) for i in range(k)]
    cm = fused.confusion_matrix
    acc = per_class_accuracy(cm)
    rows = ["class_index,class_name,videos,correct,accuracy"]
    rows += [f"{i},{names[i]},{int(cm[i].sum())},{int(cm[i, i])},{'' if np.isnan(acc[i]) else f'{acc[i]:.2f}'}" for i in range(k)]
    per_class_path, cm_path = out_dir / "per_class_accuracy.csv", out_dir / "confusion_matrix.csv"
    write_text_atomic(per_class_path, "\n".join(rows) + "\n")
    lines = ["true\\pred," + ",".join(names)] + [names[i] + "," + ",".join(map(str, cm[i])) for i in range(k)]
    write_text_atomic(cm_path, "\n".join(lines) + "\n")
    return [per_class_path, cm_path]
