"""Optimiser parameter groups and the learning-rate schedule.

The per-group multipliers are really applied (the TDN/MSN seeds computed them and
never used them): every group carries ``lr_mult`` and the schedule sets
``group["lr"] = base_lr * factor(iteration) * lr_mult`` at every iteration.

* no weight decay on BatchNorm parameters and biases (every parameter with ndim <= 1);
* a newly initialised classifier on a pretrained backbone learns x5 (weights) and
  x10 (biases) faster, as TSM does when fine-tuning from ImageNet;
* a model's ``lr_multipliers()`` (parameter-name prefix -> multiplier) scale its
  parts (e.g. AdaFocusV2's policy network at 0.01).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Sequence

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float, new_classifier: bool) -> List[dict]:
    """SGD groups keyed by (lr multiplier, decay or not); frozen parameters are left out."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    head_params = {id(p) for p in head.parameters()} if head is not None else set()
    prefixes: Dict[str, float] = model.lr_multipliers() if hasattr(model, "lr_multipliers") else {}
    groups: Dict[tuple, dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = param.ndim <= 1
        mult = next((m for prefix, m in prefixes.items() if name.startswith(prefix)), 1.0)
        if new_classifier and id(param) in head_params:
            mult *= 10.0 if no_decay else 5.0
        key = (mult, no_decay)
        group = groups.setdefault(key, {"params": [], "lr_mult": mult, "weight_decay": 0.0 if no_decay else weight_decay,
                                         "name": f"lr x{mult:g}" + (", no decay" if no_decay else "")})
        group["params"].append(param)
    return list(groups.values())


@dataclass
class LRSchedule:
    """Learning-rate factor per iteration: linear warm-up, then step or cosine.

    step: x0.1 at every epoch in ``steps``; cos: half a cosine from the end of
    warm-up to 0 at the last epoch. Warm-up goes linearly from base_lr/100.
    """

    base_lr: float
    epochs: int
    iters_per_epoch: int
    kind: str = "step"
    steps: Sequence[int] = ()
    warmup_epochs: float = 0.0
    decay: float = 0.1

    def __post_init__(self) -> None:
        if self.kind not in ("step", "cos"):
            raise ValueError(f"--lr-scheduler must be 'step' or 'cos', not {self.kind!r}")

    def factor(self, iteration: int) -> float:
        epoch = iteration / max(self.iters_per_epoch, 1)
        if epoch < self.warmup_epochs:
            start = 0.01
            return start + (1.0 - start) * epoch / self.warmup_epochs
        if self.kind == "step":
            return self.decay ** sum(1 for s in self.steps if epoch >= s)
        span = max(self.epochs - self.warmup_epochs, 1e-8)
        return 0.5 * (1.0 + math.cos(math.pi * min((epoch - self.warmup_epochs) / span, 1.0)))

    def apply(self, optimizer: torch.optim.Optimizer, iteration: int) -> float:
        """Set every group's lr for ``iteration``; returns the base lr in effect."""
        lr = self.base_lr * self.factor(iteration)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_mult", 1.0)
        return lr


def make_optimizer(name: str, groups: List[dict], lr: float, momentum: float) -> torch.optim.Optimizer:
    """SGD with momentum (the papers' recipes) or AdamW (quick from-scratch training)."""
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise ValueError(f"--optimizer must be 'sgd' or 'adamw', not {name!r}")
