#!/usr/bin/env python
"""Per-frame latency and memory of the MoViNet stream models on CPU.

Feeds one random frame at a time (keeping the stream state) and reports, per model, run
eagerly, traced (what ``videorec stream`` runs by default, see ``ops.apps.stream.compile_stream_step``)
and exported to ONNX and run in ONNX Runtime (``ops.apps.export`` / ``ops.apps.runtime``), the
median wall time and thread CPU time per frame after a warm-up (on a busy machine the CPU time
is the figure to trust), and the resident memory (RSS) after 100 and after ``--frames`` frames:
a stream model's memory must not grow with the video length.

    python scripts/bench_stream.py                       # A0, A1, A2 on one thread, 1,000 frames
    python scripts/bench_stream.py --models a0 --threads 4
    python scripts/bench_stream.py --reference ~/MoViNet-pytorch   # also time the PyTorch port

The ONNX row also checks that ONNX Runtime's top-5 equals the eager model's after each frame
of a short random clip (``top-5 same``). ``--reference`` points at a checkout of Atze00/MoViNet-pytorch (needs its ``einops`` and
``fvcore`` dependencies); its stream model is timed on the same frames, called its own way
(the state kept inside the model).
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from archs.registry import create_model  # noqa: E402
from ops.apps.export import ExportSettings, export_model  # noqa: E402
from ops.apps.runtime import OnnxStreamStep, load_onnx  # noqa: E402
from ops.apps.stream import compile_stream_step  # noqa: E402

TARGET_MS = {"a0": 16.0, "a1": 33.0, "a2": 66.0}
ONNX_TARGET_MS = {"a0": 5.0}  # ONNX Runtime, one thread


def rss_mb() -> float:
    """Current resident memory of this process in MiB (peak RSS where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(step: Callable[[torch.Tensor], None], frame: torch.Tensor, frames: int, warmup: int) -> Dict[str, float]:
    """Call ``step`` on ``frame`` warmup + frames times.

    Returns the median wall time per frame, the median CPU time of this thread per frame (what the
    frame costs on one core, even on a busy machine), and the RSS after 100 and after all frames.
    """
    wall: List[float] = []
    cpu: List[float] = []
    with torch.inference_mode():
        for _ in range(warmup):
            step(frame)
        rss_100 = rss_mb()
        for i in range(frames):
            start, start_cpu = time.perf_counter(), time.thread_time()
            step(frame)
            wall.append(time.perf_counter() - start)
            cpu.append(time.thread_time() - start_cpu)
            if i + 1 == 100:
                rss_100 = rss_mb()
    return {"wall_ms": statistics.median(wall) * 1e3, "cpu_ms": statistics.median(cpu) * 1e3,
            "rss_100": rss_100, "rss_end": rss_mb()}


def ours(model: torch.nn.Module, frame: torch.Tensor, traced: bool) -> Callable[[torch.Tensor], None]:
    """A step feeding our stream model one frame (traced or eager), keeping its state."""
    state = {"value": model.init_state(1, frame.shape[-1])}
    forward = compile_stream_step(model, frame, state["value"]) if traced else model

    def step(x: torch.Tensor) -> None:
        _, state["value"] = forward(x, state["value"])

    return step


def onnx_step(model: torch.nn.Module, size: int, folder: Path, threads: int) -> OnnxStreamStep:
    """``model``'s frame step exported to ONNX (checked against PyTorch) and opened in ONNX Runtime."""
    path = folder / f"{model.arch_name}.onnx"
    export_model(model, ExportSettings(output=str(path), size=size), log=lambda line: print(f"  export {line}"))
    return load_onnx(path, threads=threads)


def onnx_runner(step: OnnxStreamStep) -> Callable[[torch.Tensor], None]:
    state = {"value": step.init_state(1)}

    def run_step(x: torch.Tensor) -> None:
        _, state["value"] = step(x, state["value"])

    return run_step


def same_top5(model: torch.nn.Module, step: OnnxStreamStep, size: int, frames: int = 16) -> bool:
    """Whether ONNX Runtime's top-5 classes equal the eager model's after every frame of a random clip."""
    clip = torch.rand(1, 3, frames, size, size, generator=torch.Generator().manual_seed(1))
    ours, theirs = model.init_state(1, size), step.init_state(1)
    with torch.inference_mode():
        for t in range(frames):
            expected, ours = model(clip[:, :, t:t + 1], ours)
            got, theirs = step(clip[:, :, t:t + 1], theirs)
            if not torch.equal(expected.topk(5).indices, got.topk(5).indices):
                return False
    return True


def reference(variant: str, checkout: Path) -> Callable[[torch.Tensor], None]:
    sys.path.insert(0, str(checkout))
    from movinets import MoViNet  # noqa: PLC0415 (optional, outside this package)
    from movinets.config import _C  # noqa: PLC0415

    model = MoViNet(_C.MODEL[f"MoViNet{variant.upper()}"], causal=True, conv_type="2plus1d", tf_like=True).eval()
    return lambda frame: model(frame)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="a0,a1,a2", help="comma-separated sizes (default: a0,a1,a2)")
    parser.add_argument("--frames", type=int, default=1000, help="timed frames per model (default: 1000)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed frames first (default: 20)")
    parser.add_argument("--threads", type=int, default=1, help="torch and ONNX Runtime CPU threads (default: 1)")
    parser.add_argument("--reference", type=Path, help="a MoViNet-pytorch checkout to time as well")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    print(f"threads={args.threads} frames={args.frames} warmup={args.warmup} torch={torch.__version__}")
    print(f"{'model':<22} {'size':>5} {'wall ms':>8} {'CPU ms':>7} {'target':>7} "
          f"{'RSS@100 MiB':>12} {'RSS@end MiB':>12}")
    folder = tempfile.TemporaryDirectory()
    for variant in args.models.split(","):
        model = create_model(f"movinet_{variant}_stream", num_classes=600).eval()
        size = model.input_spec.crop_size
        frame = torch.rand(1, 3, 1, size, size)
        onnx = onnx_step(model, size, Path(folder.name), args.threads)
        print(f"  onnxruntime top-5 same as eager on 16 frames: {same_top5(model, onnx, size)}")
        steps = {f"movinet_{variant}_stream": ours(model, frame, traced=True),
                 "  eager": ours(model, frame, traced=False),
                 "  onnxruntime": onnx_runner(onnx)}
        if args.reference is not None:
            steps[f"  reference (port) {variant}"] = reference(variant, args.reference)
        results = {}
        for name, step in steps.items():
            result = run(step, frame, args.frames, args.warmup)
            results[name] = result
            target = (ONNX_TARGET_MS if "onnx" in name else TARGET_MS).get(variant)
            print(f"{name:<22} {size:>5} {result['wall_ms']:>8.2f} {result['cpu_ms']:>7.2f} "
                  f"{target if target else '-':>7} {result['rss_100']:>12.1f} {result['rss_end']:>12.1f}")
        if args.reference is not None:
            (_, mine), (_, eager), (_, ort_result), (_, ref) = results.items()
            for name, result in (("traced", mine), ("eager", eager), ("onnxruntime", ort_result)):
                print(f"  ours ({name}) / port: wall {result['wall_ms'] / ref['wall_ms']:.2f}, "
                      f"CPU {result['cpu_ms'] / ref['cpu_ms']:.2f}")


if __name__ == "__main__":
    main()
