"""Memory and speed switches of training, applied to a built model without editing it.

* :func:`checkpoint_stages` (``--checkpoint-activations``): the backbone's stages run
  under ``torch.utils.checkpoint``: only their inputs are kept for the backward pass,
  which runs each stage's forward again. Stages are found by name: the ResNet stages
  of the 2D models (``layer1``-``layer4``, TDN/MSN's ``*_bak`` and ``resnext_layer1``,
  AdaFocusV2's local network), the inverted-residual blocks of MobileNetV2 backbones
  (``features.N``), X3D/VoV3D's ``s2``-``s5`` and MoViNet's ``blocks.*``. The stage's
  ``forward`` is replaced on the instance, so parameter names and checkpoints are
  unchanged. BatchNorm running statistics are updated once per step, as without
  checkpointing: the recomputation puts them back as they were.
* :func:`to_channels_last` (``--channels-last``): 4-D parameters (2D convolutions)
  become ``channels_last`` and 5-D ones (3D convolutions) ``channels_last_3d``;
  :func:`channels_last_input` lays the clip (N, C, T, H, W) out as ``channels_last_3d``,
  so the (N*T, C, H, W) batch a 2D model folds it into is already channels-last.
* :class:`CompileGuard` (``--compile``): ``torch.compile`` on the model's forward; a
  failure at the first step switches back to eager mode with one log line.
"""
from __future__ import annotations

import contextlib
import re
from typing import Callable, Iterator, List, Optional, TypeVar

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ops.common.errors import UserError

# Names (dotted, from named_modules) of the stages that are checkpointed; the outermost match wins.
STAGE_PATTERNS = (
    r"(^|\.)(resnext_)?layer[1-4](_bak)?$",  # ResNet stages (TSN/TSM/MVFNet/TDN/MSN, AdaFocusV2's local CNN)
    r"(^|\.)features\.([1-9]|1[0-9])$",       # MobileNetV2 inverted-residual blocks
    r"^s[2-5]$",                              # X3D / VoV3D stages
    r"^blocks\.[^.]+$",                       # MoViNet blocks
)
STAGE_KINDS = "ResNet and MobileNetV2 2D backbones, X3D/VoV3D stages and MoViNet blocks"
T = TypeVar("T")


@contextlib.contextmanager
def _kept_running_stats(module: nn.Module) -> Iterator[None]:
    """The BatchNorm running statistics of ``module`` as they were before the block (the
    recomputation of a checkpointed stage must not count the batch twice)."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    saved = [[b.clone() for b in (m.running_mean, m.running_var, m.num_batches_tracked)] for m in norms]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, (mean, var, count) in zip(norms, saved):
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(count)


def _checkpointed(module: nn.Module) -> Callable:
    forward = module.forward

    def run(*args, **kwargs):
        if not (torch.is_grad_enabled() and module.training):
            return forward(*args, **kwargs)
        return checkpoint(forward, *args, use_reentrant=False,
                          context_fn=lambda: (contextlib.nullcontext(), _kept_running_stats(module)), **kwargs)

    return run


def stage_names(model: nn.Module) -> List[str]:
    """The outermost modules of ``model`` whose names match :data:`STAGE_PATTERNS`."""
    names: List[str] = []
    for name, _ in model.named_modules():
        if any(re.search(p, name) for p in STAGE_PATTERNS) and not any(name.startswith(n + ".") for n in names):
            names.append(name)
    return names


def checkpoint_stages(model: nn.Module) -> List[str]:
    """Run each stage of ``model`` under activation checkpointing in training; returns the
    stage names. Raises :class:`UserError` for a model without known stages."""
    names = stage_names(model)
    if not names:
        raise UserError(f"--checkpoint-activations: {getattr(model, 'arch_name', type(model).__name__)} has no stages "
                        f"it knows; it applies to {STAGE_KINDS}")
    modules = dict(model.named_modules())
    for name in names:
        modules[name].forward = _checkpointed(modules[name])
    return names


def to_channels_last(model: nn.Module) -> nn.Module:
    """4-D parameters and buffers -> ``channels_last``, 5-D -> ``channels_last_3d``, in place."""
    for tensor in list(model.parameters()) + list(model.buffers()):
        if tensor.dim() in (4, 5):
            fmt = torch.channels_last if tensor.dim() == 4 else torch.channels_last_3d
            tensor.data = tensor.data.contiguous(memory_format=fmt)
    return model


def channels_last_input(x: torch.Tensor) -> torch.Tensor:
    """A clip batch (N, C, T, H, W) laid out ``channels_last_3d`` (memory order N, T, H, W, C)."""
    return x.contiguous(memory_format=torch.channels_last_3d)


def first_line(exc: BaseException) -> str:
    """``Type: first line`` of the exception that started ``exc`` (compilers wrap their causes)."""
    while exc.__cause__ is not None or getattr(exc, "inner_exception", None) is not None:
        exc = exc.__cause__ or exc.inner_exception
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class CompileGuard:
    """``torch.compile`` of ``model.forward`` (set on the instance: names and checkpoints stay
    as they are). :meth:`first_step` runs the first training step; if compiling fails there,
    the model goes back to eager mode, ``log`` gets one line and the step runs again."""

    def __init__(self, model: nn.Module, log: Callable[[str], None], backend="inductor") -> None:
        self.model, self.log = model, log
        model.forward = torch.compile(model.forward, backend=backend)
        self.pending = True

    def eager(self) -> None:
        """Back to the class's own forward."""
        self.model.__dict__.pop("forward", None)

    def first_step(self, step: Callable[[], T], reset: Optional[Callable[[], None]] = None) -> T:
        """``step()``; on the first call, a failure makes the model eager, calls ``reset()``
        (e.g. zero the gradients a half-run step left) and runs ``step()`` again."""
        if not self.pending:
            return step()
        self.pending = False
        try:
            return step()
        except Exception as exc:  # dynamo/inductor raise many types; any failure here means: no compile
            self.eager()
            if reset is not None:
                reset()
            self.log(f"--compile: torch.compile failed at the first step ({first_line(exc)}); training in eager mode")
            return step()
