"""Training-step benchmark: clips/s and peak RSS of a full SGD step (forward, backward,
gradient clipping, update) with videorec's optimiser groups, on random clips.

    python scripts/bench_train.py [--archs tsm_r50 tsm_mbv2] [--batch-size 2] [--steps 5] [--device cpu|cuda] [--amp]

On a GPU, run it with and without --amp to compare. Data loading is measured
separately by scripts/bench_loader.py.
"""
from __future__ import annotations

import argparse
import resource
import time

import torch
from torch import nn

from archs import create_model
from ops.engine.inference import autocast
from ops.engine.optim import param_groups


def bench(arch: str, batch: int, steps: int, device: torch.device, amp: bool) -> float:
    model = create_model(arch, 400).to(device).train()
    spec = model.input_spec
    optimizer = torch.optim.SGD(param_groups(model, 1e-4, False), lr=0.01, momentum=0.9)
    scaler = torch.amp.GradScaler(device.type, enabled=amp and device.type == "cuda")
    x = torch.randn(batch, 3, spec.num_frames, spec.crop_size, spec.crop_size, device=device)
    y = torch.randint(0, 400, (batch,), device=device)
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        with autocast(device, amp):
            loss = loss_fn(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), 20)
        scaler.step(optimizer)
        scaler.update()

    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    tic = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - tic)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", nargs="+", default=["tsm_r50", "tsm_mbv2"])
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    for arch in args.archs:
        rate = bench(arch, args.batch_size, args.steps, device, args.amp)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        gpu = f", peak GPU {torch.cuda.max_memory_allocated() / 2**20:.0f} MB" if device.type == "cuda" else ""
        print(f"{arch:<12} {args.device}{' amp' if args.amp else ''}: {rate:6.2f} training clips/s "
              f"(batch {args.batch_size}), peak RSS so far {peak:.0f} MB{gpu}")


if __name__ == "__main__":
    main()
