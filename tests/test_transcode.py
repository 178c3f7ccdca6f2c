"""`videorec transcode`: a tree re-encoded with the asked keyframe interval and size, resumable,
failures listed with exit 1; `videorec doctor` reports and never fails."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import av
import pytest
from typer.testing import CliRunner

from ops.common.errors import UserError
from ops.data.sources import open_source
from ops.prep.transcode import TranscodeSettings, transcode_tree
from tests.decoder_fixtures import make_video
from videorec_cli.main import app

H264 = ["-c:v", "libx264", "-pix_fmt", "yuv420p"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDEOREC_CACHE_DIR", str(tmp_path / "cache"))


def _tree(root: Path) -> Path:
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    make_video(root / "a" / "one.mp4", H264, frames=30, size="96x64")
    make_video(root / "b" / "two.avi", ["-c:v", "mpeg4"], frames=30, size="64x96")  # portrait
    return root


def _keyframes_and_size(path: Path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        keys = [i for i, p in enumerate(sorted((p for p in container.demux(stream) if p.size), key=lambda p: p.pts))
                if p.is_keyframe]
        return keys, (stream.codec_context.width, stream.codec_context.height), stream.codec_context.name


def test_tree_is_transcoded_with_the_asked_gop_and_short_side_then_skipped(tmp_path):
    src = _tree(tmp_path / "src")
    dst = tmp_path / "dst"
    runner = CliRunner()
    result = runner.invoke(app, ["transcode", str(src), str(dst), "--gop", "8", "--short-side", "32", "-j", "2"])
    assert result.exit_code == 0, result.output
    assert "transcoded 2 videos (60 frames" in result.output and "failed 0" in result.output
    one, two = dst / "a" / "one.mp4", dst / "b" / "two.mp4"
    assert _keyframes_and_size(one) == ([0, 8, 16, 24], (48, 32), "h264")
    assert _keyframes_and_size(two) == ([0, 8, 16, 24], (32, 48), "h264")
    assert open_source(two, "", decoder="pyav").read([0, 29]).shape == (2, 48, 32, 3)
    assert sorted(p.name for p in dst.rglob("*")) == ["a", "b", "one.mp4", "two.mp4"]  # no temporary left
    again = runner.invoke(app, ["transcode", str(src), str(dst), "--gop", "8", "--short-side", "32"])
    assert again.exit_code == 0 and "transcoded 0 videos" in again.output and "skipped 2" in again.output


def test_fps_and_crf_change_the_output(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    make_video(src / "v.mp4", H264, frames=30, size="96x64")
    fine = transcode_tree(src, tmp_path / "fine", TranscodeSettings(short_side=0, crf=10), workers=1)
    coarse = transcode_tree(src, tmp_path / "coarse", TranscodeSettings(short_side=0, crf=40, fps=15), workers=1)
    assert fine.frames == 30 and coarse.frames == 15
    assert (tmp_path / "fine" / "v.mp4").stat().st_size > 2 * (tmp_path / "coarse" / "v.mp4").stat().st_size


def test_broken_inputs_are_listed_and_exit_1(tmp_path):
    src = _tree(tmp_path / "src")
    (src / "a" / "empty.mp4").write_bytes(b"")
    (src / "b" / "junk.mkv").write_bytes(b"not a video at all" * 50)
    dst = tmp_path / "dst"
    result = CliRunner().invoke(app, ["transcode", str(src), str(dst), "-j", "1"])
    assert result.exit_code == 1, result.output
    report = (dst / "transcode_failures.txt").read_text().splitlines()
    assert [line.split("\t")[0] for line in report] == [str(src / "a" / "empty.mp4"), str(src / "b" / "junk.mkv")]
    assert all(line.split("\t")[1] for line in report)
    assert "2 videos failed; see" in result.stderr and "transcoded 2 videos" in result.stdout
    assert not (dst / "a" / "empty.mp4").exists() and (dst / "a" / "one.mp4").is_file()


def test_settings_and_output_folder_are_checked_before_any_work(tmp_path):
    src = _tree(tmp_path / "src")
    with pytest.raises(UserError, match="--short-side 33: must be even"):
        transcode_tree(src, tmp_path / "dst", TranscodeSettings(short_side=33))
    with pytest.raises(UserError, match="is inside"):
        transcode_tree(src, src / "out", TranscodeSettings())
    with pytest.raises(UserError, match="transcode output folder /proc/1/x"):
        transcode_tree(src, Path("/proc/1/x"), TranscodeSettings())


def test_doctor_lists_every_decoder_and_ffmpeg():
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    for needle in ("torchcodec", "pyav", "decord", "auto picks", "ffmpeg binary", "PyAV's FFmpeg", "simplejpeg",
                   "--decode-device cuda"):
        assert needle in result.output


def test_help_does_not_import_torch():
    code = ("import sys; from videorec_cli.main import app\n"
            "for cmd in ('transcode', 'doctor'):\n"
            "    try: app([cmd, '--help'])\n"
            "    except SystemExit: pass\n"
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert done.stdout.strip().splitlines()[-1] == "False", done.stderr
