"""The built-in demo: every step of videorec on the synthetic motion dataset.

make videos -> extract frames -> make annotations -> train TSN and TSM
(MobileNetV2, small) -> test 2 clips x 3 crops -> fuse -> a table of results.
TSN averages frame features, so it cannot tell the direction of a motion; TSM's
temporal shift can, and the table shows it.
"""
from __future__ import annotations

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence

from ops.prep.annotations import AnnotationInputs, MediaLookup, read_annotations, write_annotations
from ops.engine.config import DataSettings, TrainSettings
from ops.evaluation.fusion import fuse, report
from ops.prep.media import extract_tree
from ops.prep.synthetic import SyntheticSettings, make_synthetic


@dataclass
class DemoSettings:
    output_dir: Path = Path("demo_run")
    archs: Sequence[str] = ("tsn_mbv2", "tsm_mbv2")
    classes: Sequence[str] = ("move_down", "move_left", "move_right", "move_up")
    num_videos: int = 800
    frames: int = 16
    size: int = 50  # decord cannot read 48-px-wide videos (see ops.prep.synthetic.decord_reads_width)
    crop_size: int = 48
    num_segments: int = 4
    epochs: int = 12
    lr_step: int = 9
    batch_size: int = 16
    lr: float = 0.002
    width_mult: float = 0.5
    workers: int = 2
    seed: int = 0


def prepare_data(s: DemoSettings, say) -> Path:
    """Videos, frames and list files under ``output_dir/data``; returns the dataset config file."""
    data = s.output_dir / "data"
    config = data / "synthetic.json"
    if (data / "val.txt").is_file() and config.is_file():
        say(f"data: reusing {data}")
        return config
    say(f"1/5 rendering {s.num_videos} synthetic videos ({', '.join(s.classes)}; {s.frames} frames, {s.size}px)")
    make_synthetic(data, SyntheticSettings(num_videos=s.num_videos, frames=s.frames, size=s.size, seed=s.seed,
                                           classes=tuple(s.classes)), workers=s.workers)
    say("2/5 extracting frames with ffmpeg")
    summary = extract_tree(data / "videos", data / "frames", short_side=0, workers=s.workers)
    say(f"    {summary.extracted} videos -> {summary.frames} frames ({len(summary.failures)} failed)")
    say("3/5 writing list files (80/20 split per class)")
    inputs = AnnotationInputs(media_dir=data / "frames", media="frames", val_fraction=0.2, seed=s.seed)
    annotations = read_annotations("folder", inputs)
    write_annotations(annotations, MediaLookup(data / "frames", "frames"), root=data, out=data)
    # the dataset's config for the registry: a custom dataset named by its file
    config.write_text(json.dumps({"name": "synthetic", "num_classes": len(annotations.classes), "root": ".",
                                  "flip": "none", "description": "videorec demo data"}, indent=2))
    return config


def train_and_test(arch: str, s: DemoSettings, config: str) -> Dict[str, object]:
    """Train ``arch`` on the demo data, test 2 clips x 3 crops, fuse: one row of the table."""
    import torch  # the training stack is imported only when the demo runs (keeps `videorec --help` fast)

    from ops.engine.tester import TestSettings, run_test
    from ops.engine.trainer import train

    torch.set_num_threads(1)  # one model per core: tiny convolutions gain nothing from more threads
    data = DataSettings(dataset=config, num_segments=s.num_segments, crop_size=s.crop_size, scale_size=s.size,
                        workers=1)
    run_dir = s.output_dir / arch
    tic = time.time()
    val = train(TrainSettings(
        data=data, arch=arch, model_options={"width_mult": s.width_mult, "dropout": 0.0}, epochs=s.epochs,
        batch_size=s.batch_size, lr=s.lr, optimizer="adamw", lr_scheduler="step", lr_steps=[s.lr_step],
        warmup_epochs=0.5, wd=1e-4, npb=True, eval_freq=s.epochs, seed=s.seed, output_dir=str(run_dir),
        log_prefix=arch))
    train_s = time.time() - tic
    scores_dir = run_dir / "scores"
    run_test(TestSettings(data=data, weights=str(run_dir / "last.pth"), test_crops=3, clip_indices=(0, 1),
                          num_clips=2, batch_size=s.batch_size, output_dir=str(scores_dir)))
    fused = report(fuse(sorted(scores_dir.glob("*.pkl"))))
    return {"model": arch, "train_s": train_s, "val_top1": val["top1"], **fused}


def run_demo(s: DemoSettings, say=print) -> List[Dict[str, object]]:
    """Prepare the data, then train and test the models side by side, one process per core."""
    import multiprocessing

    s.output_dir.mkdir(parents=True, exist_ok=True)
    config = str(prepare_data(s, say))
    say(f"4/5 training {', '.join(s.archs)} side by side ({s.epochs} epochs each) under {s.output_dir}")
    say("5/5 then testing each on 2 clips x 3 crops and fusing the 6 views")
    parallel = max(1, min(len(s.archs), os.cpu_count() or 1))
    with ProcessPoolExecutor(parallel, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(train_and_test, s.archs, [s] * len(s.archs), [config] * len(s.archs)))


def format_table(rows: List[Dict[str, object]]) -> str:
    head = f"{'model':<10} {'train (s)':>9} {'1-view top-1':>12} {'6-view top-1':>12} {'mean class acc':>14}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['model']:<10} {r['train_s']:>9.0f} {r['val_top1']:>12.1f} {r['top1']:>12.1f} "
                     f"{r['mean_class_acc']:>14.1f}")
    return "\n".join(lines)
