"""Resolved settings of a train or test run; written as JSON next to the outputs."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from ops.common.fileio import write_text_atomic


@dataclass
class DataSettings:
    """Where the data is and how clips are made (flags override the dataset registry)."""

    dataset: str
    root: Optional[str] = None
    train_list: Optional[str] = None
    val_list: Optional[str] = None
    test_list: Optional[str] = None
    frame_template: Optional[str] = None
    crop_size: Optional[int] = None
    scale_size: Optional[int] = None
    dense_sample: bool = False
    dense_stride: Optional[int] = None
    workers: int = 2
    strict_data: bool = False
    decoder: str = "auto"
    decode_device: str = "cpu"


@dataclass
class TrainSettings:
    """A training run. ``model_options``: the options the user gave (``-m`` and the named flags,
    e.g. ``num_segments``, ``partial_bn``); the model's defaults fill the rest."""

    data: DataSettings
    arch: str
    model_options: Dict[str, object] = field(default_factory=dict)
    pretrained: str = "none"
    epochs: int = 50
    batch_size: int = 8
    lr: float = 0.01
    optimizer: str = "sgd"
    lr_scheduler: str = "step"
    lr_steps: List[float] = field(default_factory=lambda: [20.0, 40.0])
    warmup_epochs: float = 0.0
    wd: float = 5e-4
    momentum: float = 0.9
    gd: Optional[float] = 20.0
    eval_freq: int = 5
    tune_from: Optional[str] = None
    resume: Optional[str] = None
    seed: int = 0
    amp: bool = False
    sync_bn: bool = False
    device: str = "auto"
    output_dir: str = "runs/run"
    log_prefix: str = ""
    max_iters_per_epoch: Optional[int] = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainSettings":
        d = dict(d)
        d["data"] = DataSettings(**d["data"])
        return cls(**d)


def write_json(path: Path, obj: dict) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
