"""Shared fixtures: a tiny frame-folder dataset rendered by ops.prep.synthetic (no ffmpeg)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

TINY_CLASSES = ("grow", "move_left", "move_right", "shrink")


def write_frame_folder(folder: Path, frames: np.ndarray, template: str = "img_{:05d}.jpg") -> None:
    from torchvision.io import write_jpeg

    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        write_jpeg(torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1), str(folder / template.format(i + 1)), quality=90)


def write_grey_frames(folder: Path, count: int, template: str = "img_{:05d}.jpg", size=(20, 12)) -> Path:
    """``count`` flat grey frames of ``size`` (W, H): frame i (0-based) has level 20 * i."""
    levels = 20 * np.arange(count, dtype=np.uint8)
    write_frame_folder(folder, np.broadcast_to(levels[:, None, None, None], (count, size[1], size[0], 3)), template)
    return folder


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A custom dataset config (.json): 4 motion classes, 4 train + 2 val videos each, 8 frames of 32x32."""
    from ops.prep.synthetic import render_video

    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    lines = {"train": [], "val": []}
    for label, name in enumerate(TINY_CLASSES):
        for i in range(6):
            split = "train" if i < 4 else "val"
            rel = f"frames/{name}/{name}_{i}"
            write_frame_folder(root / rel, render_video(name, rng, frames=8, size=32))
            lines[split].append(f"{rel} 8 {label}")
    for split, rows in lines.items():
        (root / f"{split}.txt").write_text("\n".join(rows) + "\n")
    (root / "classes.txt").write_text("\n".join(TINY_CLASSES) + "\n")
    config = root / "tiny.json"
    config.write_text(json.dumps({"name": "tiny", "num_classes": len(TINY_CLASSES), "root": ".", "flip": "none"}))
    return config


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


# Tests use tiny tensors: one compute thread avoids oversubscribing the cores that
# DataLoader workers and subprocesses share (many times faster on 2-core machines).
torch.set_num_threads(1)


@pytest.fixture
def run_main(monkeypatch, capsys):
    """The console entry point run in this process: ``run_main(*args) -> (exit code, stdout, stderr)``."""
    from videorec_cli import main as cli_main

    def run(*args) -> tuple:
        monkeypatch.setattr(sys, "argv", ["videorec", *[str(a) for a in args]])
        with pytest.raises(SystemExit) as done:
            cli_main.main()
        out = capsys.readouterr()
        return done.value.code, out.out, out.err

    return run
