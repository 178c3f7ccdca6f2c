"""Early exit on per-exit logits: fit confidence thresholds, trace accuracy vs GFLOPs.

A model with E exits (AdaFocusV2+: one per frame; TSN: the running mean of the
frame logits) gives logits (N, E, K) per video. A video leaves at the first exit k
whose confidence reaches the threshold ``T[k]``; the last exit takes everyone left.
Everything here is a pure function of numpy arrays, except :func:`per_exit_gmacs`,
which measures the cost of one exit on a model built on the meta device.

The protocol of AdaFocusV2's ``test_early_exit.py``:

* exit proportions ``q_k ∝ p^k`` (k = 1..E, normalised) for a budget knob p
  (0.5, 0.6, ... 3.9): p < 1 sends videos out early, p > 1 late;
* thresholds are fitted on one split (the train set, or a held-out part of val):
  at exit k, among the videos not yet gone, the ``floor(n q_k)`` most confident
  leave and ``T[k]`` is the confidence of the last of them (``+inf``: nobody
  leaves when that count is 0; ``T[E-1] = -inf``);
* they are applied to another split; the metric (top-1, or mAP for multi-label
  targets) is computed on the logits of the exit each video took, and the
  expected cost is ``sum_k share_k cost_k`` with ``cost_k = (k + 1) x`` the
  per-frame GFLOPs (exit k has seen k + 1 frames).

Confidence: ``softmax`` (max probability, our default), ``logit`` (max raw logit,
the reference's) or ``entropy`` (negative entropy of the softmax).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from ops.common.errors import UserError
from ops.common.options import GivenOptions
from ops.evaluation.metrics import mean_average_precision, softmax, topk_accuracy

CONFIDENCES = ("softmax", "logit", "entropy")
REFERENCE_PS = tuple(np.round(np.arange(0.5, 3.95, 0.1), 1))  # the reference's 35 operating points


def confidence(logits: np.ndarray, kind: str = "softmax") -> np.ndarray:
    """(..., K) logits -> (...) confidence of each prediction (higher = surer)."""
    logits = np.asarray(logits, dtype=np.float64)
    if kind == "logit":
        return logits.max(axis=-1)
    prob = softmax(logits, axis=-1)
    if kind == "softmax":
        return prob.max(axis=-1)
    if kind == "entropy":
        return (prob * np.log(np.clip(prob, 1e-30, None))).sum(axis=-1)
    raise ValueError(f"confidence must be one of {CONFIDENCES}, not {kind!r}")


def exit_proportions(p: float, num_exits: int) -> np.ndarray:
    """(E,) target share of videos leaving at each exit: ``q_k ∝ p^k``, k = 1..E."""
    if p <= 0:
        raise ValueError(f"p must be positive, not {p}")
    logq = np.arange(1, num_exits + 1) * np.log(p)
    q = np.exp(logq - logq.max())
    return q / q.sum()


def per_exit_gmacs(arch: str, num_exits: int, num_classes: int, crop_size: Optional[int] = None,
                   options: Optional[GivenOptions] = None, stored: Optional[Dict[str, object]] = None) -> float:
    """GMACs one more frame costs: a view of ``arch`` built with ``num_exits`` segments,
    profiled on the meta device (no weights, no compute), divided by ``num_exits``.
    ``options``: the user's model options (``-m``), checked against the model; ``stored``: the
    resolved options a score file recorded for ``arch`` (the user's win)."""
    from archs.profile import profile_model

    options = options or GivenOptions()
    name = options.check(arch)
    if options.values.get("num_segments", num_exits) != num_exits:
        raise UserError(f"the scores have {num_exits} exits but {options.flags['num_segments']} asks for "
                        f"{options.values['num_segments']}; drop it")
    built = {**(stored or {}), **options.values, "num_segments": num_exits}
    gmacs = profile_model(name, num_classes, crop_size, **built).gmacs
    if gmacs is None:
        raise UserError(f"{name}: its GMACs cannot be measured on the meta device; give --gflops-per-exit instead")
    return gmacs / num_exits


def exit_costs(gflops_per_exit: float, num_exits: int) -> np.ndarray:
    """(E,) GFLOPs of leaving at exit k: ``(k + 1) x`` the cost of one more frame."""
    return gflops_per_exit * np.arange(1, num_exits + 1, dtype=np.float64)


def descending_order(conf: np.ndarray) -> np.ndarray:
    """(E, N): for each exit, the videos from the most to the least confident."""
    return np.argsort(-np.asarray(conf), axis=0, kind="stable").T


def fit_thresholds(conf: np.ndarray, proportions: Sequence[float], order: Optional[np.ndarray] = None) -> np.ndarray:
    """Thresholds (E,) that send ``floor(n q_k)`` of the n fitting videos out at exit k.

    conf: (N, E) confidences of the fitting split. At each exit k < E-1 the most
    confident of the videos still in leave; ``T[k]`` is the confidence of the last
    one to leave (``+inf`` when none should); ``T[E-1] = -inf``. ``order``:
    :func:`descending_order` of ``conf``, when fitting many proportions.
    """
    conf = np.asarray(conf, dtype=np.float64)
    n, e = conf.shape
    q = np.asarray(proportions, dtype=np.float64)
    q = q / q.sum()
    thresholds = np.full(e, np.inf)
    thresholds[-1] = -np.inf
    order = descending_order(conf) if order is None else order
    still_in = np.ones(n, dtype=bool)
    for k in range(e - 1):
        leave = int(np.floor(n * q[k]))
        if leave == 0:
            continue
        leaving = order[k][still_in[order[k]]][:leave]
        thresholds[k] = conf[leaving[-1], k]
        still_in[leaving] = False
    return thresholds


def apply_thresholds(conf: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """(N,) exit index of each video: the first k with ``conf[:, k] >= T[k]`` (the last exit otherwise)."""
    hit = np.asarray(conf) >= np.asarray(thresholds)[None, :]
    hit[:, -1] = True
    return hit.argmax(axis=1)


def exited_logits(logits: np.ndarray, exits: np.ndarray) -> np.ndarray:
    """(N, E, K), (N,) -> (N, K): each video's logits at the exit it took."""
    return np.asarray(logits)[np.arange(len(exits)), exits]


def metric(scores: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 (labels (N,)) or mAP (multi-hot labels (N, K)), in percent."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        return mean_average_precision(scores, labels)
    return topk_accuracy(scores, labels, ks=(1,))[1]


def metric_name(labels: np.ndarray) -> str:
    return "mAP" if np.asarray(labels).ndim == 2 else "top1"


@dataclass
class Split:
    """Per-exit logits (N, E, K), labels and the confidences (N, E) of one split."""

    logits: np.ndarray
    labels: np.ndarray
    conf: np.ndarray

    @classmethod
    def make(cls, logits: np.ndarray, labels: np.ndarray, kind: str = "softmax") -> "Split":
        logits = np.asarray(logits, dtype=np.float32)
        return cls(logits, np.asarray(labels), confidence(logits, kind))

    @cached_property
    def order(self) -> np.ndarray:
        """(E, N) :func:`descending_order` of the confidences."""
        return descending_order(self.conf)

    @cached_property
    def correct(self) -> np.ndarray:
        """(N, E) whether each exit's top-1 class is the label (single-label splits)."""
        return self.logits.argmax(axis=2) == self.labels.reshape(-1, 1)

    def evaluate(self, thresholds: np.ndarray, costs: np.ndarray) -> Tuple[float, float, np.ndarray]:
        """(metric, expected GFLOPs, share of videos at each exit) under ``thresholds``."""
        exits = apply_thresholds(self.conf, thresholds)
        shares = np.bincount(exits, minlength=len(costs)) / max(len(exits), 1)
        if self.labels.ndim == 2:
            value = metric(exited_logits(self.logits, exits), self.labels)
        else:  # top-1 from the per-exit table: O(N) per operating point
            value = float(self.correct[np.arange(len(exits)), exits].mean() * 100.0) if len(exits) else 0.0
        return value, float(shares @ costs), shares


@dataclass
class OperatingPoint:
    """One point of the curve: thresholds fitted for ``p`` and their results on both splits.

    ``p`` is None for a static exit (every video leaves at exit ``static_exit``).
    """

    p: Optional[float]
    thresholds: np.ndarray
    fit_metric: float
    fit_gflops: float
    eval_metric: float
    eval_gflops: float
    eval_shares: np.ndarray
    static_exit: Optional[int] = None


def operating_point(fit: Split, evaluation: Split, thresholds: np.ndarray, costs: np.ndarray,
                    p: Optional[float] = None, static_exit: Optional[int] = None) -> OperatingPoint:
    fit_metric, fit_gflops, _ = fit.evaluate(thresholds, costs)
    eval_metric, eval_gflops, shares = evaluation.evaluate(thresholds, costs)
    return OperatingPoint(p, thresholds, fit_metric, fit_gflops, eval_metric, eval_gflops, shares, static_exit)


def curve(fit: Split, evaluation: Split, costs: np.ndarray, ps: Iterable[float] = REFERENCE_PS) -> List[OperatingPoint]:
    """Thresholds fitted on ``fit`` for each p, results on both splits (the reference's curve)."""
    e = len(costs)
    return [operating_point(fit, evaluation, fit_thresholds(fit.conf, exit_proportions(p, e), fit.order), costs,
                            p=float(p))
            for p in ps]


def static_points(fit: Split, evaluation: Split, costs: np.ndarray) -> List[OperatingPoint]:
    """Every video leaves at exit k, for each k (the no-early-exit baseline at k + 1 frames)."""
    e = len(costs)
    points = []
    for k in range(e):
        thresholds = np.full(e, np.inf)
        thresholds[k:] = -np.inf
        points.append(operating_point(fit, evaluation, thresholds, costs, static_exit=k))
    return points


def fine_ps(num: int = 200, low: float = 0.05, high: float = 20.0) -> np.ndarray:
    """A log-spaced grid of p, finer and wider than the reference's 0.5..3.9."""
    return np.geomspace(low, high, num)


def best_under_budget(fit: Split, evaluation: Split, costs: np.ndarray, budget_gflops: float,
                      ps: Optional[Iterable[float]] = None) -> Optional[OperatingPoint]:
    """The best operating point whose average cost stays within ``budget_gflops`` on the
    fitting split AND on the evaluation split (None if none does).

    Candidates: the reference's p grid, a finer log-spaced grid of p (0.05..20, 200
    values, 3% apart) and the static exits. "Best" is judged on the fitting split only (highest
    metric there, then the larger cost), so the evaluation labels never choose the
    point: its evaluation metric is an honest estimate. The evaluation split's
    confidences (not its labels) enter through the cost check.
    """
    grid = np.unique(np.concatenate([np.asarray(REFERENCE_PS, dtype=np.float64),
                                     fine_ps() if ps is None else np.asarray(list(ps), dtype=np.float64)]))
    candidates = curve(fit, evaluation, costs, grid) + static_points(fit, evaluation, costs)
    tolerance = 1e-9 * max(1.0, abs(budget_gflops))
    feasible = [c for c in candidates if max(c.fit_gflops, c.eval_gflops) <= budget_gflops + tolerance]
    if not feasible:
        return None
    return max(feasible, key=lambda c: (c.fit_metric, max(c.fit_gflops, c.eval_gflops)))


def holdout_split(n: int, fraction: float, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Random (fit, eval) row indices: ``fraction`` of n rows to fit thresholds, the rest to evaluate."""
    if not 0 < fraction < 1:
        raise ValueError(f"the held-out fraction must be in (0, 1), not {fraction}")
    order = np.random.default_rng(seed).permutation(n)
    cut = int(round(n * fraction))
    return np.sort(order[:cut]), np.sort(order[cut:])
