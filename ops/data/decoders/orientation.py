"""Display orientation: how a decoded frame is turned and mirrored to be upright, as players
show it (a phone video is stored sideways with a display matrix saying "rotate by 90").

An orientation is a 2x2 integer matrix ``S`` (a quarter-turn rotation, maybe with a mirror)
that maps a stored pixel's coordinates (x right, y down) to the displayed ones:
``x' = S[0,0] x + S[0,1] y``, ``y' = S[1,0] x + S[1,1] y``. It is read from FFmpeg's display
matrix (``AV_FRAME_DATA_DISPLAYMATRIX``); rotations between quarter turns are rounded to the
nearest one, as torchcodec and FFmpeg's own players do.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

UPRIGHT = np.eye(2, dtype=np.int64)


def from_display_matrix(matrix: Optional[Sequence[float]]) -> np.ndarray:
    """The orientation (2, 2) of FFmpeg's 3x3 display matrix, given as its 9 values in FFmpeg's
    order (``a b u c d v x y w``; the scale does not matter), or upright when there is none."""
    if matrix is None:
        return UPRIGHT.copy()
    a, b, _, c, d = (float(v) for v in matrix[:5])
    if abs(a) + abs(d) >= abs(b) + abs(c):  # no quarter turn: at most mirrors
        return np.array([[np.sign(a) or 1, 0], [0, np.sign(d) or 1]], dtype=np.int64)
    return np.array([[0, np.sign(c)], [np.sign(b), 0]], dtype=np.int64)


def _turn(cos: int, sin: int) -> np.ndarray:
    """The orientation of a counter-clockwise quarter-turn rotation given by its cosine and sine."""
    return np.array([[cos, sin], [-sin, cos]], dtype=np.int64)


def rotation(degrees: float) -> np.ndarray:
    """The orientation of a pure counter-clockwise rotation (rounded to quarter turns)."""
    turns = round(degrees / 90) % 4
    return _turn([1, 0, -1, 0][turns], [0, 1, 0, -1][turns])


def rotation_part(orientation: np.ndarray) -> np.ndarray:
    """The pure rotation FFmpeg reports for ``orientation`` (``av_display_rotation_get`` reads
    the turn of the first column and ignores mirroring), which libraries that turn frames by
    that angle apply."""
    return _turn(int(orientation[0, 0]), -int(orientation[1, 0]))


def turned_size(size: Sequence[int], orientation: np.ndarray) -> tuple:
    """(height, width) of a ``size`` (height, width) frame turned by ``orientation``."""
    height, width = (int(v) for v in size)
    return (width, height) if orientation[0, 0] == 0 else (height, width)


def undo_then(done: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """What still has to be applied to frames a library already turned by ``done`` so that
    they end up turned by ``wanted`` (orientations are orthogonal: the inverse is the transpose)."""
    return wanted @ done.T


def is_upright(orientation: np.ndarray) -> bool:
    return bool((orientation == UPRIGHT).all())


def orient(frames: torch.Tensor, orientation: np.ndarray) -> torch.Tensor:
    """Frames (U, H, W, C) turned upright by ``orientation``: (U, H', W', C), H' and W'
    swapped by a quarter turn. Works on any device."""
    if is_upright(orientation):
        return frames
    (sxx, sxy), (syx, syy) = orientation.tolist()
    if sxx == 0:  # a quarter turn: rows come from the stored columns
        frames = frames.transpose(1, 2)
        flips = [dim for dim, sign in ((1, syx), (2, sxy)) if sign < 0]
    else:
        flips = [dim for dim, sign in ((1, syy), (2, sxx)) if sign < 0]
    return (torch.flip(frames, flips) if flips else frames).contiguous()


def display_matrix_of(frame) -> Optional[np.ndarray]:
    """The display matrix (9,) a decoded PyAV frame carries, or None."""
    for data in frame.side_data:
        if data.type.name == "DISPLAYMATRIX":
            return np.frombuffer(bytes(data), dtype="<i4").astype(np.float64)
    return None

