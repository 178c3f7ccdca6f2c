"""Profile X3D / VoV3D inference on CPU and measure the exact speed-ups.

Prints torch.profiler's top ops for one clip (default 16x224^2) of each model, then the
median time of the plain model against the same weights run with
``fast_depthwise=True`` (temporal depthwise convs as shifted multiply-adds) and
``fuse_bn()`` (BatchNorm folded into the convs), their ratio, and the largest
difference between the two outputs.

    python scripts/profile_x3d.py --models x3d_m vov3d_m --frames 16 --size 224 --threads 1
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from archs import create_model  # noqa: E402


def with_trained_statistics(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random non-trivial BN statistics/affines (fresh models zero the final BNs, which
    would make every residual branch vanish and the comparison meaningless)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm3d):
                for t, (lo, hi) in ((m.weight, (0.5, 1.5)), (m.bias, (-0.2, 0.2)),
                                    (m.running_mean, (-0.1, 0.1)), (m.running_var, (0.5, 1.5))):
                    t.copy_(torch.rand(t.shape, generator=gen) * (hi - lo) + lo)
    return model.eval()


def median_times(model: nn.Module, x: torch.Tensor, repeats: int) -> tuple:
    """Median (wall, process CPU) seconds of one forward, after one warm-up call."""
    wall, cpu = [], []
    with torch.no_grad():
        model(x)
        for _ in range(repeats):
            w, c = time.perf_counter(), time.process_time()
            model(x)
            wall.append(time.perf_counter() - w)
            cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["x3d_m", "vov3d_m"])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rows", type=int, default=12, help="ops shown in the profile table")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(1, 3, args.frames, args.size, args.size)
    print(f"input {tuple(x.shape)}, {torch.get_num_threads()} thread(s), torch {torch.__version__}")
    for name in args.models:
        plain = with_trained_statistics(create_model(name, num_classes=400))
        fast = create_model(name, num_classes=400, fast_depthwise=True)
        fast.load_state_dict(plain.state_dict())
        fast = copy.deepcopy(fast).eval().fuse_bn()

        with torch.no_grad():
            plain(x)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                plain(x)
        print(f"\n== {name}: where the time goes (plain model) ==")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))

        with torch.no_grad():
            diff = (plain(x) - fast(x)).abs().max().item()
        before, after = median_times(plain, x, args.repeats), median_times(fast, x, args.repeats)
        print(f"{name}: plain {before[0]:.3f} s wall / {before[1]:.3f} s CPU; "
              f"fast_depthwise+fuse_bn {after[0]:.3f} s / {after[1]:.3f} s; "
              f"speed-up x{before[0] / after[0]:.2f} wall, x{before[1] / after[1]:.2f} CPU; max |diff| {diff:.2e}")


if __name__ == "__main__":
    main()
