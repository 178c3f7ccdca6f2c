"""Build datasets and loaders from the settings and the model's input spec."""
from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import torch
from torch.utils.data import default_collate

from archs.registry import InputSpec
from dataset_configs import DatasetConfig, get_dataset
from ops.data.augment import RandAugment, parse_randaugment
from ops.engine.config import DataSettings
from ops.data.dataset import SamplingSettings, VideoDataset
from ops.data.decoders.registry import resolve_decoder
from ops.data.records import read_list_file
from ops.data.transforms import ClipTransform


def dataset_config(data: DataSettings) -> DatasetConfig:
    """The registry entry with the flags' overrides applied (they really take effect)."""
    cfg = get_dataset(data.dataset, root=data.root)
    return cfg.with_overrides(train_list=data.train_list, val_list=data.val_list, test_list=data.test_list,
                              frame_template=data.frame_template)


def resolve_spec(spec: InputSpec, data: DataSettings) -> InputSpec:
    """The model's spec with the data flags applied (crop size, dense sampling ...)."""
    spec = spec.replace(crop_size=data.crop_size, scale_size=data.scale_size, dense_stride=data.dense_stride)
    if data.crop_size and not data.scale_size:
        spec = spec.replace(scale_size=data.crop_size * 256 // 224)
    return spec.replace(sampling="dense") if data.dense_sample else spec


@dataclass
class ViewSettings:
    """Test-time views: crops and temporal clips."""

    test_crops: int = 1
    full_res: bool = False
    clip_index: int = 0
    num_clips: int = 1
    twice: bool = False


def build_dataset(data: DataSettings, spec: InputSpec, split: str, mode: str,
                  views: Optional[ViewSettings] = None, cfg: Optional[DatasetConfig] = None) -> VideoDataset:
    cfg = cfg or dataset_config(data)
    views = views or ViewSettings()
    records = read_list_file(cfg.list_path(split), cfg.num_classes)
    sampling = SamplingSettings.of(spec, mode, clip_index=views.clip_index, num_clips=views.num_clips, twice=views.twice)
    transform = ClipTransform.of(spec, mode, test_crops=views.test_crops, full_res=views.full_res, flip=cfg.flip,
                                 flip_map=cfg.flip_map())
    augment = RandAugment(*parse_randaugment(data.randaugment)) if data.randaugment and mode == "train" else None
    return VideoDataset(records, root=cfg.root, template=cfg.frame_template, sampling=sampling, transform=transform,
                        num_classes=cfg.num_classes, multi_label=cfg.multi_label, video_ext=cfg.video_ext,
                        strict=data.strict_data, decode_device=data.decode_device,
                        decoder=resolve_decoder(data.decoder, data.decode_device, data.workers), augment=augment)


def model_input(batch: dict, dataset: VideoDataset, device: torch.device) -> torch.Tensor:
    """A loader batch's uint8 clips (N, V, C, T, H, W) moved to ``device`` (as uint8: 4x fewer
    bytes to copy) and normalised there as the dataset's input spec says: float (N, V, C, T, H, W)."""
    return dataset.transform.normalize(batch["clip"].to(device, non_blocking=True))


def collate_items(items: List[dict]) -> dict:
    """A batch of dataset items: ``clip`` uint8 (N, V, C, T, H, W) channels-last as the items
    are, ``target`` (N,) int64 or (N, K) float32 and ``index`` (N,) int64 as numpy, ``bad`` a
    list of strings.

    Only the clips are a tensor (in a worker, copied as they lie straight into the shared
    memory the batch travels through). Every tensor a worker returns costs its own
    shared-memory file and a file-descriptor handshake with the main process, about 0.5 ms
    of CPU however small it is, so small fields travel pickled, as numpy.
    """
    clips = default_collate([item["clip"].permute(0, 2, 3, 4, 1) for item in items])  # (N, V, T, H, W, C)
    return {"clip": clips.permute(0, 1, 5, 2, 3, 4),
            "target": np.stack([item["target"] for item in items]),
            "index": np.array([item["index"] for item in items], np.int64),
            "bad": [item["bad"] for item in items]}


def batch_targets(batch: dict, device: torch.device) -> torch.Tensor:
    """The batch's targets as a tensor on ``device``: int64 (N,) or float32 (N, K)."""
    return torch.from_numpy(batch["target"]).to(device, non_blocking=True)


# The main process owns shutdown: these reach DataLoader workers too (a terminal's Ctrl-C,
# a scheduler's SIGTERM to the whole process group), and workers ignore them.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def worker_init(worker_id: int) -> None:
    """Start of a DataLoader worker: ignore the stop signals, then take the ones blocked across
    the fork (:class:`Loader`), so no signal kills a worker before or after this point."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


class Loader(torch.utils.data.DataLoader):
    """A DataLoader whose workers start with the stop signals blocked (see :func:`worker_init`);
    in the main process a signal that comes meanwhile waits for the few milliseconds of the fork."""

    def __iter__(self):
        if self.num_workers == 0:
            return super().__iter__()
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            return super().__iter__()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def make_loader(dataset: VideoDataset, batch_size: int, workers: int, *, sampler=None, indices: Optional[List[int]] = None,
                drop_last: bool = False, seed: int = 0, persistent: bool = False) -> torch.utils.data.DataLoader:
    """A DataLoader over ``sampler`` (training) or a fixed list of ``indices`` (evaluation);
    ``persistent``: workers live across epochs (the epoch must then travel with the keys,
    see ops.data.dataset.EpochKeys). Batches are pinned for the copy to a GPU, except clips a GPU
    decoder already put there (``--decode-device cuda``)."""
    if sampler is None:
        sampler = indices if indices is not None else list(range(len(dataset)))
    return Loader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, drop_last=drop_last,
        collate_fn=collate_items, pin_memory=torch.cuda.is_available() and dataset.decode_device == "cpu", generator=torch.Generator().manual_seed(seed),
        persistent_workers=persistent and workers > 0, prefetch_factor=4 if workers > 0 else None,
        worker_init_fn=worker_init if workers > 0 else None)
