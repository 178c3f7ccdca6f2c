"""Video decoder backends: the same exact frames from each (on every codec, and on the awkward
files: display rotation and mirroring, portrait, 3 frames, a long GOP), every bad file a
one-line SourceError with no library noise on stderr, the frame index scanned once per file,
the choice of backend."""
from __future__ import annotations

import dataclasses
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
from ops.prep.media import ffmpeg_exe
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


H264 = ["-c:v", "libx264", "-pix_fmt", "yuv420p"]
# display orientations written by remuxing a 64x48 H.264 file (no re-encoding): name -> (suffix,
# ffmpeg's input options); MKV because decord's own FFmpeg reads its display matrix only in MP4
ORIENTATIONS = {"rot90": (".mp4", ["-display_rotation", "90"]), "rot180": (".mp4", ["-display_rotation", "180"]),
                "rot270": (".mp4", ["-display_rotation", "270"]), "mirror": (".mp4", ["-display_hflip"]),
                "rot90_mirror": (".mp4", ["-display_rotation", "90", "-display_hflip"]),
                "rot270_mkv": (".mkv", ["-display_rotation", "270"])}
# awkward file -> (indices to read, upright (H, W), frames)
AWKWARD = {**{name: ([0, 5, 5, 19, 2, 30], (48, 64) if name in ("rot180", "mirror") else (64, 48), 20)
              for name in ORIENTATIONS},
           "portrait": ([0, 5, 5, 19, 2, 30], (64, 48), 20),
           "three_frames": ([0, 2, 1, 3, 9, 1], (48, 64), 3),
           "long_gop": ([299, 250, 298, 0, 297, 400], (48, 64), 300)}


@pytest.fixture(scope="session")
def awkward(tmp_path_factory) -> dict:
    """The files of ``AWKWARD``: rotated and mirrored ones, a 48x64 portrait one, 3 frames, and
    10 s with one keyframe (``-g 300``)."""
    root = tmp_path_factory.mktemp("awkward")
    stored = make_video(root / "stored.mp4", [*H264, "-g", "8"], frames=20)
    out = {}
    for name, (suffix, options) in ORIENTATIONS.items():
        out[name] = root / f"{name}{suffix}"
        ffmpeg(*options, "-i", stored, "-c", "copy", out[name])
    out["portrait"] = make_video(root / "portrait.mp4", H264, frames=20, size="48x64")
    out["three_frames"] = make_video(root / "three_frames.mp4", H264, frames=3)
    out["long_gop"] = make_video(root / "long_gop.mp4", [*H264, "-g", "300"], frames=300)
    return out


def players_frames(path: Path, size) -> np.ndarray:
    """Every frame (F, H, W, 3) as the ffmpeg command line shows it: decoded in order and
    turned upright by its ``autorotate`` (the reference for what players show)."""
    raw = subprocess.run([ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path), "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, *size, 3)


@pytest.mark.parametrize("name", list(AWKWARD))
def test_awkward_files_give_every_backend_the_players_frames(awkward, name):
    """Exactly the frames the ffmpeg command line shows, upright, from every backend: rotated
    and mirrored phone videos come out as players show them (not as stored), a 3-frame video
    has 3 frames and clamps reads past the end, a long GOP gives exact frames near its end."""
    indices, size, frames = AWKWARD[name]
    expected = players_frames(awkward[name], size)
    assert len(expected) == frames
    for backend in CPU_BACKENDS:
        source = open_source(awkward[name], "", decoder=backend)
        clip = source.read(indices)
        assert source.num_frames == frames, backend
        assert clip.shape == (len(indices), *size, 3), backend
        assert np.array_equal(clip.numpy(), expected[np.minimum(indices, frames - 1)]), f"{backend} on {name}"


def test_orientation_is_read_once_with_the_cached_index(awkward, monkeypatch):
    """The display orientation travels in the cached frame index: a second open of the file,
    with any backend, turns its frames upright without scanning it again."""
    first = PyAVVideo(awkward["rot90_mirror"]).read([3])
    monkeypatch.setattr(frame_index, "scan_frames", lambda path: pytest.fail(f"{path} scanned again"))
    for backend in CPU_BACKENDS:
        assert torch.equal(open_source(awkward["rot90_mirror"], "", decoder=backend).read([3]), first), backend


def test_decord_turning_otherwise_than_expected_is_refused(awkward, monkeypatch, capfd):
    """decord turns MP4 frames by the display rotation itself (its FFmpeg reads it there, not in
    MKV); where it turns them otherwise than expected the read is a one-line SourceError, never
    frames of the wrong shape."""
    from ops.data.decoders import decord_video

    real = frame_index.load_frame_index
    monkeypatch.setattr(decord_video, "load_frame_index",
                        lambda path: dataclasses.replace(real(path), container="matroska,webm"))
    with pytest.raises(SourceError, match=r"rot90.mp4: decord turns its frames to 48x64, not to 64x48 .*--decoder pyav"):
        DecordVideo(awkward["rot90"]).read([0, 3])
    assert capfd.readouterr().err == ""


def test_orientation_reaches_the_transform(awkward):
    """A dataset of a rotated video: the sampler and the transform get the upright frames (a
    center crop of the 48x64 portrait picture, not of the stored 64x48 one)."""
    from archs.registry import IMAGENET_MEAN, IMAGENET_STD
    from ops.data.dataset import SamplingSettings, VideoDataset
    from ops.data.records import VideoRecord
    from ops.data.transforms import ClipTransform

    path = awkward["rot90_mirror"]
    transform = ClipTransform("val", 40, 48, IMAGENET_MEAN, IMAGENET_STD)
    upright = torch.from_numpy(players_frames(path, (64, 48)).copy())
    for backend in CPU_BACKENDS:
        dataset = VideoDataset([VideoRecord(str(path), 20, (0,))], root="", template="", num_classes=2,
                               sampling=SamplingSettings("val", num_segments=4), transform=transform, decoder=backend)
        views, _ = dataset.load(0, None)
        indices = dataset.sampling.indices(20, None)
        assert torch.equal(views, transform(upright[indices], (0,), None)[0]), backend


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
import json, sys, torch
from ops.data.decoders import registry
from ops.data.sources import open_source
assert registry.availability("torchcodec") is None, registry.availability("torchcodec")
cases = json.loads(sys.argv[1])
for path, indices in cases:
    a = open_source(path, "", decoder="torchcodec").read(indices)
    b = open_source(path, "", decoder="pyav").read(indices)
    assert a.shape == b.shape and torch.equal(a, b), path
print("same", len(cases))
"""


def test_torchcodec_on_pyavs_ffmpeg_gives_the_same_frames(videos, awkward, tmp_path):
    """torchcodec needs FFmpeg's shared libraries; PyAV's wheel bundles them. Loaded from there
    (a new process with the LD_LIBRARY_PATH that `videorec doctor` prints), torchcodec decodes
    the same frames as PyAV, pixel-exact and upright (it turns frames by the display rotation
    itself; the mirroring is added), on every codec and awkward file, and prints nothing."""
    import json

    from ops.data.decoders.torchcodec_video import pyav_library_path

    cases = [(str(path), INDICES) for path in videos.values()]
    cases += [(str(awkward[name]), indices) for name, (indices, _, _) in AWKWARD.items()]
    env = {**os.environ, "LD_LIBRARY_PATH": pyav_library_path(tmp_path / "libs"), "PYTHONPATH": os.getcwd()}
    done = subprocess.run([sys.executable, "-c", TORCHCODEC_VS_PYAV, json.dumps(cases)],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0 and done.stdout.strip() == f"same {len(cases)}", done.stderr[-2000:]
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
