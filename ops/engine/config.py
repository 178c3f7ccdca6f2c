"""Resolved settings of a train or test run; written as JSON next to the outputs."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from ops.common.errors import UserError
from ops.common.fileio import write_text_atomic


@dataclass
class DataSettings:
    """Where the data is and how clips are made (flags override the dataset registry).

    ``num_segments``: segments (2D models) or frames (3D models), None = the model's;
    ``randaugment``: ``"N,M"`` (clip-consistent RandAugment on the train clips) or None;
    ``repeated_aug``: K copies of each sampled video per epoch (1 = off)."""

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
    num_segments: Optional[int] = None
    workers: int = 2
    strict_data: bool = False
    decoder: str = "auto"
    decode_device: str = "cpu"
    randaugment: Optional[str] = None
    repeated_aug: int = 1


@dataclass
class TrainSettings:
    """A training run. ``model_options``: the model options the user gave (``-m`` and the named
    flags, e.g. ``dropout``); the model's defaults fill the rest; ``data.num_segments`` and
    ``npb`` (partial BN off) are model options too (:meth:`model_kwargs`).

    Regularisation (all off by default): ``mixup``/``cutmix`` Beta alphas, ``label_smoothing``.
    Speed and memory: ``accumulate`` micro-batches per optimiser step, ``checkpoint_activations``,
    ``channels_last``, ``compile``; ``log_interval``: steps between reads of the running
    loss and accuracy from the device."""

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
    npb: bool = False
    mixup: float = 0.0
    cutmix: float = 0.0
    label_smoothing: float = 0.0
    accumulate: int = 1
    checkpoint_activations: bool = False
    channels_last: bool = False
    compile: bool = False
    log_interval: int = 50

    def model_kwargs(self) -> Dict[str, object]:
        """The model options of this run: ``model_options`` with ``data.num_segments`` and ``npb``
        (as ``partial_bn=False``) folded in."""
        options = dict(self.model_options)
        if self.data.num_segments is not None:
            options["num_segments"] = self.data.num_segments
        if self.npb:
            options["partial_bn"] = False
        return options

    def check(self) -> None:
        """Raise :class:`UserError` for a value out of range, naming the flag (or config key)."""
        checks = [("--mixup (mixup)", self.mixup, self.mixup >= 0, ">= 0"),
                  ("--cutmix (cutmix)", self.cutmix, self.cutmix >= 0, ">= 0"),
                  ("--label-smoothing (label_smoothing)", self.label_smoothing, 0 <= self.label_smoothing < 1,
                   "in [0, 1)"),
                  ("--accumulate (accumulate)", self.accumulate, self.accumulate >= 1, ">= 1"),
                  ("--log-interval (log_interval)", self.log_interval, self.log_interval >= 1, ">= 1"),
                  ("--repeated-aug (data.repeated_aug)", self.data.repeated_aug, self.data.repeated_aug >= 1, ">= 1")]
        for name, value, ok, rule in checks:
            if not ok:
                raise UserError(f"{name} must be {rule}, not {value:g}")
        if self.data.randaugment is not None:
            from ops.data.augment import parse_randaugment

            parse_randaugment(self.data.randaugment)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainSettings":
        d = dict(d)
        d["data"] = DataSettings(**d["data"])
        return cls(**d)


def write_json(path: Path, obj: dict) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
