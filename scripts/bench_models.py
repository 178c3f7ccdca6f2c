"""Model-zoo benchmark: forward clips/s (batch 1, eval, no grad) at each model's standard
input on CPU, and peak RSS, each model in a fresh process; with ``--onnx`` also the model
exported to ONNX (``ops.apps.export``, checked against PyTorch) and run in ONNX Runtime with
the same threads, on the same clip (stream models are exported as a frame step: no clip row).

    python scripts/bench_models.py [PATTERN ...] [--iters 3] [--threads 1] [--crop N] [--onnx]

Patterns are shell patterns on registry names (default: every model). Large models
at full size take tens of seconds per clip on a small CPU; pass --crop to shrink.
Comparisons with the reference implementations were made outside the repository
(see the issue notes): this script measures ours only.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional


def clips_per_second(forward: Callable[[], object], iters: int) -> float:
    forward()  # warm-up
    tic = time.perf_counter()
    for _ in range(iters):
        forward()
    return iters / (time.perf_counter() - tic)


def onnx_rate(model, x, iters: int, threads: int) -> Optional[float]:
    """Clips/s of ``model`` exported to ONNX and run in ONNX Runtime (None for stream models)."""
    from ops.apps.export import ExportSettings, export_model, is_stream
    from ops.apps.runtime import load_onnx

    if is_stream(model):
        return None
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        export_model(model, ExportSettings(output=str(path), size=x.shape[-1]),  # the model's own frames
                     log=lambda line: None)
        runtime = load_onnx(path, threads=threads)
        return clips_per_second(lambda: runtime(x), iters)


def run_one(name: str, iters: int, threads: int, crop, onnx: bool, queue) -> None:
    import torch

    from archs import create_model, view_shape

    torch.set_num_threads(threads)
    model = create_model(name, 400).eval()
    x = torch.randn(view_shape(model.input_spec, crop))
    with torch.no_grad():
        rate = clips_per_second(lambda: model(x), iters)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the export's own memory
    queue.put((tuple(x.shape), rate, onnx_rate(model, x, iters, threads) if onnx else None, rss))


def main() -> None:
    from archs import list_models

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("patterns", nargs="*", default=["*"])
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--crop", type=int, default=None)
    parser.add_argument("--onnx", action="store_true", help="also export to ONNX and time ONNX Runtime")
    args = parser.parse_args()
    names = sorted({n for p in args.patterns for n in list_models(p)})
    ctx = mp.get_context("spawn")
    print(f"{'model':<22} {'input (N,C,T,H,W)':<24} {'clips/s':>8} {'ORT clips/s':>12} {'peak RSS MB':>12}   "
          f"({args.threads} thread(s))")
    for name in names:
        queue = ctx.Queue()
        proc = ctx.Process(target=run_one, args=(name, args.iters, args.threads, args.crop, args.onnx, queue))
        proc.start()
        proc.join()  # the result is a few numbers: the queue never blocks the child's exit
        if proc.exitcode != 0:
            print(f"{name:<22} failed (exit code {proc.exitcode})")
            continue
        shape, rate, ort_rate, rss = queue.get()
        ort_text = "-" if ort_rate is None else f"{ort_rate:.3f}"
        print(f"{name:<22} {str(shape):<24} {rate:8.3f} {ort_text:>12} {rss:12.0f}")


if __name__ == "__main__":
    main()
