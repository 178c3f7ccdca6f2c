"""Frame extraction: ffmpeg command, short side, templates, failures, resumable runs."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from ops.common.errors import UserError
from ops.prep.media import FrameTemplate, MediaError, extract_frames, ffmpeg_exe, find_videos
from ops.prep.synthetic import encode_video, pick_encoder
from videorec_cli.main import app

runner = CliRunner()


@pytest.fixture(scope="module")
def encoder() -> str:
    return pick_encoder()


def make_video(path: Path, encoder: str, *, width: int = 64, height: int = 48, frames: int = 6, fps: float = 8) -> Path:
    """A small random-noise mp4 (seeded by its size)."""
    rng = np.random.default_rng([width, height, frames])
    path.parent.mkdir(parents=True, exist_ok=True)
    encode_video(rng.integers(0, 256, size=(frames, height, width, 3), dtype=np.uint8), path, fps=fps, encoder=encoder)
    return path


def make_audio_only(path: Path) -> Path:
    """An mp4 with half a second of silence and no video stream."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "s16le", "-ar", "8000", "-ac", "1",
           "-i", "pipe:", "-c:a", "aac", str(path)]
    subprocess.run(cmd, input=bytes(8000), check=True)
    return path


def frame_size(folder: Path) -> tuple:
    with Image.open(folder / "img_00001.jpg") as im:
        return im.size  # (width, height)


def test_frame_template_conversion():
    assert FrameTemplate.parse("img_{:05d}.jpg").ffmpeg_pattern == "img_%05d.jpg"
    assert FrameTemplate.parse("{:06d}.jpg").ffmpeg_pattern == "%06d.jpg"
    assert FrameTemplate.parse("image_%05d.jpg").format(7) == "image_00007.jpg"
    assert FrameTemplate.parse("f{}.png").ffmpeg_pattern == "f%d.png"
    regex = FrameTemplate.parse("img_{:05d}.jpg").regex
    assert regex.fullmatch("img_00012.jpg") and not regex.fullmatch("flow_x_00012.jpg") and not regex.fullmatch("img_12.jpg")
    for bad in ("img.jpg", "img_{:05d}_{:05d}.jpg", "img_{:5s}.jpg"):
        with pytest.raises(UserError):
            FrameTemplate.parse(bad)


def test_find_videos_recursive_case_insensitive(tmp_path):
    for name in ("a/x.MP4", "a/b/y.webm", "z.Mkv", "notes.txt", "a/.hidden/w.mp4"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert [p.relative_to(tmp_path).as_posix() for p in find_videos(tmp_path)] == ["a/b/y.webm", "a/x.MP4", "z.Mkv"]


@pytest.mark.parametrize("width,height", [(64, 48), (48, 64)])
def test_short_side_landscape_and_portrait(tmp_path, encoder, width, height):
    video = make_video(tmp_path / "v.mp4", encoder, width=width, height=height)
    assert extract_frames(video, tmp_path / "resized", short_side=32) == 6
    w, h = frame_size(tmp_path / "resized")
    short, long = min(w, h), max(w, h)
    assert short == 32 and (w < h) == (width < height)
    assert long % 2 == 0 and abs(long - 32 * 64 / 48) <= 2
    assert extract_frames(video, tmp_path / "native", short_side=0) == 6
    assert frame_size(tmp_path / "native") == (width, height)


def test_fps_and_template(tmp_path, encoder):
    video = make_video(tmp_path / "v.mp4", encoder, frames=16, fps=16)
    out = tmp_path / "frames"
    written = extract_frames(video, out, short_side=0, fps=8, template="{:06d}.jpg")
    assert written in (8, 9)
    assert sorted(os.listdir(out))[0] == "000001.jpg" and len(os.listdir(out)) == written


def test_bad_video_raises_and_leaves_nothing(tmp_path):
    bad = tmp_path / "text.mp4"
    bad.write_text("this is not a video\n")
    with pytest.raises(MediaError) as info:
        extract_frames(bad, tmp_path / "out")
    assert str(bad) in str(info.value) and "ffmpeg failed" in info.value.reason
    assert sorted(p.name for p in tmp_path.iterdir()) == ["text.mp4"]


def test_extract_tree_failures_and_resume(tmp_path, encoder):
    src, dst = tmp_path / "src", tmp_path / "dst"
    good = [make_video(src / rel, encoder) for rel in ("a/b/one.mp4", "a/two.mp4", "three.mp4")]
    (src / "bad").mkdir()
    (src / "bad/empty.mp4").write_bytes(b"")
    (src / "bad/text.mp4").write_text("not a video\n")
    (src / "bad/truncated.mp4").write_bytes(good[0].read_bytes()[: good[0].stat().st_size // 2])
    make_audio_only(src / "bad/audio.mp4")
    broken = ("audio", "empty", "text", "truncated")

    args = ["extract-frames", str(src), str(dst), "--short-side", "32", "--workers", "2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "failed 4" in result.output
    for rel in ("a/b/one", "a/two", "three"):
        assert len(list((dst / rel).glob("img_*.jpg"))) == 6
    failures = (dst / "extract_failures.txt").read_text().splitlines()
    reasons = dict(line.split("\t") for line in failures)
    assert sorted(reasons) == [str(src / f"bad/{name}.mp4") for name in broken]
    assert reasons[str(src / "bad/audio.mp4")].endswith("no video stream") and all(reasons.values())
    assert not (dst / "bad").exists() and not list(dst.rglob("*.tmp-*"))

    # A re-run skips finished folders (untouched: a marker stays) and clears stale temporary folders.
    marker = dst / "a/two/marker"
    marker.write_bytes(b"")
    (dst / "a/.two.tmp-12345").mkdir()
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "skipped 3" in result.output and "extracted 0" in result.output
    assert marker.exists() and not (dst / "a/.two.tmp-12345").exists()

    # --overwrite redoes them; once the broken videos are gone the failure report goes too.
    for name in broken:
        (src / f"bad/{name}.mp4").unlink()
    result = runner.invoke(app, args + ["--overwrite"])
    assert result.exit_code == 0, result.output
    assert "extracted 3" in result.output and not marker.exists()
    assert not (dst / "extract_failures.txt").exists()


def test_frame_template_flag(tmp_path, encoder):
    make_video(tmp_path / "src" / "v.mp4", encoder)
    result = runner.invoke(app, ["extract-frames", str(tmp_path / "src"), str(tmp_path / "dst"), "--short-side", "0",
                                 "--frame-template", "{:06d}.jpg", "-j", "1"])
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(tmp_path / "dst" / "v")) == [f"{i:06d}.jpg" for i in range(1, 7)]
    assert runner.invoke(app, ["extract-frames", "a", "b", "--template", "{:06d}.jpg"]).exit_code == 2


# `videorec extract-frames` that says on stdout when its second ffmpeg job has started (jobs start their
# children in a session of their own; other child processes do not count).
ANNOUNCING_CHILD = """
import subprocess, sys
from videorec_cli.main import main

class Announcing(subprocess.Popen):
    started = 0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        Announcing.started += bool(kwargs.get("start_new_session"))
        if Announcing.started == 2 and kwargs.get("start_new_session"):
            print("second ffmpeg started", flush=True)

subprocess.Popen = Announcing
sys.argv = ["videorec", "extract-frames", *sys.argv[1:]]
main()
"""


def test_ctrl_c_stops_cleanly(tmp_path, encoder):
    """SIGINT while the second of three videos is being extracted (-j 1): the first folder is complete,
    no other folder nor temporary folder is left, no traceback."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    for i in range(3):
        make_video(src / f"v{i}.mp4", encoder, width=64, height=48, frames=30)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", ANNOUNCING_CHILD, str(src), str(dst), "--short-side", "0",
                             "-j", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    lines = []
    while not lines or lines[-1] not in ("second ffmpeg started\n", ""):
        lines.append(proc.stdout.readline())
    assert lines[0].startswith("extracting 3 videos") and lines[-1] == "second ffmpeg started\n", lines
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err and "extracted" not in out
    assert sorted(os.listdir(dst)) == ["v0"] and len(os.listdir(dst / "v0")) == 30
