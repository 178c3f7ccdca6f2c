"""Settings of the built-in demo (`videorec demo`), apart from the demo itself so the
command's option defaults come from here without importing the pipeline."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence


@dataclass
class DemoSettings:
    output_dir: Path = Path("demo_run")
    archs: Sequence[str] = ("tsn_mbv2", "tsm_mbv2")
    classes: Sequence[str] = ("move_down", "move_left", "move_right", "move_up")
    num_videos: int = 800
    frames: int = 16
    size: int = 48
    crop_size: int = 48
    num_segments: int = 4
    epochs: int = 12
    lr_step: int = 9
    batch_size: int = 16
    lr: float = 0.002
    width_mult: float = 0.5
    workers: int = 2
    seed: int = 0
