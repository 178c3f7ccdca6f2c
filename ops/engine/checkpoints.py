"""Training checkpoints: written atomically, read with ``weights_only=True``.

A checkpoint holds everything to continue exactly: model (without DDP's
``module.`` prefix), optimizer, schedule iteration, AMP scaler, epoch and step
inside it, best metric, RNG states, the resolved settings and the class names.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from archs.checkpoint import read_checkpoint
from ops.common.errors import UserError
from ops.common.fileio import atomic_open


def save_checkpoint(path: Path, state: dict) -> None:
    with atomic_open(Path(path), "wb") as fh:
        torch.save(state, fh)


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def resume_path(resume: Optional[str], output_dir: Path) -> Optional[Path]:
    """``auto``: the run folder's last.pth if there is one (else start fresh); a path must exist."""
    if not resume:
        return None
    if resume == "auto":
        last = output_dir / "last.pth"
        return last if last.is_file() else None
    path = Path(resume)
    if not path.is_file():
        raise UserError(f"{path}: --resume checkpoint not found")
    return path


def load_training_state(path: Path) -> dict:
    state = read_checkpoint(path)
    if not isinstance(state, dict) or "model" not in state or "optimizer" not in state:
        raise UserError(f"{path}: not a videorec training checkpoint (use --tune-from or --pretrained for weights)")
    return state
