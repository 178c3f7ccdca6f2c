"""Frame samplers: pure functions of (frames, settings, clip index, random generator).

Every sampler returns 0-based frame indices, ``T * L`` of them (T segments or
frames, L = ``new_length`` consecutive frames per segment, segment-major), all in
``[0, num_frames - 1]``. Frame *files* are 1-based: index i is ``template.format(i + 1)``.

Rules (N frames, T segments, L new_length, tick = (N - L + 1) / T):

* **train** (TSN): if N - L + 1 >= T, segment k takes a uniform random offset in
  ``[k * avg, (k + 1) * avg)`` with avg = (N - L + 1) // T; otherwise the T
  offsets are spread evenly over the video (``floor(k * (N - L + 1) / T)``), so
  short videos still move forward in time.
* **val / test, clip i of n**: segment k takes ``floor(tick * (k + (i + 0.5) / n))``.
  With n = 1 that is the segment centre (TSN/TSM val); clip i of n samples each
  segment at the fixed fraction (i + 0.5) / n, so 10-clip testing is
  deterministic and clip i is the same in every run. Val and test share the rule,
  short videos included (N < T repeats frames evenly instead of frame 1 only).
* **twice** (TSM ``--twice-sample``): the T centres followed by the T segment starts
  ``floor(tick * k)`` (2T offsets).
* **dense** (I3D style): T frames at ``stride`` inside a window of ``T * stride``
  frames. Train: the window start is uniform in ``[0, N - window]``. Clip i of n:
  start = ``round(i * (N - window) / (n - 1))`` (n > 1) or the centred window (n = 1).
  Videos shorter than the window keep the frames in time order with the stride
  shrunk to ``N / T``: frame ``floor((k + f) * N / T)``, f uniform in [0, 1) for
  train and ``(i + 0.5) / n`` for clip i of n. (The reference repositories wrap
  round with ``% N`` instead, which scrambles the order or repeats one frame.)
"""
from __future__ import annotations

from typing import Optional

import numpy as np


def _expand(offsets: np.ndarray, num_frames: int, new_length: int) -> np.ndarray:
    """Each offset p -> p, p+1, ..., p+L-1, clamped to the last frame."""
    frames = offsets[:, None] + np.arange(new_length)[None, :]
    return np.clip(frames, 0, max(num_frames - 1, 0)).reshape(-1).astype(np.int64)


def segment_offsets(num_frames: int, num_segments: int, new_length: int = 1, *, train: bool = False,
                    clip_index: int = 0, num_clips: int = 1, rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """Start frame of each of the T segments (0-based), before ``new_length`` expansion."""
    span = max(num_frames - new_length + 1, 1)
    k = np.arange(num_segments)
    if train:
        avg = span // num_segments
        if avg > 0:
            rng = rng if rng is not None else np.random.default_rng()
            return k * avg + rng.integers(0, avg, size=num_segments)
        return (k * span) // num_segments
    if not 0 <= clip_index < num_clips:
        raise ValueError(f"clip_index must be in [0, {num_clips}), got {clip_index}")
    tick = span / num_segments
    return np.floor(tick * (k + (clip_index + 0.5) / num_clips)).astype(np.int64)


def segment_indices(num_frames: int, num_segments: int, new_length: int = 1, *, train: bool = False,
                    clip_index: int = 0, num_clips: int = 1, twice: bool = False,
                    rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """TSN segment sampling: (T * L,) indices, or (2 * T * L,) with ``twice``."""
    offsets = segment_offsets(num_frames, num_segments, new_length, train=train, clip_index=clip_index,
                              num_clips=num_clips, rng=rng)
    if twice and not train:
        span = max(num_frames - new_length + 1, 1)
        starts = np.floor(span / num_segments * np.arange(num_segments)).astype(np.int64)
        offsets = np.concatenate([offsets, starts])
    return _expand(offsets, num_frames, new_length)


def dense_indices(num_frames: int, num_frames_out: int, stride: int, *, train: bool = False,
                  clip_index: int = 0, num_clips: int = 1, rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """Dense (I3D) sampling: ``num_frames_out`` frames at ``stride``; short videos shrink the stride."""
    if not train and not 0 <= clip_index < num_clips:
        raise ValueError(f"clip_index must be in [0, {num_clips}), got {clip_index}")
    if train and rng is None:
        rng = np.random.default_rng()
    window = num_frames_out * stride
    if num_frames < window:  # in time order at stride N / T, never wrapping round
        fraction = rng.random() if train else (clip_index + 0.5) / num_clips
        step = max(num_frames, 1) / num_frames_out
        return np.floor((np.arange(num_frames_out) + fraction) * step).astype(np.int64).clip(0, max(num_frames - 1, 0))
    room = num_frames - window
    if train:
        start = int(rng.integers(0, room + 1))
    elif num_clips == 1:
        start = room // 2
    else:
        start = int(round(clip_index * room / (num_clips - 1)))
    return (start + stride * np.arange(num_frames_out)).astype(np.int64)


def sample_indices(num_frames: int, *, mode: str, num_segments: int, new_length: int = 1, sampling: str = "segment",
                   dense_stride: int = 8, clip_index: int = 0, num_clips: int = 1, twice: bool = False,
                   rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """Dispatch on ``sampling`` (segment | dense) and ``mode`` (train | val | test)."""
    if mode not in ("train", "val", "test"):
        raise ValueError(f"mode must be train, val or test, not {mode!r}")
    train = mode == "train"
    if sampling == "dense":
        return dense_indices(num_frames, num_segments * new_length, dense_stride, train=train,
                             clip_index=clip_index, num_clips=num_clips, rng=rng)
    if sampling != "segment":
        raise ValueError(f"sampling must be 'segment' or 'dense', not {sampling!r}")
    return segment_indices(num_frames, num_segments, new_length, train=train, clip_index=clip_index,
                           num_clips=num_clips, twice=twice, rng=rng)
