"""Export every model of the zoo to ONNX and check it against PyTorch (the exporter's own self-check).

Each model is built at a small input (``--size`` px, its own frame count, a few classes) with
BatchNorm statistics calibrated by one train-mode forward on random clips (a freshly built deep
network in eval mode has unit running variances, so its activations and logits blow up through
100 layers and float32 rounding alone moves its logits; calibrated, the logits are O(1), as with
trained weights). Prints max |Δlogit| per model and a summary line; exit 1 if any model fails.

    python scripts/export_zoo.py [--size 64] [--atol 1e-4] [PATTERN]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

from archs.registry import create_model, list_models
from ops.apps.export import CheckFailed, ExportSettings, export_model, is_stream


def calibrate(model: torch.nn.Module, size: int) -> None:
    """Set BatchNorm running statistics from one train-mode forward of random clips (N, 3, T, size, size)."""
    if is_stream(model):
        return  # the stream step is exported from the base layers; its BatchNorm is folded
    frames = model.input_spec.num_frames
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = None  # cumulative average: one batch sets the statistics
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, frames, size, size))
    model.eval()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("pattern", nargs="?", default="*")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--atol", type=float, default=1e-4)
    args = parser.parse_args()
    torch.manual_seed(0)
    failed = []
    names = list_models(args.pattern)
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            options = {"input_size": args.size, "patch_size": args.size // 2} if name == "adafocusv2" else {}
            model = create_model(name, 5, **options)
            calibrate(model, args.size)
            settings = ExportSettings(output=str(Path(folder) / f"{name}.onnx"), size=args.size, atol=args.atol)
            try:
                result = export_model(model.eval(), settings, log=lambda line: None)
                print(f"{name:22s} ok    max |Δlogit| {result.max_abs_diff:.2e}", flush=True)
            except CheckFailed as exc:
                failed.append(name)
                print(f"{name:22s} FAIL  {exc}", flush=True)
    print(f"{len(names) - len(failed)} of {len(names)} models exported to ONNX within |Δlogit| <= {args.atol:g}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
