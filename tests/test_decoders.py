"""Video decoder backends: the same exact frames from each, every bad file a one-line SourceError
with no library noise on stderr, the frame index scanned once per file, the choice of backend."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ops.common.errors import UserError
from ops.data.decoders import frame_index, registry
from ops.data.decoders.base import SourceError
from ops.data.decoders.decord_video import DecordVideo
from ops.data.decoders.pyav_video import PyAVVideo
from ops.data.sources import open_source
from tests.decoder_fixtures import CODECS, FRAMES, ffmpeg, make_video

CPU_BACKENDS = [name for name in registry.AUTO_ORDER if registry.availability(name) is None]
# Out-of-order indices with repeats, a keyframe-distant frame and one past the end (clamped).
INDICES = [0, 7, 7, 22, 3, 44, 30, 60]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDEOREC_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="session")
def videos(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("videos")
    return {name: make_video(root / f"{name}{ext}", args) for name, (ext, args) in CODECS.items()}


@pytest.fixture(scope="session")
def bad_videos(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("bad")
    good = make_video(root / "good.mp4", ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "8", "-movflags", "+faststart"])
    data = good.read_bytes()
    out = {"empty": root / "empty.mp4", "garbage": root / "garbage.mp4", "no_index": root / "no_index.mp4",
           "audio_only": root / "audio_only.mp4"}
    out["empty"].write_bytes(b"")
    out["garbage"].write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    moov_last = make_video(root / "moov_last.mp4", ["-c:v", "libx264", "-pix_fmt", "yuv420p"])
    out["no_index"].write_bytes(moov_last.read_bytes()[: moov_last.stat().st_size // 2])  # 'moov atom not found'
    ffmpeg("-f", "lavfi", "-i", "sine=d=0.5", "-c:a", "aac", out["audio_only"])
    out["cut_end"] = root / "cut_end.mp4"  # the header promises 45 frames, the data holds fewer
    out["cut_end"].write_bytes(data[: len(data) * 6 // 10])
    return out


@pytest.mark.parametrize("codec", list(CODECS))
def test_every_backend_returns_the_same_exact_frames(videos, codec):
    """The same frames: pixel-exact between PyAV and torchcodec (the same FFmpeg decode and
    swscale conversion); decord's mpeg4 decoding differs by at most 1 level on a few pixels
    (its own FFmpeg build's IDCT), elsewhere it is exact as well."""
    clips = {name: open_source(videos[codec], "", decoder=name).read(INDICES) for name in CPU_BACKENDS}
    assert len(clips) >= 2, f"need two backends to compare, have {CPU_BACKENDS}"
    first = clips[CPU_BACKENDS[0]]
    assert first.shape == (len(INDICES), 48, 64, 3) and first.dtype == torch.uint8
    assert torch.equal(first[1], first[2]) and torch.equal(first[5], first[7])  # repeat; clamped past the end
    assert not torch.equal(first[0], first[1])
    for name, clip in clips.items():
        diff = (clip.int() - first.int()).abs()
        if name == "decord" and codec == "mpeg4":
            assert diff.max() <= 1 and diff.float().mean() < 1e-3, f"decord on mpeg4: {diff.max()}, {diff.float().mean()}"
        else:
            assert diff.max() == 0, f"{name} differs from {CPU_BACKENDS[0]} on {codec}"


def test_pyav_frames_are_the_sequential_decode(videos):
    """Seeking gives frame i exactly: compared with decoding the whole file in order."""
    import av

    path = videos["h264_gop4"]
    with av.open(str(path)) as container:
        every = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(every) == FRAMES
    clip = PyAVVideo(path).read([41, 2, 17, 18, 5])
    assert np.array_equal(clip.numpy(), np.stack([every[i] for i in [41, 2, 17, 18, 5]]))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("kind", ["empty", "garbage", "no_index", "audio_only", "missing"])
def test_bad_videos_are_one_line_source_errors_without_noise(bad_videos, backend, kind, tmp_path, capfd):
    path = bad_videos.get(kind, tmp_path / "missing.mp4")
    with pytest.raises(SourceError) as err:
        open_source(path, "", decoder=backend).read([0, 1])
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert capfd.readouterr().err == ""


def test_frames_past_what_decodes_are_clamped(bad_videos, capfd):
    """A container that promises more frames than its data holds: reads clamp to the last that
    decodes (decord refuses such a file at open: a SourceError, also fine for training)."""
    source = PyAVVideo(bad_videos["cut_end"])
    promised = source.num_frames
    clip = source.read([0, promised - 1])
    assert clip.shape[0] == 2 and source.num_frames < promised
    assert torch.equal(clip[1], source.read([source.num_frames - 1])[0])
    with pytest.raises(SourceError, match="cut_end.mp4"):
        DecordVideo(bad_videos["cut_end"]).read([0, promised - 1])
    assert capfd.readouterr().err == ""


def test_frame_index_is_scanned_once_per_file(videos, tmp_path, monkeypatch):
    scans = []
    real = frame_index.scan_frames
    monkeypatch.setattr(frame_index, "scan_frames", lambda path: scans.append(path) or real(path))
    path = tmp_path / "v.mp4"
    path.write_bytes(videos["h264_gop4"].read_bytes())
    first = PyAVVideo(path).read([3, 9])
    second = PyAVVideo(path).read([3, 9])
    assert len(scans) == 1 and torch.equal(first, second)
    path.write_bytes(videos["mpeg4"].read_bytes())  # another file at the same path: a new index
    PyAVVideo(path).read([3])
    assert len(scans) == 2


def test_unwritable_cache_still_decodes(videos, monkeypatch):
    monkeypatch.setenv("VIDEOREC_CACHE_DIR", "/proc/1/videorec-cache")
    assert PyAVVideo(videos["h264_gop4"]).read([1]).shape == (1, 48, 64, 3)


def test_decoder_choice(videos, monkeypatch):
    assert type(open_source(videos["mpeg4"], "", decoder="decord")) is DecordVideo
    assert type(open_source(videos["mpeg4"], "", decoder="pyav")) is PyAVVideo
    assert registry.resolve_decoder("auto") == CPU_BACKENDS[0]
    with pytest.raises(UserError, match="--decoder nope: choose from auto, pyav, decord, torchcodec"):
        registry.resolve_decoder("nope")
    monkeypatch.setattr(registry, "availability", lambda name: None if name == "decord" else f"{name} is broken")
    assert registry.resolve_decoder("auto") == "decord"
    with pytest.raises(UserError, match="--decoder pyav is unavailable: pyav is broken"):
        registry.resolve_decoder("pyav")
    assert "video decord" in registry.describe("decord")


def test_decode_device_cuda_says_why_not(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match=r"^--decode-device cuda is unavailable: no CUDA device"):
        registry.resolve_decoder("auto", "cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(registry, "availability", lambda name: "FFmpeg shared libraries not found")
    with pytest.raises(UserError, match="torchcodec cannot be loaded: FFmpeg shared libraries not found"):
        registry.resolve_decoder("auto", "cuda")
    monkeypatch.setattr(registry, "availability", lambda name: None)
    with pytest.raises(UserError, match="use --workers 0"):
        registry.resolve_decoder("torchcodec", "cuda", workers=2)
    with pytest.raises(UserError, match="not --decoder pyav"):
        registry.resolve_decoder("pyav", "cuda")
    assert registry.resolve_decoder("auto", "cuda", workers=0) == "torchcodec"


def test_torchcodec_unloadable_is_explained():
    problem = registry.availability("torchcodec")
    if problem is None:
        assert "torchcodec" in registry.describe("torchcodec")
    else:
        assert "\n" not in problem and ("FFmpeg" in problem or "not installed" in problem)


TORCHCODEC_VS_PYAV = """
import sys, torch
from ops.data.decoders import registry
from ops.data.sources import open_source
assert registry.availability("torchcodec") is None, registry.availability("torchcodec")
for path in sys.argv[1:]:
    a = open_source(path, "", decoder="torchcodec").read({indices})
    b = open_source(path, "", decoder="pyav").read({indices})
    assert torch.equal(a, b), path
print("same", len(sys.argv) - 1)
"""


def test_torchcodec_on_pyavs_ffmpeg_gives_the_same_frames(videos, tmp_path):
    """torchcodec needs FFmpeg's shared libraries; PyAV's wheel bundles them. Loaded from there
    (a new process with the LD_LIBRARY_PATH that `videorec doctor` prints), torchcodec decodes
    the same frames as PyAV, pixel-exact, and prints nothing."""
    from ops.data.decoders.torchcodec_video import pyav_library_path

    env = {**os.environ, "LD_LIBRARY_PATH": pyav_library_path(tmp_path / "libs"), "PYTHONPATH": os.getcwd()}
    done = subprocess.run([sys.executable, "-c", TORCHCODEC_VS_PYAV.format(indices=INDICES), *map(str, videos.values())],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0 and done.stdout.strip() == f"same {len(videos)}", done.stderr[-2000:]
    assert done.stderr == ""


@pytest.mark.parametrize("flags, message", [(["--decoder", "nope"], "--decoder nope: choose from"),
                                            (["--decode-device", "cuda", "--workers", "2"], "--decode-device cuda")])
def test_train_flags_reach_the_decoder_check(tiny_dataset, tmp_path, flags, message):
    """The flags travel from the command line to the dataset (checked before the first batch)."""
    from typer.testing import CliRunner

    from videorec_cli.main import app

    tiny = ["--arch", "tsm_mbv2", "-m", "width_mult=0.25", "--crop-size", "32", "--num-segments", "2", "--epochs", "1"]
    result = CliRunner().invoke(app, ["train", str(tiny_dataset), *tiny, "-o", str(tmp_path / "run"), *flags])
    assert isinstance(result.exception, UserError) and message in str(result.exception), result.output


class _Threads(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, i):
        from ops.data.decoders.base import decoder_threads

        return decoder_threads()


def test_decoder_threads_share_the_cores_among_workers():
    from ops.data.decoders.base import decoder_threads

    cores = len(os.sched_getaffinity(0))
    assert decoder_threads() == max(1, min(8, cores))
    in_workers = list(torch.utils.data.DataLoader(_Threads(), batch_size=None, num_workers=2))
    assert in_workers == [max(1, min(8, cores // 2))] * 2
