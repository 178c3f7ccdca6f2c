"""Data-loading benchmark: training clips (8 x 224 x 224) per second, videorec's decoders vs the
seeds' way, on realistic sources made at run time with the ffmpeg binary.

Sources: 10 s at 30 fps (300 frames), H.264 at x264's default keyframe interval (250 frames),
340x256 (the usual Kinetics copy) and 1280x720 (raw Kinetics), and both after
`videorec transcode` (short side 256, a keyframe every 16 frames); JPEG frame folders
extracted from the 340x256 videos. The 720p set holds copies of two distinct videos (encoding
720p is slow on small machines); every 340x256 video is distinct.

Measured in one run, with the same DataLoader settings (--workers workers, batch size 1), each
case in --rounds interleaved rounds, reported as the median:
  * seed-style: what the seed repositories do (decord's VideoReader with its default threads, a
    PIL image per frame, per-frame multi-scale crop, resize, flip, ToTensor and normalise in
    the workers; float clips out);
  * videorec <decoder>: ops.data.dataset.VideoDataset with each usable decoder backend (uint8
    clips out; normalised on the model's device by the consumer);
  * ceiling <decoder>: the same frames decoded with no transforms at all.
Then the transcode throughput, and peak RSS every 100 clips over --rss-clips clips per backend
read in this process from the transcoded 340x256 files (it must stay flat).

torchcodec needs FFmpeg's shared libraries; where the machine has none, the benchmark restarts
itself with PyAV's bundled copies on LD_LIBRARY_PATH (see `videorec doctor`) so it is measured.

    python scripts/bench_loader.py [--clips 100] [--workers 2] [--videos 6] [--rounds 1] [--rss-clips 500]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import torch

from archs.registry import IMAGENET_MEAN, IMAGENET_STD
from ops.data.dataset import SamplingSettings, VideoDataset
from ops.data.decoders import registry
from ops.data.loader import collate_items
from ops.data.records import VideoRecord
from ops.data.sampling import segment_indices
from ops.data.sources import open_source
from ops.data.transforms import MULTISCALE, ClipTransform, multiscale_crop_box
from ops.prep.media import extract_tree, ffmpeg_exe
from ops.prep.transcode import TranscodeSettings, transcode_tree

SECONDS, FPS, SEGMENTS = 10, 30, 8


def make_sources(folder: Path, count: int, distinct: int, width: int, height: int) -> List[Path]:
    """``count`` videos (``distinct`` different ones, the rest copies): a moving test pattern with
    camera-like noise, H.264 with x264's defaults (keyframe interval 250)."""
    import subprocess

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"v{i}.mp4"
        if i < distinct:
            subprocess.run([ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                            f"testsrc2=size={width}x{height}:rate={FPS},noise=alls=6:allf=t:all_seed={i}",
                            "-t", str(SECONDS), "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path)], check=True)
        else:
            shutil.copyfile(paths[i % distinct], path)
        paths.append(path)
    return paths


class SeedStyleDataset(torch.utils.data.Dataset):
    """The seeds' pipeline: decord VideoReader (default threads) or PIL files, per-frame transforms."""

    def __init__(self, items: List[Path], video: bool, num_frames: int) -> None:
        self.items, self.video, self.num_frames = items, video, num_frames

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        from PIL import Image
        import torchvision.transforms.functional as F

        rng = np.random.default_rng(i)
        idx = segment_indices(self.num_frames, SEGMENTS, train=True, rng=rng)
        if self.video:
            import decord

            arr = decord.VideoReader(str(self.items[i])).get_batch(idx.tolist()).asnumpy()
            images = [Image.fromarray(a) for a in arr]
        else:
            images = [Image.open(self.items[i] / f"img_{j + 1:05d}.jpg").convert("RGB") for j in idx]
        w, h = images[0].size
        top, left, ch, cw = multiscale_crop_box(h, w, 224, rng, MULTISCALE)
        flip = rng.random() < 0.5
        out = []
        for img in images:
            img = img.crop((left, top, left + cw, top + ch)).resize((224, 224), Image.BILINEAR)
            if flip:
                img = img.transpose(Image.FLIP_LEFT_RIGHT)
            out.append(F.normalize(F.to_tensor(img), IMAGENET_MEAN, IMAGENET_STD))
        return torch.stack(out, 1)


class DecodeOnly(torch.utils.data.Dataset):
    """The ceiling: the sampled frames of each video decoded by ``decoder``, nothing else."""

    def __init__(self, items: List[Path], decoder: str, num_frames: int) -> None:
        self.items, self.decoder, self.num_frames = items, decoder, num_frames

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        idx = segment_indices(self.num_frames, SEGMENTS, train=True, rng=np.random.default_rng(i))
        return open_source(self.items[i], "", decoder=self.decoder).read(idx)


def ours(items: List[Path], decoder: str, num_frames: int) -> VideoDataset:
    video = items[0].suffix == ".mp4"
    records = [VideoRecord(str(p), None if video else num_frames, (0,)) for p in items]
    transform = ClipTransform("train", 224, 256, IMAGENET_MEAN, IMAGENET_STD)
    return VideoDataset(records, root="", template="img_{:05d}.jpg", sampling=SamplingSettings("train", SEGMENTS),
                        transform=transform, num_classes=1, decoder=decoder)


def rate(dataset, clips: int, workers: int) -> float:
    """Clips per second through a DataLoader with batch size 1 (start-up excluded)."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=1, num_workers=workers,
                                         sampler=[i % len(dataset) for i in range(clips + 1)],
                                         collate_fn=collate_items if isinstance(dataset, VideoDataset) else None)
    it = iter(loader)
    next(it)
    tic = time.perf_counter()
    n = sum(1 for _ in it)
    return n / (time.perf_counter() - tic)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(cases: Dict[str, Callable[[], float]], rounds: int) -> Dict[str, float]:
    runs: Dict[str, List[float]] = {name: [] for name in cases}
    for _ in range(rounds):  # interleaved, so that a noisy spell hits every case alike
        for name, case in cases.items():
            runs[name].append(case())
            print(f"    {name:<44} {runs[name][-1]:7.2f} clips/s", flush=True)
    return {name: statistics.median(values) for name, values in runs.items()}


def with_pyav_ffmpeg_for_torchcodec() -> None:
    """Restart this process with PyAV's FFmpeg on LD_LIBRARY_PATH when torchcodec lacks one."""
    problem = registry.availability("torchcodec")
    if problem and "not installed" not in problem and "VIDEOREC_BENCH_RESTARTED" not in os.environ:
        from ops.data.decoders.frame_index import cache_dir
        from ops.data.decoders.torchcodec_video import pyav_library_path

        path = pyav_library_path(cache_dir() / "pyav-ffmpeg")
        print(f"torchcodec: {problem}\n  restarting with LD_LIBRARY_PATH={path} (PyAV's FFmpeg)", flush=True)
        env = {**os.environ, "LD_LIBRARY_PATH": path, "VIDEOREC_BENCH_RESTARTED": "1"}
        os.execve(sys.executable, [sys.executable, *sys.argv], env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=100, help="clips per case at 340x256 (720p cases: a sixth)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--rss-clips", type=int, default=500, help="clips per backend for the RSS trace (e.g. 2000)")
    args = parser.parse_args()
    with_pyav_ffmpeg_for_torchcodec()
    torch.set_num_threads(1)
    backends = [name for name, _, problem in registry.report() if problem is None]
    print(f"backends: {', '.join(backends)}; {os.cpu_count()} CPUs; {args.workers} workers, batch 1", flush=True)
    frames = SECONDS * FPS
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["VIDEOREC_CACHE_DIR"] = str(root / "cache")
        tic = time.perf_counter()
        folders = {"340x256": root / "340", "1280x720": root / "720"}
        sets = {"340x256": make_sources(folders["340x256"], args.videos, args.videos, 340, 256),
                "1280x720": make_sources(folders["1280x720"], args.videos, 2, 1280, 720)}
        print(f"sources made in {time.perf_counter() - tic:.0f} s", flush=True)
        transcode_rates = {}
        for name, folder in folders.items():
            tic = time.perf_counter()
            summary = transcode_tree(folder, root / f"t{name}", TranscodeSettings(), workers=args.workers)
            seconds = time.perf_counter() - tic
            transcode_rates[name] = (summary.transcoded / seconds, summary.frames / seconds)
            sets[f"{name} transcoded"] = sorted((root / f"t{name}").glob("*.mp4"))
        extract_tree(root / "340", root / "frames", short_side=0, workers=args.workers)
        jpeg = sorted(p for p in (root / "frames").iterdir() if p.is_dir())

        results: Dict[str, float] = {}
        for name, items in sets.items():
            clips = args.clips if name.startswith("340") or "transcoded" in name else max(6, args.clips // 6)
            print(f"  {name} ({clips} clips per case)", flush=True)
            cases = {}
            if "transcoded" not in name:
                cases[f"{name}: seed-style"] = lambda items=items, clips=clips: rate(SeedStyleDataset(items, True, frames), clips, args.workers)
            for backend in backends:
                cases[f"{name}: videorec {backend}"] = lambda items=items, b=backend, clips=clips: rate(ours(items, b, frames), clips, args.workers)
                cases[f"{name}: ceiling {backend}"] = lambda items=items, b=backend, clips=clips: rate(DecodeOnly(items, b, frames), clips, args.workers)
            results.update(measure(cases, args.rounds))
        print(f"  JPEG frame folders from 340x256 ({args.clips} clips per case)", flush=True)
        results.update(measure({"jpeg: seed-style": lambda: rate(SeedStyleDataset(jpeg, False, frames), args.clips, args.workers),
                                "jpeg: videorec simplejpeg": lambda: rate(ours(jpeg, "auto", frames), args.clips, args.workers)},
                               args.rounds))

        print(f"\n8x224x224 training clips/s, {args.workers} workers, batch 1, median of {args.rounds} round(s)")
        print(f"| {'case':<44} | clips/s | x seed (same source) |")
        print(f"|{'-' * 46}|---------|----------------------|")
        for name, value in results.items():
            source = name.split(":")[0].replace(" transcoded", "")
            seed = results.get(f"{source}: seed-style")
            print(f"| {name:<44} | {value:7.2f} | {value / seed if seed else float('nan'):20.2f} |")
        print("\ntargets (videorec with auto's pick, vs seed-style on the original files):")
        best = registry.resolve_decoder("auto")
        for label, ours_case, seed_case, target in [
                ("transcoded 340x256 vs original 340x256", f"340x256 transcoded: videorec {best}", "340x256: seed-style", 3.0),
                ("transcoded 720p vs original 720p", f"1280x720 transcoded: videorec {best}", "1280x720: seed-style", 3.0),
                ("untouched 340x256", f"340x256: videorec {best}", "340x256: seed-style", 1.5),
                ("JPEG", "jpeg: videorec simplejpeg", "jpeg: seed-style", 2.5)]:
            ratio = results[ours_case] / results[seed_case]
            print(f"  {label:<40} {ratio:6.2f}x (target {target}x) {'met' if ratio >= target else 'NOT met'}")
        for name, (videos_s, frames_s) in transcode_rates.items():
            print(f"transcode {name}: {videos_s:.2f} videos/s, {frames_s:.0f} frames/s ({frames_s / FPS:.1f}x real time)"
                  f" with {args.workers} ffmpeg processes")

        for backend in backends:
            dataset = ours(sets["340x256 transcoded"], backend, frames)
            marks = []
            for i in range(args.rss_clips):
                dataset[i % len(dataset)]
                if (i + 1) % 100 == 0:
                    marks.append(rss_mb())
            if marks:
                print(f"RSS {backend} (MB every 100 clips): {' '.join(f'{m:.0f}' for m in marks)};"
                      f" growth after the first 100: {marks[-1] - marks[0]:+.1f} MB")


if __name__ == "__main__":
    main()
