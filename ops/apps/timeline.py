"""Labels over time on a long video: per-window top-k as CSV and JSON, and a PNG of the top
classes' probabilities over time (`videorec predict --timeline`, `videorec stream -o`).

Two kinds of timeline:

* **windows** (clip models): a window of ``window`` seconds slides by ``stride`` seconds; each
  window is one clip, sampled inside the window as the model samples a video (its segments or
  frames, test mode), so each row is the model's prediction of that stretch alone.
* **causal** (stream models): the video goes through the model once, frame by frame; a row is
  reported every ``stride`` seconds and holds the prediction after every frame from 0 s to its
  ``end`` (its ``start`` is the previous report).

The files (``timeline.csv``, ``timeline.json``, ``timeline.png``) are written atomically.
"""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Sequence, Tuple

import numpy as np
import torch

from archs.registry import InputSpec
from ops.common.errors import UserError
from ops.common.fileio import write_figure, write_text_atomic
from ops.data.dataset import SamplingSettings
from ops.data.sources import SourceError

FILES = ("timeline.csv", "timeline.json", "timeline.png")
READ_CHUNK = 32  # frames decoded at a time for a causal pass

Classify = Callable[[torch.Tensor], np.ndarray]  # uint8 frames (T, H, W, 3) -> probabilities (K,)


@dataclass(frozen=True)
class Row:
    """One report: seconds ``start``..``end`` and the class probabilities ``probs`` (K,)."""

    start: float
    end: float
    probs: np.ndarray

    def top(self, k: int) -> List[Tuple[int, float]]:
        order = np.argsort(-self.probs, kind="stable")[:k]
        return [(int(i), float(self.probs[i])) for i in order]


@dataclass
class Timeline:
    rows: List[Row]
    class_names: Sequence[str]
    causal: bool
    settings: Dict[str, object]  # recorded in the JSON (video, model, runtime, window, stride, fps)

    def name(self, index: int) -> str:
        return self.class_names[index] if index < len(self.class_names) else str(index)


def window_bounds(duration: float, window: float, stride: float) -> List[Tuple[float, float]]:
    """(start, end) seconds of each window inside ``duration`` seconds; one window (the whole
    video) when it is shorter than ``window``."""
    if duration <= window:
        return [(0.0, duration)]
    count = int(math.floor((duration - window) / stride + 1e-9)) + 1
    return [(k * stride, k * stride + window) for k in range(count)]


def window_rows(classify: Classify, source, num_frames: int, fps: float, spec: InputSpec, window: float,
                stride: float) -> Iterator[Row]:
    """One row per window: a clip sampled inside the window (the model's test sampling)."""
    sampling = SamplingSettings.of(spec)
    for start, end in window_bounds(num_frames / fps, window, stride):
        first = min(int(round(start * fps)), num_frames - 1)
        stop = min(num_frames, max(int(round(end * fps)), first + 1))
        try:
            frames = source.read(first + sampling.indices(stop - first, None))
        except SourceError as exc:
            raise UserError(str(exc)) from None
        yield Row(start, end, classify(frames))


def resampled_frames(source, num_frames: int, fps: float, rate: float,
                     prepare: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[np.ndarray]:
    """The frames of ``source`` (``fps``) at ``rate`` frames per second, each (H, W, 3) uint8 after
    ``prepare`` (uint8 (T, H, W, 3) -> uint8 (T, H', W', 3), e.g. the test resize and crop)."""
    picks = np.unique(np.clip(np.round(np.arange(0, num_frames / fps, 1.0 / rate) * fps), 0, num_frames - 1))
    for lo in range(0, len(picks), READ_CHUNK):
        try:
            chunk = prepare(source.read(picks[lo:lo + READ_CHUNK].astype(np.int64)))
        except SourceError as exc:
            raise UserError(str(exc)) from None
        yield from chunk.cpu().numpy()


def causal_rows(predictions: Iterable) -> Iterator[Row]:
    """Rows of a stream's running predictions (``ops.apps.stream.Prediction``), each from the
    previous report to its own time."""
    previous = 0.0
    for pred in predictions:
        yield Row(previous, pred.seconds, pred.probs)
        previous = pred.seconds


def causal_timeline(predictions: Iterable, class_names: Sequence[str], settings: Dict[str, object]) -> Timeline:
    """The timeline of a stream's running predictions (see :func:`causal_rows`)."""
    return Timeline(list(causal_rows(predictions)), class_names, True, settings)


def top_classes(timeline: Timeline, count: int) -> List[int]:
    """The ``count`` classes of highest mean probability over the whole video."""
    mean = np.mean([row.probs for row in timeline.rows], axis=0)
    return [int(i) for i in np.argsort(-mean, kind="stable")[:count]]


def csv_text(timeline: Timeline, top_k: int) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["start", "end", *(f"{what}{r}" for r in range(1, top_k + 1) for what in ("class", "prob"))])
    for row in timeline.rows:
        cells = [c for i, p in row.top(top_k) for c in (timeline.name(i), repr(p))]
        writer.writerow([repr(row.start), repr(row.end), *cells])
    return out.getvalue()


def json_text(timeline: Timeline, top_k: int) -> str:
    doc = {
        "kind": "causal" if timeline.causal else "windows",
        **timeline.settings,
        "rows": [{"start": row.start, "end": row.end,
                  "top": [{"class": timeline.name(i), "index": i, "prob": p} for i, p in row.top(top_k)]}
                 for row in timeline.rows],
    }
    return json.dumps(doc, indent=1) + "\n"


def write_plot(timeline: Timeline, path: Path, count: int) -> None:
    """The probabilities of the top ``count`` classes over time (window centres, or report
    times of a causal timeline) as a PNG."""
    from matplotlib.figure import Figure

    times = [row.end if timeline.causal else (row.start + row.end) / 2 for row in timeline.rows]
    fig = Figure(figsize=(8, 3.5), dpi=100)
    ax = fig.add_subplot()
    for index in top_classes(timeline, count):
        ax.plot(times, [row.probs[index] for row in timeline.rows], marker=".", label=timeline.name(index))
    ax.set_xlabel("seconds")
    ax.set_ylabel("probability")
    ax.set_ylim(0, 1)
    ax.set_title(f"{Path(str(timeline.settings.get('video', ''))).name} "
                 f"({'causal stream' if timeline.causal else 'windows'})")
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    write_figure(fig, path)


def write_timeline(timeline: Timeline, out_dir: Path, top_k: int) -> List[Path]:
    """``timeline.csv``, ``timeline.json`` (per-row top-k) and ``timeline.png`` in ``out_dir``."""
    if not timeline.rows:
        raise UserError(f"{timeline.settings.get('video')}: no frames, no timeline")
    k = min(top_k, len(timeline.rows[0].probs))
    out_dir = Path(out_dir)
    paths = [out_dir / name for name in FILES]
    write_text_atomic(paths[0], csv_text(timeline, k))
    write_text_atomic(paths[1], json_text(timeline, k))
    write_plot(timeline, paths[2], k)
    return paths
