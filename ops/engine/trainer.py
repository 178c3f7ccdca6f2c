"""The training loop: one process or many (DDP), resumable, interruptible.

``train(settings)`` first checks everything a user can get wrong (output folder, dataset
and lists, model and options, weight files) and builds the model from the registry and
the datasets from its input spec (:func:`prepare`); only then is the run folder created.
It runs epochs of SGD with the per-group multipliers of ops.engine.optim; the loss is the
model's training objective (:class:`TrainingObjective`), one optimiser step of K
micro-batches at a time (:class:`ops.engine.train_step.TrainStep`: mixing, accumulation,
clipping). The loop never waits for the device: loss and accuracy are summed there
(:class:`EpochMeter`) and read every ``log_interval`` steps, at the end of the epoch and
for a checkpoint; the loader's workers live across epochs, the epoch travelling with the
sampler's keys (ops.data.dataset.EpochKeys), so resuming stays exact. Rank 0 logs, saves and draws
progress bars; checkpoints describe their model (:func:`ops.engine.checkpoints.model_metadata`).
SIGTERM/SIGINT (to the main process or its whole group; workers ignore them) save ``last.pth``
at the next step boundary, with the position inside the epoch and the epoch's running sums,
and stop with exit code 128 + signal; under DDP every rank agrees on the step and rank 0
saves. ``--resume auto`` continues exactly where it stopped, logging what a straight run logs.
Unreadable samples go to one ledger per split and epoch, summed over ranks (``skipped.json``).
"""
from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from archs.checkpoint import drop_classifier, extract_state_dict, load_state_dict_strict, read_checkpoint
from archs.registry import InputSpec, create_model, model_options, training_loss
from dataset_configs import DatasetConfig, read_class_names
from ops.common.download import resolve_checkpoint_arg
from ops.common.fileio import check_output_dir
from ops.engine.checkpoints import (load_training_state, model_metadata, remove_stale_temporaries, resume_path,
                                    rng_state, save_checkpoint, set_rng_state)
from ops.engine.config import TrainSettings, write_json
from ops.data.loader import batch_targets, build_dataset, dataset_config, make_loader, model_input, resolve_spec
from ops.engine.distributed import DistInfo, barrier, gather_objects, init_distributed, max_over_ranks
from ops.common.errors import UserError
from ops.engine.inference import predict
from ops.evaluation.metrics import mean_average_precision, topk_accuracy
from ops.engine.optim import LRSchedule, make_optimizer, param_groups
from ops.common.runlog import RunLog, SkipLedger, progress
from ops.data.repeated_aug import TrainSampler
from ops.data.dataset import EpochKeys, VideoDataset, report_missing
from ops.data.decoders.registry import describe as describe_decoders
from ops.engine.mixing import Mixer
from ops.engine.speed import CompileGuard, checkpoint_stages, to_channels_last
from ops.engine.train_step import RunningSums, TrainStep, criterion_for, grouped
from ops.data.sources import SourceError


def last_line(exc: Exception) -> str:
    """The message of an exception re-raised from a DataLoader worker (its last line)."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1].split(": ", 1)[-1] if len(lines) > 1 else (lines[0] if lines else type(exc).__name__)


class TrainingInterrupted(Exception):
    """Raised after a signal: the checkpoint is saved; ``signum`` says which signal; ``announce``
    is true on the one process that tells the user (rank 0)."""

    def __init__(self, signum: int, path: Path, announce: bool = True) -> None:
        super().__init__(f"interrupted by signal {signum}: checkpoint saved to {path}; continue with --resume auto")
        self.signum = signum
        self.announce = announce


# TSM semantics: partial BN is on unless --npb (for the models that have it)
TRAIN_DEFAULTS = {"partial_bn": True}


class TrainingObjective(nn.Module):
    """A model and its criterion as one module: ``forward(x, target) -> (loss, logits (N, K))``
    through :func:`archs.registry.training_loss` (the model's own objective, else the criterion
    on its logits). Wrapping this module in DDP makes DDP's forward hooks run around it.

    x: (N, C, T, H, W); target: (N,) class indices or (N, K) multi-hot.
    """

    def __init__(self, model: nn.Module, criterion: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.criterion = criterion

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return training_loss(self.model, x, target, self.criterion)


def build_model(settings: TrainSettings, num_classes: int) -> Tuple[nn.Module, bool, List[str]]:
    """The model, whether its classifier is new on a pretrained backbone (for x5/x10 lr) and
    messages for the run log."""
    takes = model_options(settings.arch)
    options = {**{k: v for k, v in TRAIN_DEFAULTS.items() if k in takes}, **settings.model_kwargs()}
    pretrained = None if settings.tune_from else resolve_checkpoint_arg(settings.pretrained)
    model = create_model(settings.arch, num_classes, pretrained=pretrained, **options)
    new_classifier = settings.pretrained == "imagenet" and not settings.tune_from
    messages = []
    if settings.tune_from:
        state = extract_state_dict(read_checkpoint(resolve_checkpoint_arg(settings.tune_from)))
        convert = getattr(model, "convert_state_dict", None)
        state = convert(state) if convert else state
        dropped = drop_classifier(model, state)
        if dropped:
            new_classifier = True
            own = model.state_dict()
            state.update({k: own[k] for k in dropped})  # keep the fresh classifier
            messages.append(f"--tune-from: classifier of {settings.tune_from} dropped (another class count; "
                            f"{', '.join(dropped)}); a new one is trained")
        load_state_dict_strict(model, state, source=settings.tune_from)
    return model, new_classifier, messages


def video_metrics(logits: np.ndarray, targets: np.ndarray, multi_label: bool) -> Dict[str, float]:
    """Top-1/5 (single-label) or mAP (multi-label) of per-video scores (V, K)."""
    if multi_label:
        return {"mAP": mean_average_precision(logits, targets)}
    acc = topk_accuracy(logits, targets, (1, 5))
    return {"top1": acc[1], "top5": acc[5]}


class StopRequest:
    """SIGTERM/SIGINT while training, recorded and not acted on: the loop saves ``last.pth`` at the
    next step boundary and stops (exit 128 + signal). A second signal, e.g. during that save, is
    recorded too: nothing is raised inside ``torch.save``. Entering also unblocks the two signals,
    so one that came while whoever started us had them blocked takes effect now."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.signum = 0
        self._previous: Dict[int, object] = {}

    def __enter__(self) -> "StopRequest":
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, self.SIGNALS)
        return self

    def _handle(self, signum, frame) -> None:
        self.signum = signum

    def agreed(self, info: DistInfo) -> int:
        """The signal every rank stops for now (the largest any rank got), 0 to go on. Collective."""
        return max_over_ranks(self.signum, info)

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def batches(loader: Iterable[dict], stop: StopRequest) -> Iterator[dict]:
    """The loader's batches; a DataLoader worker killed while a stop is requested ends them (the
    loop then stops at the step it has reached) instead of failing the run."""
    it = iter(loader)
    while True:
        try:
            batch = next(it)
        except StopIteration:
            return
        except RuntimeError as exc:
            if stop.signum and "DataLoader worker" in str(exc):
                return
            raise
        yield batch


class EpochMeter:
    """The running sums a training epoch's logged loss and top-1 average over, kept on the device
    (:class:`ops.engine.train_step.RunningSums`: no step waits for it). A mid-epoch checkpoint
    keeps them (:meth:`state_dict`, one read), so a resumed epoch logs what a straight one does;
    the clip rate counts only this process's clips since it (re)started the epoch."""

    def __init__(self, device: torch.device, state: Optional[dict] = None) -> None:
        self.sums = RunningSums(device)
        if state:
            self.sums.reset(state["loss_sum"], state["top1_sum"] / 100.0, state["seen"])
        self.clips_before, self.tic = self.sums.count, time.time()

    def start_clock(self) -> "EpochMeter":
        """Count the clip rate from now on."""
        self.clips_before, self.tic = self.sums.count, time.time()
        return self

    def running(self) -> Dict[str, float]:
        """Mean loss and top-1 so far (reads the device)."""
        return self.sums.read()

    def stats(self, lr: float, world_size: int, multi_label: bool) -> Dict[str, float]:
        totals = self.sums.read()
        rate = (totals["count"] - self.clips_before) * world_size / max(time.time() - self.tic, 1e-9)
        stats = {"loss/train": totals["loss"], "lr": lr, "clips_per_s": rate}
        if not multi_label:
            stats["acc/train_top1"] = totals["top1"]
        return stats

    def state_dict(self) -> Dict[str, float]:
        totals = self.sums.read()
        return {"seen": totals["count"], "loss_sum": totals["loss_sum"], "top1_sum": 100.0 * totals["correct"]}


def check_sync_bn(sync_bn: bool, world_size: int, device_type: str) -> None:
    """--sync-bn runs only with 2+ processes on CUDA (SyncBatchNorm has no CPU kernels, and in one
    process it would change nothing): a :class:`UserError` otherwise, before any work."""
    if sync_bn and (world_size < 2 or device_type != "cuda"):
        where = "one process" if world_size < 2 else f"{device_type} (gloo)"
        raise UserError(f"--sync-bn needs 2+ processes on CUDA, not {where}: drop --sync-bn, or train with "
                        "--nproc-per-node 2+ and --device cuda")


@dataclass
class Prepared:
    """Everything checked and built before the run folder is created."""

    cfg: DatasetConfig
    class_names: List[str]
    model: nn.Module
    new_classifier: bool
    messages: List[str]
    spec: InputSpec
    train_set: VideoDataset
    val_set: VideoDataset
    resume: Optional[Path]


def prepare(settings: TrainSettings) -> Prepared:
    """Check the output folder, the dataset and its lists, the model and its options and the
    weight files, and build the model and datasets; nothing is written. Raises the user error
    of the first problem."""
    out_dir = check_output_dir(Path(settings.output_dir), "run folder")
    cfg = dataset_config(settings.data)
    classes_file = Path(cfg.root) / cfg.classes_file
    class_names = read_class_names(classes_file) if classes_file.is_file() else []
    model, new_classifier, messages = build_model(settings, cfg.num_classes)
    spec = resolve_spec(model.input_spec, settings.data)
    train_set = build_dataset(settings.data, spec, "train", "train", cfg=cfg)
    val_set = build_dataset(settings.data, spec, "val", "val", cfg=cfg)
    return Prepared(cfg, class_names, model, new_classifier, messages, spec, train_set, val_set,
                    resume_path(settings.resume, out_dir))


def train(settings: TrainSettings, notes: Sequence[str] = ()) -> Dict[str, float]:
    """Train as ``settings`` say (``notes``: lines for the run log, e.g. a recipe's lr scaling);
    returns the last validation metrics and the best one."""
    info = init_distributed(settings.device)
    check_sync_bn(settings.sync_bn, info.world_size, info.device.type)
    torch.manual_seed(settings.seed)
    prepared = prepare(settings)
    epoch_steps(-(-len(prepared.train_set) // info.world_size), settings)  # before the run folder exists
    out_dir = Path(settings.output_dir)
    log = RunLog(out_dir, info.is_main, prefix=settings.log_prefix)
    try:
        if info.is_main:
            for path in remove_stale_temporaries(out_dir):
                log.info(f"removed {path.name}, left by a process that died while writing")
        for message in [*notes, *prepared.messages]:
            log.info(message)
        log.info(describe_decoders(prepared.train_set.decoder, settings.data.decode_device))
        if info.is_main:
            for split, dataset in (("train", prepared.train_set), ("val", prepared.val_set)):
                message = report_missing(dataset.missing, out_dir, split)
                if message:
                    log.warn(message)
        return _train(settings, prepared, info, out_dir, log)
    except SourceError as exc:  # strict mode, or a dataset where nothing reads
        raise UserError(last_line(exc)) from None
    finally:
        log.close()


def epoch_steps(per_rank: int, settings: TrainSettings) -> Tuple[bool, int]:
    """(drop_last, optimiser steps per epoch) for ``per_rank`` clips per process per epoch: batches
    of ``batch_size`` (the last one dropped when incomplete, unless it is the only one), grouped
    by ``accumulate``, capped by ``max_iters_per_epoch``. A :class:`UserError` when no step fits."""
    drop_last = per_rank > settings.batch_size
    micro_batches = per_rank // settings.batch_size if drop_last else -(-per_rank // settings.batch_size)
    if settings.max_iters_per_epoch:
        micro_batches = min(micro_batches, settings.max_iters_per_epoch * settings.accumulate)
    if micro_batches < settings.accumulate:
        raise UserError(f"--accumulate {settings.accumulate}: an epoch has only {micro_batches} batch(es) of "
                        f"{settings.batch_size} per process; lower --accumulate or --batch-size")
    return drop_last, micro_batches // settings.accumulate


def apply_speed_settings(model: nn.Module, settings: TrainSettings, info: DistInfo, log: RunLog) -> None:
    """``--checkpoint-activations`` and ``--channels-last`` on the model (on its device), and
    cuDNN's autotuner on CUDA (training clips have one fixed shape)."""
    if settings.checkpoint_activations:
        names = checkpoint_stages(model)
        log.info(f"--checkpoint-activations: {len(names)} stages recompute their activations in the backward pass")
    if settings.channels_last:
        to_channels_last(model)
    if info.device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def _train(settings: TrainSettings, prepared: Prepared, info: DistInfo, out_dir: Path, log: RunLog) -> Dict[str, float]:
    cfg, model, spec, train_set, val_set = prepared.cfg, prepared.model, prepared.spec, prepared.train_set, prepared.val_set
    metadata = model_metadata(model, cfg.num_classes, prepared.class_names, spec)
    resolved = {**settings.to_dict(), **metadata, "dataset_config": cfg.to_dict(), "world_size": info.world_size}
    if info.is_main:
        write_json(out_dir / "settings.json", resolved)
        log.info(f"{model.arch_name} on {cfg.name}: {len(train_set)} train / {len(val_set)} val videos, "
                 f"{cfg.num_classes} classes, {info.world_size} process(es) on {info.device}")

    model.to(info.device)
    if settings.sync_bn and info.distributed:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    apply_speed_settings(model, settings, info, log)
    groups = param_groups(model, settings.wd, prepared.new_classifier)
    optimizer = make_optimizer(settings.optimizer, groups, settings.lr, settings.momentum)
    scaler = torch.amp.GradScaler(info.device.type, enabled=settings.amp and info.device.type == "cuda")
    mixer = Mixer(cfg.num_classes, settings.mixup, settings.cutmix, settings.label_smoothing)
    mixer = mixer if mixer.enabled else None
    objective: nn.Module = TrainingObjective(model, criterion_for(cfg.multi_label, soft=mixer is not None))
    if info.distributed:
        ids = [info.local_rank] if info.device.type == "cuda" else None
        objective = nn.parallel.DistributedDataParallel(
            objective, device_ids=ids, find_unused_parameters=getattr(model, "has_unused_parameters", False))

    guard = CompileGuard(model, log.info) if settings.compile else None
    train_step = TrainStep(objective, model, optimizer, scaler, info.device, amp=settings.amp, gd=settings.gd,
                           mixer=mixer, seed=settings.seed, rank=info.rank, channels_last=settings.channels_last,
                           guard=guard)

    sampler = TrainSampler(len(train_set), info, settings.seed, settings.data.repeated_aug)
    keys = EpochKeys(sampler)
    drop_last, iters = epoch_steps(len(sampler), settings)
    schedule = LRSchedule(settings.lr, settings.epochs, iters, settings.lr_scheduler, settings.lr_steps,
                          settings.warmup_epochs)

    start_epoch, start_step, iteration, best = 0, 0, 0, -1.0
    ledger = SkipLedger(log, out_dir / "skipped.json" if info.is_main else None)
    meter = EpochMeter(info.device)
    ckpt_path = prepared.resume
    if ckpt_path is not None:
        state = load_training_state(ckpt_path)
        load_state_dict_strict(model, state["model"], source=str(ckpt_path))
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, start_step, iteration, best = state["epoch"], state["step"], state["iteration"], state["best_metric"]
        set_rng_state(state["rng"])
        meter = EpochMeter(info.device, state.get("epoch_sums"))
        if info.is_main and "skipped" in state:  # every rank's reports, counted once
            ledger.load_state_dict(state["skipped"])
        log.info(f"resumed from {ckpt_path} at epoch {start_epoch} step {start_step}")

    def snapshot(epoch: int, step: int, sums: Optional[dict] = None, pending: Tuple[str, ...] = ()) -> dict:
        """The training state after ``step`` steps of ``epoch``; a mid-epoch one carries the epoch's
        running sums and every rank's skip reports so far."""
        return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                "epoch": epoch, "step": step, "iteration": iteration, "best_metric": best, "rng": rng_state(),
                "epoch_sums": sums, "skipped": ledger.state_dict(pending), **metadata, "settings": resolved}

    def interrupt(epoch: int, step: int, signum: int, collective: bool = True) -> TrainingInterrupted:
        """Save ``last.pth`` after ``step`` of ``epoch`` (rank 0), with the epoch's running sums and
        the skip reports of every rank (``collective``: all ranks are here) or of this one."""
        pending = every_ranks_reports(ledger, info) if collective else ledger.take()
        if info.is_main:
            save_checkpoint(out_dir / "last.pth", snapshot(epoch, step, meter.state_dict(), tuple(pending)))
        return stopped(signum, epoch, step, out_dir / "last.pth", info, log, collective)

    metric_name = "mAP" if cfg.multi_label else "top1"
    result: Dict[str, float] = {}
    train_set.set_epoch(start_epoch, settings.seed)  # the seed; each key carries its epoch
    loader = make_loader(train_set, settings.batch_size, settings.data.workers, sampler=keys, drop_last=drop_last,
                         seed=settings.seed, persistent=True)
    with StopRequest() as stop:
        for epoch in range(start_epoch, settings.epochs):
            skip = start_step if epoch == start_epoch else 0
            meter = (meter if epoch == start_epoch else EpochMeter(info.device)).start_clock()
            keys.set_epoch(epoch, skip * settings.accumulate * settings.batch_size)
            objective.train()
            step = skip
            lr = schedule.apply(optimizer, iteration)  # defined even when a resumed epoch has no steps left
            bar = progress(grouped(batches(loader, stop), settings.accumulate), iters - skip, f"epoch {epoch}", info.is_main)
            for group in bar:
                if step >= iters:
                    break
                lr = schedule.apply(optimizer, iteration)
                micro = [(model_input(b, train_set, info.device).flatten(0, 1), batch_targets(b, info.device))
                         for b in group]
                train_step(micro, iteration, meter.sums)
                iteration += 1
                step += 1
                for b in group:
                    ledger.add(b["bad"])
                if step % settings.log_interval == 0:
                    running = meter.running()
                    bar.set_postfix(loss=f"{running['loss']:.4f}", lr=f"{lr:.5f}")
                    log.info(f"epoch {epoch} step {step}/{iters}: loss {running['loss']:.4f} lr {lr:.5f}"
                             + (f" train top-1 {running['top1']:.2f}" if not cfg.multi_label else ""))
                signum = stop.agreed(info)
                if signum:
                    raise interrupt(epoch, step, signum)
            if step < iters and stop.signum:  # a DataLoader worker died during the stop: this rank alone
                raise interrupt(epoch, step, stop.signum, collective=False)
            ledger.close(epoch, "train", every_ranks_reports(ledger, info))
            train_stats = meter.stats(lr, info.world_size, cfg.multi_label)
            log.scalars(train_stats, epoch)
            log.info(f"epoch {epoch}: loss {train_stats['loss/train']:.4f} lr {lr:.5f} {train_stats['clips_per_s']:.1f} "
                     "clips/s" + (f" train top-1 {train_stats['acc/train_top1']:.2f}" if not cfg.multi_label else ""))
            is_best = False
            if (epoch + 1) % settings.eval_freq == 0 or epoch + 1 == settings.epochs:
                preds = predict(model, val_set, info, batch_size=settings.batch_size, workers=settings.data.workers,
                                amp=settings.amp, desc="val")
                ledger.close(epoch, "val", preds.bad)  # already gathered from every rank
                result = video_metrics(preds.logits.mean(1), preds.targets, cfg.multi_label)
                is_best = result[metric_name] > best
                best = max(best, result[metric_name])
                log.scalars({f"acc/test_{k}": v for k, v in result.items()} | {"acc/test_best": best}, epoch)
                log.info(f"epoch {epoch} val: " + " ".join(f"{k} {v:.2f}" for k, v in result.items())
                         + f" (best {metric_name} {best:.2f})")
            if info.is_main:
                state = snapshot(epoch + 1, 0)
                save_checkpoint(out_dir / "last.pth", state)
                if is_best:
                    save_checkpoint(out_dir / "best.pth", state)
            signum = stop.agreed(info)
            if signum and epoch + 1 < settings.epochs:  # came during validation or the save: saved above
                raise stopped(signum, epoch + 1, 0, out_dir / "last.pth", info, log)
    summary = ledger.summary()
    if summary:
        log.info(summary)
    return {**result, f"best_{metric_name}": best}


def every_ranks_reports(ledger: SkipLedger, info: DistInfo) -> List[str]:
    """The skip reports of the running epoch on all ranks (taken from each rank's ledger). Collective."""
    return [line for lines in gather_objects(ledger.take(), info) for line in lines]


def stopped(signum: int, epoch: int, step: int, path: Path, info: DistInfo, log: RunLog,
            collective: bool = True) -> TrainingInterrupted:
    """After rank 0 saved ``path`` at ``step`` of ``epoch`` for ``signum``: log it, wait for that
    save on every rank (``collective``; a launcher stops the others when one exits) and give the
    exception to raise."""
    log.info(f"interrupted by signal {signum} at epoch {epoch} step {step}: saved {path}")
    if collective:
        barrier(info)
    return TrainingInterrupted(signum, path, announce=info.is_main)
