"""One optimiser step of training, and the running loss/accuracy kept on the device.

:class:`TrainStep` takes the K micro-batches of one optimiser step (``--accumulate K``;
K = 1 is a plain step): each is mixed (``--mixup``/``--cutmix``/``--label-smoothing``,
with a generator per (seed, rank, micro-batch), so a resumed run mixes the same), run
through the training objective under autocast and back-propagated with its loss
divided by K, DDP synchronising gradients on the last micro-batch only (``no_sync`` on
the others). Then the gradients (the mean over the K x batch clips, as one batch of
that size gives for a model without BatchNorm coupling between clips) are clipped and
the optimiser steps once.

Nothing in a step reads a value back to the host: :class:`RunningSums` adds the loss
and the number of correct top-1 predictions (against the labels before mixing) on the
device, and the loop reads them every ``--log-interval`` steps and at the end of the
epoch.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, TypeVar

import torch
from torch import nn

from ops.engine.inference import autocast
from ops.engine.mixing import Mixer, soft_target_loss, step_generator
from ops.engine.speed import CompileGuard, channels_last_input

T = TypeVar("T")


class SoftTargetLoss(nn.Module):
    """The criterion of a run with mixing or label smoothing: logits (N, K) against soft targets (N, K)."""

    def __init__(self, multi_label: bool) -> None:
        super().__init__()
        self.multi_label = multi_label

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return soft_target_loss(logits.float(), target, self.multi_label)


def criterion_for(multi_label: bool, soft: bool = False) -> nn.Module:
    """Cross-entropy (single-label) or BCE-with-logits (multi-label); on soft targets (N, K)
    when ``soft`` (mixing or label smoothing on)."""
    if soft:
        return SoftTargetLoss(multi_label)
    return nn.BCEWithLogitsLoss() if multi_label else nn.CrossEntropyLoss()


class RunningSums:
    """Loss x clips and correct top-1 predictions summed on ``device``; the clip count on the host.

    ``add`` never synchronises; :meth:`read` does (once)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.reset()

    def reset(self, loss: float = 0.0, correct: float = 0.0, count: int = 0) -> None:
        self.loss = torch.tensor(loss, dtype=torch.float64, device=self.device)
        self.correct = torch.tensor(correct, dtype=torch.float64, device=self.device)
        self.count = count

    def add(self, loss: torch.Tensor, logits: torch.Tensor, target: torch.Tensor) -> None:
        """loss: mean over the batch (scalar); logits (N, K); target (N,) class indices or (N, K) multi-hot."""
        n = logits.shape[0]
        self.loss += loss.detach().double() * n
        if target.ndim == 1:
            self.correct += (logits.detach().argmax(-1) == target).sum()
        self.count += n

    def read(self) -> Dict[str, float]:
        """Mean loss and top-1 (%, single-label only: 0 for multi-label) so far; and the raw sums."""
        loss, correct = (float(v) for v in torch.stack([self.loss, self.correct]).cpu())
        count = max(self.count, 1)
        return {"loss": loss / count, "top1": 100.0 * correct / count, "loss_sum": loss, "correct": correct,
                "count": self.count}


def grouped(iterable: Iterable[T], k: int) -> Iterator[List[T]]:
    """Consecutive groups of ``k`` items; an incomplete last group is left out."""
    group: List[T] = []
    for item in iterable:
        group.append(item)
        if len(group) == k:
            yield group
            group = []


@dataclass
class TrainStep:
    """One optimiser step over K micro-batches (see the module docstring).

    ``objective``: :class:`ops.engine.trainer.TrainingObjective`, maybe inside DDP;
    ``model``: the bare model (gradient clipping); ``mixer``: None or a :class:`Mixer`
    (then the objective's criterion takes soft targets); ``guard``: the ``--compile``
    guard, whose first step may fall back to eager mode.
    """

    objective: nn.Module
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    device: torch.device
    amp: bool = False
    gd: Optional[float] = None
    mixer: Optional[Mixer] = None
    seed: int = 0
    rank: int = 0
    channels_last: bool = False
    guard: Optional[CompileGuard] = None

    def __call__(self, micro: Sequence[Tuple[torch.Tensor, torch.Tensor]], iteration: int,
                 sums: RunningSums) -> List[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """micro: K pairs (x (N, C, T, H, W) float on the device, target (N,) or (N, K));
        ``iteration``: optimiser steps so far (seeds the mixing). Returns each micro-batch's
        (loss, logits (N, K), target before mixing), detached and still on the device."""
        if self.guard is not None:
            results = self.guard.first_step(lambda: self._run(micro, iteration),
                                            lambda: self.optimizer.zero_grad(set_to_none=True))
        else:
            results = self._run(micro, iteration)
        for loss, logits, target in results:
            sums.add(loss, logits, target)
        if self.gd:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.gd)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return results

    def _run(self, micro, iteration: int):
        self.optimizer.zero_grad(set_to_none=True)
        k = len(micro)
        results = []
        for i, (x, y) in enumerate(micro):
            if self.channels_last:
                x = channels_last_input(x)
            target = y
            if self.mixer is not None:
                mixed = self.mixer(x, y, step_generator(self.seed, self.rank, iteration * k + i))
                x, target = mixed.x, mixed.target
            last = i == k - 1
            sync = contextlib.nullcontext() if last or not hasattr(self.objective, "no_sync") else self.objective.no_sync()
            with sync:
                with autocast(self.device, self.amp):
                    loss, logits = self.objective(x, target)
                self.scaler.scale(loss / k if k > 1 else loss).backward()
            results.append((loss.detach(), logits.detach(), y))
        return results
