"""Data-loading benchmark: training clips (8 x 224 x 224) per second, ours vs the seeds' way.

Measured in one run, on the same videos, with the same DataLoader settings (2 workers,
batch size 1), each case in interleaved rounds and reported as the median:
  * ours: ops.data.dataset.VideoDataset (uint8 tensor transforms, one call per clip,
    batched JPEG decoding / decord get_batch) with ops.data.loader.collate_items, from mp4 and
    from JPEG frame folders. Workers ship uint8 clips; the consumer normalises them on the
    model's device (ops.data.loader.model_input). Reported twice: the clips the loader delivers
    (training on a GPU, where the normalisation is a kernel on the device), and with the
    normalisation done on this CPU in the main process (training on the CPU);
  * baseline: what the seed repositories do (a PIL image per frame, per-frame
    multi-scale crop, resize, flip, ToTensor and normalise in the workers: float clips out);
  * ceiling: decord reading the same frames with no transforms at all.
Prints clips/s and the ratios, then peak RSS every 100 clips over --rss-clips clips
read from mp4 (it must not keep growing).

    python scripts/bench_loader.py [--clips 200] [--workers 2] [--rounds 3] [--rss-clips 1000]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from archs.registry import IMAGENET_MEAN, IMAGENET_STD
from ops.data.loader import collate_items, model_input
from ops.data.dataset import SamplingSettings, VideoDataset
from ops.prep.media import extract_tree
from ops.data.records import VideoRecord
from ops.data.sampling import segment_indices
from ops.prep.synthetic import encode_video, pick_encoder, render_video
from ops.data.transforms import MULTISCALE, ClipTransform, multiscale_crop_box


def make_videos(root: Path, count: int, frames: int, height: int, width: int) -> None:
    rng = np.random.default_rng(0)
    encoder = pick_encoder()
    (root / "videos").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        square = render_video("move_left", rng, frames=frames, size=max(height, width))
        clip = np.ascontiguousarray(square[:, :height, :width])
        encode_video(clip, root / "videos" / f"v{i}.mp4", fps=25, encoder=encoder)


class SeedStyleDataset(torch.utils.data.Dataset):
    """The seeds' pipeline: PIL image per frame, per-frame group transforms."""

    def __init__(self, root: Path, names, video: bool, num_frames: int) -> None:
        self.root, self.names, self.video, self.num_frames = root, names, video, num_frames

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i):
        from PIL import Image
        import torchvision.transforms.functional as F

        rng = np.random.default_rng(i)
        idx = segment_indices(self.num_frames, 8, train=True, rng=rng)
        if self.video:
            import decord

            vr = decord.VideoReader(str(self.root / "videos" / f"{self.names[i]}.mp4"))
            arr = vr.get_batch(idx.tolist()).asnumpy()
            images = [Image.fromarray(a) for a in arr]
        else:
            images = [Image.open(self.root / "frames" / self.names[i] / f"img_{j + 1:05d}.jpg").convert("RGB") for j in idx]
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
    def __init__(self, root: Path, names, num_frames: int) -> None:
        self.root, self.names, self.num_frames = root, names, num_frames

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i):
        import decord

        idx = segment_indices(self.num_frames, 8, train=True, rng=np.random.default_rng(i))
        vr = decord.VideoReader(str(self.root / "videos" / f"{self.names[i]}.mp4"), num_threads=1)
        return torch.from_numpy(vr.get_batch(idx.tolist()).asnumpy())


def ours(root: Path, names, video: bool, num_frames: int) -> VideoDataset:
    records = [VideoRecord(f"videos/{n}.mp4" if video else f"frames/{n}", None if video else num_frames, (0,)) for n in names]
    transform = ClipTransform("train", 224, 256, IMAGENET_MEAN, IMAGENET_STD)
    return VideoDataset(records, root=str(root), template="img_{:05d}.jpg", sampling=SamplingSettings("train", 8),
                        transform=transform, num_classes=1)


def rate(dataset, clips: int, workers: int, normalize: bool = False) -> float:
    """Clips per second through a DataLoader with batch size 1 (start-up excluded); ours with the
    collate function videorec's loaders use, and with ``normalize`` each batch also made the
    model's float input on this CPU."""
    is_ours = isinstance(dataset, VideoDataset)
    loader = torch.utils.data.DataLoader(dataset, batch_size=1, num_workers=workers,
                                         sampler=[i % len(dataset) for i in range(clips)],
                                         collate_fn=collate_items if is_ours else None)
    consume = (lambda batch: model_input(batch, dataset, torch.device("cpu"))) if normalize else (lambda batch: batch)
    it = iter(loader)
    consume(next(it))
    tic = time.perf_counter()
    n = 1
    for batch in it:
        consume(batch)
        n += 1
    return (n - 1) / (time.perf_counter() - tic)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--videos", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rss-clips", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        frames, height, width = 64, 256, 340
        make_videos(root, args.videos, frames, height, width)
        extract_tree(root / "videos", root / "frames", short_side=0, workers=args.workers)
        names = [f"v{i}" for i in range(args.videos)]
        cases = {
            "decode-only ceiling (mp4)": lambda: rate(DecodeOnly(root, names, frames), args.clips, args.workers),
            "seed-style (mp4)": lambda: rate(SeedStyleDataset(root, names, True, frames), args.clips, args.workers),
            "videorec (mp4)": lambda: rate(ours(root, names, True, frames), args.clips, args.workers),
            "videorec (mp4) + CPU normalise": lambda: rate(ours(root, names, True, frames), args.clips, args.workers, True),
            "seed-style (jpeg)": lambda: rate(SeedStyleDataset(root, names, False, frames), args.clips, args.workers),
            "videorec (jpeg)": lambda: rate(ours(root, names, False, frames), args.clips, args.workers),
            "videorec (jpeg) + CPU normalise": lambda: rate(ours(root, names, False, frames), args.clips, args.workers, True),
        }
        runs = {name: [] for name in cases}
        for _ in range(args.rounds):  # interleaved, so that a noisy spell hits every case alike
            for name, case in cases.items():
                runs[name].append(case())
        r = {name: statistics.median(values) for name, values in runs.items()}
        print(f"8x224x224 training clips/s, {args.workers} workers, batch 1, {args.clips} clips, {width}x{height} sources,"
              f" median of {args.rounds} interleaved rounds")
        for name, values in runs.items():
            print(f"  {name:<32} {r[name]:8.1f}   ({' '.join(f'{v:.1f}' for v in values)})")
        for kind in ("mp4", "jpeg"):
            seed = r[f"seed-style ({kind})"]
            print(f"  ratio videorec/seed ({kind}): {r[f'videorec ({kind})'] / seed:.2f}x uint8 clips out of the loader,"
                  f" {r[f'videorec ({kind}) + CPU normalise'] / seed:.2f}x with the normalisation on this CPU")
        print(f"  videorec mp4 / ceiling: {r['videorec (mp4)'] / r['decode-only ceiling (mp4)']:.2f}"
              f" ({r['videorec (mp4) + CPU normalise'] / r['decode-only ceiling (mp4)']:.2f} with the CPU normalisation)")
        dataset = ours(root, names, True, frames)
        marks = []
        for i in range(args.rss_clips):
            dataset[i % len(dataset)]
            if (i + 1) % 100 == 0:
                marks.append(rss_mb())
        print("RSS (MB) every 100 clips from mp4: " + " ".join(f"{m:.0f}" for m in marks))
        print(f"RSS growth from clip 100 to {args.rss_clips}: {marks[-1] - marks[0]:+.1f} MB")


if __name__ == "__main__":
    main()
