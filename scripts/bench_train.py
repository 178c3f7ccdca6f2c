"""Training benchmark: what each speed/memory switch and the loop itself cost, in one run.

    python scripts/bench_train.py [--arch tsn_r18] [--batch-size 4] [--segments 8] [--size 112]
                                  [--steps 6] [--device cpu|cuda] [--skip-compile]

Part 1, the model step (forward, backward, clipping, SGD update through
ops.engine.train_step.TrainStep, the trainer's own step, on random clips): clips/s and
peak memory (on CPU the peak RSS above what was resident before the first step, i.e.
the step's activations, gradients and optimiser state; ``torch.cuda.max_memory_allocated``
on GPU) for baseline,
``--channels-last``, ``--checkpoint-activations``, ``--compile`` and ``--accumulate 2``
(two micro-batches of half the batch per step), each in its own process so peak memory
is its own; ratios against baseline.

Part 2, the loop around it: a few epochs over a small synthetic frame dataset through
the real dataset and loader (2 workers), per step the time blocked waiting for the
loader, the model step and the loop's bookkeeping (reading loss and accuracy), for the
old loop (``.item()`` and a numpy top-1 on every step, workers started again every epoch)
and the new one (sums on the device read at the end of the epoch, persistent workers).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict

import numpy as np
import torch

MODES = ["baseline", "channels_last", "checkpoint_activations", "compile", "accumulate2"]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def build_step(arch: str, segments: int, device: torch.device, mode: str, log=print):
    from archs import create_model
    from ops.engine.optim import param_groups
    from ops.engine.speed import CompileGuard, checkpoint_stages, to_channels_last
    from ops.engine.train_step import TrainStep, criterion_for
    from ops.engine.trainer import TrainingObjective

    torch.manual_seed(0)
    model = create_model(arch, 400, num_segments=segments).to(device).train()
    if mode == "checkpoint_activations":
        checkpoint_stages(model)
    if mode == "channels_last":
        to_channels_last(model)
    guard = CompileGuard(model, log) if mode == "compile" else None
    optimizer = torch.optim.SGD(param_groups(model, 1e-4, False), lr=0.01, momentum=0.9)
    scaler = torch.amp.GradScaler(device.type, enabled=False)
    return model, TrainStep(TrainingObjective(model, criterion_for(False)), model, optimizer, scaler, device, gd=20.0,
                            channels_last=mode == "channels_last", guard=guard)


def current_rss_mb() -> float:
    """Resident memory of this process now (Linux), MB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2 ** 20


def bench_mode(args: argparse.Namespace) -> Dict[str, float]:
    """One mode in this process: clips/s over ``steps`` steps after a warm-up step, peak memory."""
    from ops.engine.train_step import RunningSums

    device = torch.device(args.device)
    model, step = build_step(args.arch, args.segments, device, args.mode)
    frames = model.input_spec.num_frames
    x = torch.randn(args.batch_size, 3, frames, args.size, args.size, device=device)
    y = torch.randint(0, 400, (args.batch_size,), device=device)
    half = args.batch_size // 2
    micro = [(x[:half], y[:half]), (x[half:], y[half:])] if args.mode == "accumulate2" else [(x, y)]
    sums = RunningSums(device)
    resident = current_rss_mb()  # before the first step: the interpreter, torch, the model and the batch
    tic = time.perf_counter()
    step(micro, 0, sums)  # warm-up (and compilation)
    sync(device)
    first = time.perf_counter() - tic
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    tic = time.perf_counter()
    for i in range(args.steps):
        step(micro, i + 1, sums)
    sync(device)
    elapsed = time.perf_counter() - tic
    peak = (torch.cuda.max_memory_allocated() if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2 ** 20
    # on CPU the step's own memory is the peak above what was resident before it
    step_mb = peak if device.type == "cuda" else peak - resident
    return {"clips_per_s": args.batch_size * args.steps / elapsed, "step_s": elapsed / args.steps,
            "first_step_s": first, "peak_mb": peak, "step_mb": step_mb, "compiled": "forward" in model.__dict__}


def run_modes(args: argparse.Namespace) -> Dict[str, Dict[str, float]]:
    out = {}
    for mode in MODES:
        if mode == "compile" and args.skip_compile:
            continue
        cmd = [sys.executable, __file__, "--one", mode, "--arch", args.arch, "--batch-size", str(args.batch_size),
               "--segments", str(args.segments), "--size", str(args.size), "--steps", str(args.steps),
               "--device", args.device]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{mode}: failed\n{done.stderr[-2000:]}")
            continue
        lines = done.stdout.strip().splitlines()
        out[mode] = json.loads(lines[-1])
        out[mode]["notes"] = [line for line in lines[:-1] if line.startswith("--compile")]
    return out


def write_dataset(root: Path, videos: int, size: int, frames: int = 16) -> Path:
    """A custom dataset config over ``videos`` rendered synthetic videos (frame folders)."""
    from torchvision.io import write_jpeg

    from ops.prep.synthetic import render_video

    rng = np.random.default_rng(0)
    classes = ("grow", "move_left", "move_right", "shrink")
    rows = []
    for i in range(videos):
        name = classes[i % 4]
        folder = root / f"v{i}"
        folder.mkdir(parents=True)
        for t, frame in enumerate(render_video(name, rng, frames=frames, size=size)):
            write_jpeg(torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1), str(folder / f"img_{t + 1:05d}.jpg"))
        rows.append(f"v{i} {frames} {i % 4}")
    (root / "train.txt").write_text("\n".join(rows) + "\n")
    (root / "val.txt").write_text("\n".join(rows[:4]) + "\n")
    config = root / "bench.json"
    config.write_text(json.dumps({"name": "bench", "num_classes": 4, "root": ".", "flip": "none"}))
    return config


def bench_loop(args: argparse.Namespace, config: Path, new_loop: bool) -> Dict[str, float]:
    """Epochs through the real loader and TrainStep, per step: loader wait, step, bookkeeping (s)."""
    from ops.data.dataset import EpochKeys
    from ops.data.loader import batch_targets, build_dataset, model_input, resolve_spec
    from ops.data.repeated_aug import TrainSampler
    from ops.engine.config import DataSettings
    from ops.engine.distributed import DistInfo
    from ops.engine.train_step import RunningSums
    from ops.evaluation.metrics import topk_accuracy

    device = torch.device(args.device)
    model, step = build_step(args.arch, args.segments, device, "baseline")
    data = DataSettings(dataset=str(config), crop_size=args.size, scale_size=args.size, workers=2)
    spec = resolve_spec(model.input_spec, data)
    dataset = build_dataset(data, spec, "train", "train")
    dataset.set_epoch(0, 0)
    sampler = EpochKeys(TrainSampler(len(dataset), DistInfo(), 0))
    from ops.data.loader import make_loader

    loader = make_loader(dataset, args.batch_size, 2, sampler=sampler, drop_last=True, persistent=new_loop)
    waits, steps, books = [], [], []
    iteration = 0
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        sums, loss_sum, top1_sum = RunningSums(device), 0.0, 0.0
        it = iter(loader)
        while True:
            tic = time.perf_counter()
            batch = next(it, None)
            if batch is None:
                break
            x = model_input(batch, dataset, device).flatten(0, 1)
            y = batch_targets(batch, device)
            waits.append(time.perf_counter() - tic)
            tic = time.perf_counter()
            results = step([(x, y)], iteration, sums)
            sync(device)
            steps.append(time.perf_counter() - tic)
            tic = time.perf_counter()
            if not new_loop:  # the old loop: a device-to-host read and a numpy top-1 on every step
                for loss, logits, target in results:
                    loss_sum += loss.item() * len(target)
                    top1_sum += topk_accuracy(logits.float().cpu().numpy(), target.cpu().numpy(), (1,))[1] * len(target)
            books.append(time.perf_counter() - tic)
            iteration += 1
        if new_loop:  # the new loop reads once, at the end of the epoch
            tic = time.perf_counter()
            sums.read()
            books[-1] += time.perf_counter() - tic
    return {"wait_ms": 1000 * float(np.mean(waits)), "step_ms": 1000 * float(np.mean(steps)),
            "bookkeeping_ms": 1000 * float(np.mean(books)), "first_wait_ms": 1000 * float(np.max(waits))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="tsn_r18")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--segments", type=int, default=8)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--skip-compile", action="store_true")
    parser.add_argument("--one", dest="mode", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        torch.backends.cudnn.benchmark = True
        print(json.dumps(bench_mode(args)))
        return
    torch.backends.cudnn.benchmark = True
    memory = "peak GPU MB" if args.device == "cuda" else "step RSS MB"
    print(f"{args.arch}, {args.segments} segments at {args.size}px, batch {args.batch_size}, {args.device}, "
          f"{torch.get_num_threads()} threads")
    results = run_modes(args)
    base = results.get("baseline")
    print(f"{'mode':<24} {'clips/s':>8} {'x base':>7} {memory:>12} {'x base':>7} {'first step s':>13}")
    for mode, r in results.items():
        ratio = r["clips_per_s"] / base["clips_per_s"] if base else float("nan")
        mem = r["step_mb"] / base["step_mb"] if base else float("nan")
        print(f"{mode:<24} {r['clips_per_s']:8.2f} {ratio:7.2f} {r['step_mb']:12.0f} {mem:7.2f} {r['first_step_s']:13.1f}"
              + ("" if r.get("compiled", True) or mode != "compile" else "  (fell back to eager)"))
        for note in r.get("notes", []):
            print(f"  {note}")
    with tempfile.TemporaryDirectory() as tmp:
        config = write_dataset(Path(tmp), args.videos, max(args.size, 64))
        print(f"\nthe loop, {args.epochs} epochs x {args.videos // args.batch_size} steps, 2 loader workers "
              f"(per step, ms)")
        print(f"{'loop':<44} {'loader wait':>11} {'first wait':>10} {'fwd+bwd+opt':>11} {'bookkeeping':>11}")
        for new in (False, True):
            r = bench_loop(args, config, new)
            name = ("device sums, persistent workers" if new else "per-step .item() + numpy top-1, new workers/epoch")
            print(f"{name:<44} {r['wait_ms']:11.1f} {r['first_wait_ms']:10.1f} {r['step_ms']:11.1f} "
                  f"{r['bookkeeping_ms']:11.2f}")


if __name__ == "__main__":
    main()
