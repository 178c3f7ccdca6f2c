"""`videorec extract-features`: pooled features (``model.forward_features``) of videos, in shards.

Each video of a list file (or one video / frame folder) gives one clip sampled over the whole
video as validation does (the model's segments or frames, centre crop), or with ``window``
one clip per window of ``window`` seconds every ``stride`` seconds. Clips go through
``forward_features`` in batches; the rows (one per clip) are written in shards of
``shard_size`` videos, ``OUTPUT_DIR/features_00000.npz`` ...::

    ids       (R,) str      the list-file path of each row's video
    rows      (R,) int64    its row in the list (0-based, in list order)
    labels    (R,) int64    its first label (-1 for a single video)
    frames    (R, 2) int64  the window [start, end) in decoded frames
    fps       (R,)  float64 the frame rate windows were measured with (nan: whole videos of frame folders)
    features  (R, ...) float32  what ``forward_features`` returns per clip ((D,) by the model contract)
    settings  ()  str       JSON: the model, its input spec and these settings

Each shard is written atomically; a rerun skips the shards already written (with the same
settings: other settings are refused, not mixed). Under a distributed launcher each rank
writes the shards ``rank, rank + world, ...``. Unreadable videos are left out, listed in
each shard's ``bad`` and in ``OUTPUT_DIR/bad_videos.txt``; they do not stop the run.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from archs.registry import InputSpec
from ops.common.errors import UserError
from ops.common.fileio import atomic_open, check_output_dir, write_report
from ops.common.runlog import progress
from ops.data.records import VideoRecord, read_list_file
from ops.data.dataset import SamplingSettings
from ops.data.sources import VIDEO_EXTENSIONS, SourceError, open_source, resolve_path, video_fps
from ops.data.transforms import ClipTransform
from ops.engine.distributed import DistInfo, gather_objects, init_distributed, shard

REPORT_NAME = "bad_videos.txt"


@dataclass
class FeatureSettings:
    """What to extract. ``source``: a list file (``.txt``/``.csv``) or one video / frame folder.

    root: folder the list's paths are relative to (default: the list's folder).
    window / stride: seconds (stride defaults to the window); None: one clip per video.
    fps: frame rate of the decoded frames (default: the video's; needed for frame folders with windows).
    """

    source: str
    output_dir: str
    root: Optional[str] = None
    frame_template: str = "img_{:05d}.jpg"
    video_ext: str = ""
    window: Optional[float] = None
    stride: Optional[float] = None
    fps: Optional[float] = None
    crop_size: Optional[int] = None
    shard_size: int = 256
    batch_size: int = 8
    workers: int = 2
    device: str = "auto"
    model: Dict[str, object] = field(default_factory=dict)  # arch, weights, options: recorded in each shard


def is_list_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in (".txt", ".csv", ".lst")


def read_records(settings: FeatureSettings) -> Tuple[List[VideoRecord], str]:
    """The videos (list order) and the root their paths are relative to."""
    path = Path(settings.source)
    if is_list_file(path):
        return read_list_file(path), settings.root if settings.root is not None else str(path.parent)
    if not path.exists():
        raise UserError(f"{path}: no such list file, video or frame folder")
    return [VideoRecord(str(path), None, (-1,))], ""


def feature_spec(spec: InputSpec, crop_size: Optional[int]) -> InputSpec:
    """The model's spec with ``crop_size`` (and the matching 256/224 scale) when given."""
    if crop_size is None:
        return spec
    return spec.replace(crop_size=crop_size, scale_size=crop_size * 256 // 224)


def windows(num_frames: int, fps: Optional[float], window: Optional[float],
            stride: Optional[float]) -> List[Tuple[int, int]]:
    """Frame ranges [start, end): the whole video, or ``window`` seconds every ``stride`` seconds
    (one shorter window when the video is shorter than one)."""
    if window is None:
        return [(0, num_frames)]
    if not fps:
        raise SourceError("no frame rate known for windows; pass --fps")
    length = max(1, round(window * fps))
    step = max(1, round((stride or window) * fps))
    last = max(num_frames - length, 0)
    return [(start, min(start + length, num_frames)) for start in range(0, last + 1, step)]


class FeatureClips(torch.utils.data.Dataset):
    """Item i: the clips of video i, one per window::

        {"clips": uint8 (W, C, T, H, W), "frames": (W, 2) int64, "fps": float, "row": i, "bad": str}

    An unreadable video gives no clips and its ``"path<TAB>reason"`` in ``bad``.
    """

    def __init__(self, records: Sequence[VideoRecord], root: str, spec: InputSpec, settings: FeatureSettings) -> None:
        self.records, self.root, self.spec, self.settings = list(records), root, spec, settings
        self.transform = ClipTransform.of(spec, "val")
        self.sampling = SamplingSettings.of(spec, "val")

    def __len__(self) -> int:
        return len(self.records)

    def indices(self, start: int, end: int) -> np.ndarray:
        """The model's frames of window [start, end), sampled as validation samples a video."""
        return start + self.sampling.indices(end - start, None)

    def __getitem__(self, row: int) -> dict:
        record = self.records[row]
        path = resolve_path(self.root, record.path, self.settings.video_ext)
        empty = torch.zeros(0, 3, self.spec.num_frames, self.spec.crop_size, self.spec.crop_size, dtype=torch.uint8)
        try:
            source = open_source(path, self.settings.frame_template, record.num_frames)
            fps = self.settings.fps or (video_fps(path) if path.suffix.lower() in VIDEO_EXTENSIONS else None)
            ranges = windows(source.num_frames, fps, self.settings.window, self.settings.stride)
            clips = [self.transform(source.read(self.indices(*r)), record.labels)[0] for r in ranges]
        except SourceError as exc:
            return {"clips": empty, "frames": np.zeros((0, 2), np.int64), "fps": math.nan, "row": row,
                    "bad": f"{path}\t{exc}"}
        return {"clips": torch.cat(clips), "frames": np.asarray(ranges, np.int64).reshape(-1, 2),
                "fps": float(fps) if fps else math.nan, "row": row, "bad": ""}


def shard_path(out_dir: Path, index: int) -> Path:
    return out_dir / f"features_{index:05d}.npz"


def shard_settings(path: Path) -> str:
    with np.load(path, allow_pickle=False) as data:
        return str(data["settings"])


@torch.no_grad()
def clip_features(model: nn.Module, clips: torch.Tensor, transform: ClipTransform, batch_size: int,
                  device: torch.device) -> np.ndarray:
    """``forward_features`` of uint8 clips (W, C, T, H, W), ``batch_size`` at a time -> float32 (W, ...)."""
    parts = [model.forward_features(transform.normalize(clips[i:i + batch_size].to(device))).float().cpu()
             for i in range(0, len(clips), batch_size)]
    return torch.cat(parts).numpy()


def write_shard(path: Path, items: List[dict], features: List[np.ndarray], records: Sequence[VideoRecord],
                settings_json: str) -> None:
    """One shard (see the module docstring), atomically."""
    good = [(item, feats) for item, feats in zip(items, features) if not item["bad"]]
    rows = np.concatenate([np.full(len(f), item["row"], np.int64) for item, f in good]) if good else np.zeros(0, np.int64)
    feats = np.concatenate([f for _, f in good]) if good else np.zeros((0,), np.float32)
    with atomic_open(path, "wb") as fh:
        np.savez(fh, ids=np.asarray([records[r].path for r in rows], dtype=str), rows=rows,
                 labels=np.asarray([records[r].labels[0] for r in rows], np.int64),
                 frames=np.concatenate([item["frames"] for item, _ in good]) if good else np.zeros((0, 2), np.int64),
                 fps=np.concatenate([np.full(len(f), item["fps"]) for item, f in good]) if good else np.zeros(0),
                 features=feats, settings=np.asarray(settings_json),
                 bad=np.asarray([item["bad"] for item in items if item["bad"]], dtype=str))


def extract_features(model: nn.Module, settings: FeatureSettings, info: Optional[DistInfo] = None) -> List[Path]:
    """Write this rank's missing shards; returns every shard path of the run (see the module docstring).

    ``model``: any model with ``forward_features`` and ``input_spec`` (eval mode is set here).
    """
    if not hasattr(model, "forward_features"):
        raise UserError(f"{getattr(model, 'arch_name', type(model).__name__)} has no forward_features")
    if settings.shard_size < 1 or settings.batch_size < 1:
        raise UserError("--shard-size and --batch-size must be >= 1")
    if settings.stride is not None and settings.window is None:
        raise UserError("--stride applies to windows only; add --window SECONDS")
    out_dir = check_output_dir(Path(settings.output_dir), "features folder")
    info = info or init_distributed(settings.device)
    records, root = read_records(settings)
    spec = feature_spec(model.input_spec, settings.crop_size)
    settings_json = json.dumps({"model": settings.model, "input_spec": asdict(spec),
                                **{k: v for k, v in asdict(settings).items()
                                   if k in ("source", "root", "window", "stride", "fps", "crop_size", "shard_size")}},
                               sort_keys=True)
    num_shards = -(-len(records) // settings.shard_size)
    paths = [shard_path(out_dir, k) for k in range(num_shards)]
    mine = [k for k in shard(num_shards, info) if not _finished(paths[k], settings_json)]
    pending = [row for k in mine for row in range(k * settings.shard_size, min((k + 1) * settings.shard_size, len(records)))]
    dataset = FeatureClips(records, root, spec, settings)
    model.eval().to(info.device)
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, sampler=pending, num_workers=settings.workers,
                                         collate_fn=_as_is)
    items: List[dict] = []
    features: List[np.ndarray] = []
    for item in progress(loader, len(pending), "features", info.is_main):
        items.append(item)
        features.append(clip_features(model, item["clips"], dataset.transform, settings.batch_size, info.device)
                        if len(item["clips"]) else np.zeros(0, np.float32))
        k = item["row"] // settings.shard_size
        if item["row"] + 1 == min((k + 1) * settings.shard_size, len(records)):
            write_shard(paths[k], items, features, records, settings_json)
            items, features = [], []
    gather_objects(None, info)  # every rank has written its shards
    if info.is_main:
        bad = [line for path in paths for line in _bad_lines(path)]
        write_report(out_dir / REPORT_NAME, bad)
    return paths


def _as_is(item: dict) -> dict:
    """The loader's collate: items travel as they are (numpy stays numpy)."""
    return item


def _finished(path: Path, settings_json: str) -> bool:
    """Whether shard ``path`` is written already, with these settings (other settings: UserError)."""
    if not path.is_file():
        return False
    if shard_settings(path) != settings_json:
        raise UserError(f"{path} was written with other settings (model, input or windows); write to another "
                        "--output-dir or delete the old shards")
    return True


def _bad_lines(path: Path) -> List[str]:
    with np.load(path, allow_pickle=False) as data:
        return [str(line) for line in data["bad"]]
