"""The clip dataset: list-file records -> sampler -> source -> transform -> views.

Each item is a dict::

    {"clip": uint8 (V, C, T, H, W),   # channels_last_3d; V views (1 for train/val, crops x clips for test)
     "target": int64 () | float32 (K,) numpy, # multi-hot for multi-label datasets
     "index": int,                    # row in the list file
     "bad": str}                      # "path<TAB>reason" lines of samples that failed

Items are asked for by key: a plain int (val/test, and the key's copy 0), or an
``(epoch, key)`` pair from :class:`EpochKeys` in training, so the epoch travels with
the sampler's keys to persistent loader workers (their copy of the dataset never sees
``set_epoch``). A key ``copy * N + row`` (repeated augmentation, see
ops.data.repeated_aug) reads row ``row`` with the generator of that copy, so the K
copies of a video are augmented differently. With ``augment`` (clip-consistent
RandAugment), train views are augmented after the crop with the same generator.

A sample that cannot be read is replaced by another one in training (counted
and reported through ``bad``); in val/test it is flagged (``index`` = -1 - row) so
the engine leaves it out of the metrics and score files instead of scoring
another video in its place. ``strict=True`` raises on the first bad sample.

Records whose frame folder or video file does not exist are found once, when the
dataset is built (one stat each): they are left out and kept in ``missing``
(:class:`MissingEntry`, with list file and line), which :func:`write_missing_report`
writes as ``missing_<split>.txt``; with ``strict=True`` the first one is an error
before any sample is read.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ops.common.errors import UserError
from ops.common.fileio import write_report
from ops.data.augment import RandAugment
from ops.data.records import VideoRecord
from ops.data.repeated_aug import item_rng, split_key
from ops.data.sampling import sample_indices
from ops.data.sources import SourceError, open_source, resolve_path
from ops.data.transforms import ClipTransform


@dataclass(frozen=True)
class SamplingSettings:
    """How frames are picked (see ops.data.sampling); ``clip_index`` of ``num_clips`` for test."""

    mode: str
    num_segments: int
    new_length: int = 1
    sampling: str = "segment"
    dense_stride: int = 8
    clip_index: int = 0
    num_clips: int = 1
    twice: bool = False

    @classmethod
    def of(cls, spec, mode: str = "test", **views) -> "SamplingSettings":
        """The sampling of a model's input spec (``archs.registry.InputSpec``); ``views`` the clip
        index, clip count and twice-sampling of a test."""
        return cls(mode=mode, num_segments=spec.num_segments, new_length=spec.frames_per_segment,
                   sampling=spec.sampling, dense_stride=spec.dense_stride, **views)

    @property
    def clips_per_sample(self) -> int:
        return 2 if self.twice and self.mode != "train" and self.sampling == "segment" else 1

    def indices(self, num_frames: int, rng: Optional[np.random.Generator]) -> np.ndarray:
        return sample_indices(num_frames, rng=rng, **{k: v for k, v in asdict(self).items()})


@dataclass(frozen=True)
class MissingEntry:
    """A list-file entry whose media does not exist: list file, 1-based line, the path looked for."""

    list_path: str
    line: int
    path: Path

    def __str__(self) -> str:
        return f"{self.list_path}:{self.line} {self.path}"


def split_missing(records: Sequence[VideoRecord], root: str,
                  video_ext: str = "") -> Tuple[List[VideoRecord], List[MissingEntry]]:
    """(records whose frame folder or video file exists, the others as missing entries), in list order;
    one stat per record."""
    present, missing = [], []
    for record in records:
        path = resolve_path(root, record.path, video_ext)
        if path.exists():
            present.append(record)
        else:
            missing.append(MissingEntry(record.source, record.line, path))
    return present, missing


def write_missing_report(missing: Sequence[MissingEntry], out_dir: Path, split: str) -> Optional[Path]:
    """Write ``out_dir/missing_<split>.txt`` (one ``list:line path`` per line, atomically) and return it;
    with nothing missing, remove a stale one and return None."""
    path = Path(out_dir) / f"missing_{split}.txt"
    write_report(path, [str(entry) for entry in missing])
    return path if missing else None


def report_missing(missing: Sequence[MissingEntry], out_dir: Path, split: str) -> Optional[str]:
    """Write the ``missing_<split>.txt`` report (:func:`write_missing_report`) and return the line to
    log about it, or None when nothing is missing."""
    report = write_missing_report(missing, out_dir, split)
    if report is None:
        return None
    return f"{len(missing)} {split} list entries name media that do not exist; left out, listed in {report}"


class VideoDataset(torch.utils.data.Dataset):
    """Clips of the videos of a list file (frame folders or video files)."""

    def __init__(self, records: Sequence[VideoRecord], *, root: str, template: str, sampling: SamplingSettings,
                 transform: ClipTransform, num_classes: int, multi_label: bool = False, video_ext: str = "",
                 strict: bool = False, max_replacements: int = 10, decoder: str = "auto",
                 decode_device: str = "cpu", augment: Optional[RandAugment] = None) -> None:
        present, self.missing = split_missing(records, root, video_ext)
        if self.missing and strict:
            first = self.missing[0]
            raise UserError(f"{first.list_path}:{first.line}: {first.path} does not exist ({len(self.missing)} of "
                            f"{len(records)} entries missing); fix the list or the dataset root, or leave out "
                            "--strict-data to skip them")
        if len(self.missing) == len(records):
            first = self.missing[0]
            raise UserError(f"{first.list_path}: none of its {len(records)} entries exists (line {first.line}: "
                            f"{first.path}); is the dataset root right?")
        self.records = present
        self.root = root
        self.template = template
        self.sampling = sampling
        self.transform = transform
        self.num_classes = num_classes
        self.multi_label = multi_label
        self.video_ext = video_ext
        self.strict = strict
        self.max_replacements = max_replacements
        self.decoder, self.decode_device = decoder, decode_device  # see ops.data.decoders.registry
        self.augment = augment
        self.seed = 0
        self.epoch = 0

    def set_epoch(self, epoch: int, seed: int) -> None:
        """Training randomness of item i is a pure function of (seed, epoch, i):
        independent of workers and batch order, so resuming mid-epoch is exact. The epoch
        set here is the one of plain int keys; ``(epoch, key)`` keys carry their own."""
        self.epoch, self.seed = epoch, seed

    def __len__(self) -> int:
        return len(self.records)

    def path(self, index: int):
        return resolve_path(self.root, self.records[index].path, self.video_ext)

    def load(self, index: int, rng: Optional[np.random.Generator]):
        """(views (V, C, T, H, W), labels) of record ``index``; raises SourceError."""
        record = self.records[index]
        source = open_source(self.path(index), self.template, record.num_frames, self.decoder, self.decode_device)
        indices = self.sampling.indices(source.num_frames, rng)
        frames = source.read(indices)
        clips = frames.chunk(self.sampling.clips_per_sample)
        outs = [self.transform(clip, record.labels, rng) for clip in clips]
        views = torch.cat([views for views, _ in outs])
        if self.augment is not None:
            views = self.augment.augment_views(views, rng)
        return views, outs[0][1]

    def target(self, labels: Sequence[int]) -> np.ndarray:
        """The class index (int64 ``()``) or the multi-hot vector (float32 ``(K,)``), as numpy:
        see ``ops.data.loader.collate_items`` for why small fields are not tensors."""
        if self.multi_label:
            hot = np.zeros(self.num_classes, np.float32)
            hot[list(labels)] = 1.0
            return hot
        return np.asarray(labels[0], np.int64)

    def placeholder(self) -> torch.Tensor:
        """Zeros shaped like a real item's views, for a flagged bad val/test sample."""
        t = self.sampling.num_segments * self.sampling.new_length
        tf = self.transform
        size = tf.scale_size if (tf.mode == "test" and tf.full_res and tf.test_crops == 3) else tf.crop_size
        zeros = torch.zeros(tf.num_views * self.sampling.clips_per_sample, 3, t, size, size, dtype=torch.uint8)
        return zeros.contiguous(memory_format=torch.channels_last_3d)

    def __getitem__(self, item: Union[int, Tuple[int, int]]) -> dict:
        epoch, key = item if isinstance(item, tuple) else (self.epoch, item)
        index, _ = split_key(key, len(self.records))
        rng = item_rng(self.seed, epoch, key, len(self.records))
        bad: List[str] = []
        current = index
        for _ in range(self.max_replacements + 1):
            try:
                clip, labels = self.load(current, rng)
                return {"clip": clip, "target": self.target(labels), "index": current, "bad": "\n".join(bad)}
            except SourceError as exc:
                if self.strict:
                    record = self.records[current]
                    raise SourceError(f"{record.source}:{record.line}: {exc}") from None
                bad.append(f"{self.path(current)}\t{exc}")
                if self.sampling.mode != "train":
                    record = self.records[index]
                    return {"clip": self.placeholder(), "target": self.target(record.labels), "index": -1 - index,
                            "bad": "\n".join(bad)}
                current = int(rng.integers(len(self.records)))
        raise SourceError(f"{len(bad)} unreadable samples in a row, last: {bad[-1]} (is the dataset root right?)")


class EpochKeys(torch.utils.data.Sampler):
    """A train sampler's keys as ``(epoch, key)`` pairs, so loader workers that persist across
    epochs read each item with the generator of the epoch it was sampled for.

    ``sampler`` has ``epoch`` and ``set_epoch(epoch, skip)`` (ops.data.repeated_aug.TrainSampler).
    """

    def __init__(self, sampler) -> None:
        self.sampler = sampler

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.sampler.set_epoch(epoch, skip)

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        epoch = self.sampler.epoch
        return ((epoch, key) for key in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)
