"""Model-zoo benchmark: forward clips/s (batch 1, eval, no grad) at each model's standard
input on CPU, and peak RSS, each model in a fresh process.

    python scripts/bench_models.py [PATTERN ...] [--iters 3] [--threads 1] [--crop N]

Patterns are shell patterns on registry names (default: every model). Large models
at full size take tens of seconds per clip on a small CPU; pass --crop to shrink.
Comparisons with the reference implementations were made outside the repository
(see the issue notes): this script measures ours only.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time


def run_one(name: str, iters: int, threads: int, crop, queue) -> None:
    import torch

    from archs import create_model, view_shape

    torch.set_num_threads(threads)
    model = create_model(name, 400).eval()
    x = torch.randn(view_shape(model.input_spec, crop))
    with torch.no_grad():
        model(x)  # warm-up
        tic = time.perf_counter()
        for _ in range(iters):
            model(x)
        rate = iters / (time.perf_counter() - tic)
    queue.put((tuple(x.shape), rate, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def main() -> None:
    from archs import list_models

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("patterns", nargs="*", default=["*"])
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--crop", type=int, default=None)
    args = parser.parse_args()
    names = sorted({n for p in args.patterns for n in list_models(p)})
    ctx = mp.get_context("spawn")
    print(f"{'model':<22} {'input (N,C,T,H,W)':<24} {'clips/s':>8} {'peak RSS MB':>12}   ({args.threads} thread(s))")
    for name in names:
        queue = ctx.Queue()
        proc = ctx.Process(target=run_one, args=(name, args.iters, args.threads, args.crop, queue))
        proc.start()
        shape, rate, rss = queue.get()
        proc.join()
        print(f"{name:<22} {str(shape):<24} {rate:8.3f} {rss:12.0f}")


if __name__ == "__main__":
    main()
