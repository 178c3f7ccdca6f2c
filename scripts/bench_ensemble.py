"""Fusion benchmark: 30 score files of 20,000 videos x 400 classes (10 clips x 3 crops).

Prints the time and peak RSS of `ensemble-pkl`'s fusion (ops.evaluation.fusion.fuse + report)
next to a baseline in the same run that loads every file first and fuses them
with plain pickle + numpy (what pkl_to_results-style scripts do).
Targets: under 10 s and under 2 GB.

    python scripts/bench_ensemble.py [--videos 20000] [--classes 400] [--files 30]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import pickle
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def make_files(root: Path, files: int, videos: int, classes: int) -> list:
    from ops.evaluation.scores import ScoreFile, write_scores

    rng = np.random.default_rng(0)
    labels = rng.integers(0, classes, videos)
    ids = [f"video_{i:06d}" for i in range(videos)]
    paths = []
    for f in range(files):
        logits = rng.standard_normal((videos, 1, classes), dtype=np.float32)
        logits[np.arange(videos), 0, labels] += 2.0
        path = root / f"scores_clip{f}of{files}.pkl"
        write_scores(path, ScoreFile(ids, labels, logits, f, files))
        paths.append(path)
    return paths


def ours(paths, queue) -> None:
    from ops.evaluation.fusion import fuse, report

    tic = time.perf_counter()
    metrics = report(fuse(paths))
    queue.put((time.perf_counter() - tic, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, metrics["top1"]))


def baseline(paths, queue) -> None:
    tic = time.perf_counter()
    loaded = [pickle.load(open(p, "rb")) for p in paths]  # everything in memory first
    stacked = np.stack([d["logits"][:, 0] for d in loaded])
    e = np.exp(stacked - stacked.max(-1, keepdims=True))
    probs = (e / e.sum(-1, keepdims=True)).mean(0)
    top1 = float((probs.argmax(1) == loaded[0]["labels"]).mean() * 100)
    queue.put((time.perf_counter() - tic, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, top1))


def measure(fn, paths):
    queue = mp.get_context("spawn").Queue()
    proc = mp.get_context("spawn").Process(target=fn, args=(paths, queue))
    proc.start()
    out = queue.get()
    proc.join()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=20000)
    parser.add_argument("--classes", type=int, default=400)
    parser.add_argument("--files", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_files(Path(tmp), args.files, args.videos, args.classes)
        t_ours, rss_ours, top1_ours = measure(ours, paths)
        t_base, rss_base, top1_base = measure(baseline, paths)
    print(f"{args.files} files x {args.videos} videos x {args.classes} classes")
    print(f"  videorec fuse+report: {t_ours:6.2f} s, peak RSS {rss_ours:7.0f} MB, top-1 {top1_ours:.2f}")
    print(f"  load-all baseline   : {t_base:6.2f} s, peak RSS {rss_base:7.0f} MB, top-1 {top1_base:.2f}")
    print(f"  ratio time ours/baseline {t_ours / t_base:.2f}, RSS ours/baseline {rss_ours / rss_base:.2f}")


if __name__ == "__main__":
    main()
