"""Forward a dataset through a model, sharded across ranks, gathered in list order."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import torch
from torch import nn

from ops.data.loader import make_loader, model_input
from ops.data.dataset import VideoDataset
from ops.engine.distributed import DistInfo, gather_objects, shard
from ops.common.runlog import progress


def autocast(device: torch.device, enabled: bool):
    """Mixed precision: float16 on CUDA, bfloat16 on CPU; a no-op when disabled."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") and isinstance(model, nn.parallel.DistributedDataParallel) else model


@dataclass
class Predictions:
    """Per-video outputs in list order (bad samples left out and listed in ``bad``)."""

    indices: np.ndarray           # (V,) rows of the list file
    logits: np.ndarray            # (V, views, K)
    targets: np.ndarray           # (V,) int or (V, K) multi-hot
    exit_logits: Optional[np.ndarray] = None  # (V, E, K), views averaged
    bad: Optional[List[str]] = None


@torch.no_grad()
def predict(model: nn.Module, dataset: VideoDataset, info: DistInfo, *, batch_size: int, workers: int,
            amp: bool = False, exits: bool = False, desc: str = "eval") -> Predictions:
    """Run every item of ``dataset`` once (each rank a shard, no padding) and gather.

    All views of a clip (crops x clips) go through the model in one batch.
    """
    net = unwrap(model)
    net.eval()
    loader = make_loader(dataset, batch_size, workers, indices=shard(len(dataset), info))
    rows, logits, targets, exit_rows, bad = [], [], [], [], []
    for batch in progress(loader, len(loader), desc, info.is_main):
        clip = model_input(batch, dataset, info.device)
        n, v = clip.shape[:2]
        x = clip.flatten(0, 1)
        with autocast(info.device, amp):
            if exits:  # one pass: the last exit is the model's output
                per_exit = net.forward_exits(x).float()  # (n * v, E, K)
                exit_rows.append(per_exit.view(n, v, *per_exit.shape[1:]).mean(1).cpu())
                out = per_exit[:, -1].reshape(n, v, -1)
            else:
                out = net(x).float().view(n, v, -1)
        rows.append(batch["index"])
        logits.append(out.cpu())
        targets.append(batch["target"])
        bad.extend(r for r in batch["bad"] if r)
    part = (np.concatenate(rows) if rows else np.zeros(0, np.int64),
            torch.cat(logits).numpy() if logits else None,
            np.concatenate(targets) if targets else None,
            torch.cat(exit_rows).numpy() if exit_rows else None, bad)
    return _merge(gather_objects(part, info))


def _merge(parts: list) -> Predictions:
    """Concatenate the ranks' parts, order by list row, drop flagged bad samples."""
    kept = [p for p in parts if len(p[0])]
    rows = np.concatenate([p[0] for p in kept])
    order = np.argsort(rows, kind="stable")
    good = rows[order] >= 0
    pick = order[good]

    def cat(i: int):
        return None if kept[0][i] is None else np.concatenate([p[i] for p in kept])[pick]

    bad = [line for p in parts for line in p[4]]
    return Predictions(rows[pick], cat(1), cat(2), cat(3), bad)
