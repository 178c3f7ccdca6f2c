"""A procedurally rendered motion dataset: the class is in the motion, not in any one frame.

Each video shows one asymmetric shape (random shape, colour, size, orientation and
position) on a noisy background of a random colour. Its class is what the shape
does over time: move left/right/up/down, rotate clockwise/counter-clockwise, grow,
shrink, appear or disappear. Any single frame is consistent with several classes,
so a model must use time to do better than chance among them.

Video ``i`` is rendered from ``numpy.random.default_rng([seed, i])``: the same seed
gives the same frames, whatever the number of workers.
"""
from __future__ import annotations

import json
import os
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import ffmpeg
import numpy as np

from ops.common.errors import UserError
from ops.common.fileio import check_output_dir, write_text_atomic
from ops.prep.media import ffmpeg_exe
from ops.prep.workers import ChildProcesses, run_jobs

# Sorted, as `make-annotations --format folder` numbers the class folders.
CLASS_NAMES = (
    "appear", "disappear", "grow", "move_down", "move_left", "move_right", "move_up",
    "rotate_clockwise", "rotate_counterclockwise", "shrink",
)
# A shape is a signed "inside distance" in local units (> 0 inside); edges are anti-aliased from it.
Shape = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _boxes(*boxes) -> Shape:
    """A shape made of axis-aligned boxes (u0, u1, v0, v1) inside [-1, 1]^2."""
    def inside(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return np.max([np.minimum(np.minimum(u - u0, u1 - u), np.minimum(v - v0, v1 - v))
                       for u0, u1, v0, v1 in boxes], axis=0)
    return inside


def _wedge(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A right triangle: no rotational symmetry."""
    return np.minimum(np.minimum(1 - np.abs(u), 1 - np.abs(v)), (v - u) / np.sqrt(2))


# Shapes in local coordinates (u right, v down); none looks the same after a rotation below 360 degrees.
SHAPES: Dict[str, Shape] = {
    "L": _boxes((-1, -0.4, -1, 1), (-1, 1, 0.4, 1)),
    "T": _boxes((-1, 1, -1, -0.45), (-0.3, 0.3, -1, 1)),
    "F": _boxes((-1, -0.45, -1, 1), (-1, 1, -1, -0.5), (-1, 0.5, -0.2, 0.3)),
    "flag": _boxes((-1, -0.6, -1, 1), (-0.6, 1, -1, 0)),
    "wedge": _wedge,
}
SHAPE_RADIUS = np.sqrt(2.0)  # every shape lies within this radius of its centre (in local units)


@dataclass(frozen=True)
class SyntheticSettings:
    num_videos: int = 300
    frames: int = 32
    size: int = 96
    fps: float = 16
    seed: int = 0
    classes: Tuple[str, ...] = CLASS_NAMES

    def check(self) -> None:
        unknown = sorted(set(self.classes) - set(CLASS_NAMES))
        if unknown or not self.classes:
            raise UserError(f"make-synthetic: unknown class(es) {unknown}; choose from {', '.join(CLASS_NAMES)}")
        if self.num_videos < 1 or self.frames < 2:
            raise UserError(f"make-synthetic: need --num-videos >= 1 and --frames >= 2 (got {self.num_videos}, {self.frames})")
        if self.size < 16 or self.size % 2:
            raise UserError(f"make-synthetic: --size {self.size} must be even and >= 16 (yuv420p needs even sizes)")
        if self.fps <= 0:
            raise UserError(f"make-synthetic: --fps {self.fps} must be > 0")


def _pick_colours(rng: np.random.Generator) -> tuple:
    """Shape and background colours that differ clearly (mean channel difference > 60)."""
    while True:
        fg, bg = rng.integers(0, 256, size=(2, 3))
        if np.abs(fg - bg).mean() > 60:
            return fg.astype(np.float32), bg.astype(np.float32)


def _trajectory(class_name: str, rng: np.random.Generator, t: np.ndarray, size: int):
    """Per-frame centre (x, y), angle and scale (pixels per local unit), and opacity, for one class."""
    T = len(t)
    ones = np.ones(T)
    angle0 = rng.uniform(0, 2 * np.pi)
    if class_name in ("grow", "shrink"):
        small = rng.uniform(0.07, 0.10) * size
        big = small * rng.uniform(1.8, 2.4)
        scale = small + (big - small) * (t if class_name == "grow" else 1 - t)
    else:
        scale = rng.uniform(0.12, 0.18) * size * ones
    extent = scale.max() * SHAPE_RADIUS  # the shape never leaves the frame
    lo, hi = extent, size - extent
    cx, cy = rng.uniform(lo, hi), rng.uniform(lo, hi)
    x, y, angle, alpha = cx * ones, cy * ones, angle0 * ones, ones
    if class_name.startswith("move_"):
        travel = rng.uniform(0.45, 0.9) * (hi - lo)
        start = rng.uniform(lo, hi - travel)
        forward = class_name in ("move_right", "move_down")
        path = start + travel * (t if forward else 1 - t)
        if class_name in ("move_left", "move_right"):
            x = path
        else:
            y = path
    elif class_name.startswith("rotate_"):
        # Image y points down, so a growing angle turns clockwise on screen.
        turn = rng.uniform(0.5, 1.0) * np.pi * (1 if class_name == "rotate_clockwise" else -1)
        angle = angle0 + turn * t
    elif class_name in ("appear", "disappear"):
        start, length = rng.uniform(0.15, 0.5), rng.uniform(0.15, 0.35)
        ramp = np.clip((t - start) / length, 0, 1)
        alpha = ramp if class_name == "appear" else 1 - ramp
    return x, y, angle, scale, alpha


def render_video(class_name: str, rng: np.random.Generator, *, frames: int = 32, size: int = 96) -> np.ndarray:
    """One clip of ``class_name`` as uint8 RGB frames of shape (T, H, W, 3)."""
    if class_name not in CLASS_NAMES:
        raise ValueError(f"unknown class {class_name!r}")
    t = np.linspace(0.0, 1.0, frames)
    shape = SHAPES[sorted(SHAPES)[rng.integers(len(SHAPES))]]
    fg, bg = _pick_colours(rng)
    noise_sigma = rng.uniform(0, 10)
    x, y, angle, scale, alpha = (a[:, None, None] for a in _trajectory(class_name, rng, t, size))
    x, y, angle, scale, alpha = (a.astype(np.float32) for a in (x, y, angle, scale, alpha))
    grid = np.arange(size, dtype=np.float32) + 0.5
    dx, dy = grid[None, None, :] - x, grid[None, :, None] - y
    cos, sin = np.cos(angle), np.sin(angle)
    u, v = (cos * dx + sin * dy) / scale, (-sin * dx + cos * dy) / scale  # inverse rotation into shape coordinates
    cover = np.clip(0.5 + shape(u, v) * scale, 0, 1)  # about one pixel of soft edge
    weight = (cover * alpha)[..., None]
    noise = rng.normal(0, noise_sigma, size=(frames, size, size, 1)).astype(np.float32)
    video = bg * (1 - weight) + fg * weight + noise
    return np.clip(np.rint(video), 0, 255).astype(np.uint8)


def pick_encoder() -> str:
    """libx264 when this ffmpeg has it, else the built-in mpeg4 encoder."""
    listing = subprocess.run([ffmpeg_exe(), "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    return "libx264" if " libx264 " in listing else "mpeg4"


def encode_video(frames: np.ndarray, path: Path, *, fps: float, encoder: str,
                 children: Optional[ChildProcesses] = None) -> None:
    """Encode (T, H, W, 3) uint8 frames to ``path`` (mp4, yuv420p, bit-exact), through a temporary file.

    ``children`` lets a caller stop the encoder (the temporary file is then removed).
    """
    T, H, W, _ = frames.shape
    quality = {"crf": 18, "preset": "veryfast"} if encoder == "libx264" else {"q:v": 3}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    stream = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{W}x{H}", framerate=fps)
    out = stream.output(f"file:{tmp}", format="mp4", vcodec=encoder, pix_fmt="yuv420p", threads=1,
                        fflags="+bitexact", **{"flags:v": "+bitexact", "map_metadata": -1}, **quality)
    cmd = out.global_args("-hide_banner", "-loglevel", "error").overwrite_output().compile(cmd=ffmpeg_exe())
    try:
        code, stderr = (children or ChildProcesses()).run(cmd, input=np.ascontiguousarray(frames).tobytes())
        if code != 0:
            raise UserError(f"{path}: ffmpeg could not encode: {stderr.decode(errors='replace').strip()}")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def video_class(index: int, classes: Sequence[str] = CLASS_NAMES) -> str:
    """Classes take turns, so every class gets the same number of videos (up to one)."""
    return classes[index % len(classes)]


def video_path(dst: Path, index: int, classes: Sequence[str] = CLASS_NAMES) -> Path:
    name = video_class(index, classes)
    return Path(dst) / "videos" / name / f"{name}_{index:05d}.mp4"


def render_index(settings: SyntheticSettings, index: int) -> np.ndarray:
    """The frames of video ``index`` (deterministic in ``settings.seed`` and ``index``)."""
    rng = np.random.default_rng([settings.seed, index])
    return render_video(video_class(index, settings.classes), rng, frames=settings.frames, size=settings.size)


def make_synthetic(dst: Path, settings: SyntheticSettings, *, workers: int = 1) -> List[Path]:
    """Render and encode the dataset under ``dst/videos/<class>/``; writes ``dst/synthetic.json`` (the settings).

    On ``KeyboardInterrupt`` the encoders are stopped and their temporary files
    removed before it is re-raised: every video written is complete.
    """
    settings.check()
    dst = Path(dst)
    check_output_dir(dst, "dataset folder", fix="choose another DST or fix its permissions")
    for name in settings.classes:
        (dst / "videos" / name).mkdir(parents=True, exist_ok=True)
    encoder = pick_encoder()
    children = ChildProcesses()

    def one(index: int) -> Path:
        path = video_path(dst, index, settings.classes)
        encode_video(render_index(settings, index), path, fps=settings.fps, encoder=encoder, children=children)
        return path

    done = run_jobs(one, range(settings.num_videos), workers=workers, children=children, desc="make-synthetic",
                    unit="video")
    paths = [future.result() for _, future in sorted(done, key=lambda pair: pair[0])]
    record = {**asdict(settings), "encoder": encoder, "classes": list(settings.classes)}
    write_text_atomic(dst / "synthetic.json", json.dumps(record, indent=2) + "\n")
    return paths
