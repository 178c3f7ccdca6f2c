"""The synthetic motion dataset: reproducible, decodable, motion in the right direction."""
from __future__ import annotations

import signal
import subprocess
import threading

import numpy as np
import pytest
from typer.testing import CliRunner

from dataset_configs import get_dataset, read_class_names
from ops.prep.media import extract_frames
from ops.prep.synthetic import CLASS_NAMES, SyntheticSettings, render_index, render_video
from videorec_cli.main import app

runner = CliRunner()


def shape_masks(video: np.ndarray) -> np.ndarray:
    """(T, H, W) bool: pixels far from the frame's median colour (the background)."""
    median = np.median(video.reshape(len(video), -1, 3), axis=1)[:, None, None, :]
    return np.abs(video.astype(np.float32) - median).mean(-1) > 35


def centroids(masks: np.ndarray) -> np.ndarray:
    ys, xs = np.mgrid[: masks.shape[1], : masks.shape[2]]
    area = masks.sum((1, 2))
    return np.stack([(masks * xs).sum((1, 2)) / area, (masks * ys).sum((1, 2)) / area], axis=1)


def test_classes_sorted_and_registered():
    assert list(CLASS_NAMES) == sorted(CLASS_NAMES) and len(set(CLASS_NAMES)) == 10
    assert get_dataset("synthetic", root="/nonexistent").num_classes == len(CLASS_NAMES)


def test_render_is_reproducible():
    settings = SyntheticSettings(frames=8, size=32, seed=3)
    a, b = render_index(settings, 5), render_index(settings, 5)
    assert a.shape == (8, 32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, render_index(SyntheticSettings(frames=8, size=32, seed=4), 5))


def test_motion_goes_the_right_way():
    for seed in range(3):
        def clip(name):
            return shape_masks(render_video(name, np.random.default_rng(seed), frames=12, size=64))

        for name, axis, sign in (("move_left", 0, -1), ("move_right", 0, 1), ("move_up", 1, -1), ("move_down", 1, 1)):
            c = centroids(clip(name))
            assert sign * (c[-1, axis] - c[0, axis]) > 8, (name, seed)
        for name, sign in (("grow", 1), ("shrink", -1), ("appear", 1), ("disappear", -1)):
            area = clip(name).sum((1, 2))
            assert sign * (int(area[-1]) - int(area[0])) > 40, (name, seed)
        # The centroid of an asymmetric shape moves along an arc around its pivot: the signed area
        # of that arc closed by its chord (shoelace) is positive for clockwise turns on screen (y down).
        for name, sign in (("rotate_clockwise", 1), ("rotate_counterclockwise", -1)):
            x, y = centroids(clip(name)).T
            assert sign * np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y) > 0, (name, seed)


def test_make_synthetic_cli_reproducible_and_annotatable(tmp_path):
    args = ["--num-videos", "10", "--frames", "8", "--size", "32", "--seed", "7", "--workers", "2"]
    for out in ("a", "b"):
        result = runner.invoke(app, ["make-synthetic", str(tmp_path / out), *args])
        assert result.exit_code == 0, result.output
    videos = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.mp4"))
    assert len(videos) == 10 and {v.parts[1] for v in videos} == set(CLASS_NAMES)
    assert all((tmp_path / "a" / v).read_bytes() == (tmp_path / "b" / v).read_bytes() for v in videos)
    assert extract_frames(tmp_path / "a" / videos[0], tmp_path / "frames", short_side=0) == 8

    result = runner.invoke(app, ["make-annotations", "--format", "folder", "--media", "videos",
                                 "--media-dir", str(tmp_path / "a" / "videos"), "--root", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    assert read_class_names(tmp_path / "a" / "classes.txt") == list(CLASS_NAMES)
    rows = (tmp_path / "a" / "train.txt").read_text().splitlines()
    assert len(rows) == 10 and rows[0].startswith("videos/appear/appear_") and rows[0].endswith(" 0")


@pytest.mark.parametrize("decoder", ["pyav", "decord"])
def test_every_size_decodes_to_the_rendered_frames(tmp_path, decoder):
    """Every even size from 16 px decodes to exactly the rendered frames' count and size, with
    every video backend (raw decord misreads some widths, e.g. 48 px: our decord source reads
    narrow frames one by one and cuts the row padding off)."""
    from ops.data.sources import open_source
    from ops.prep.synthetic import encode_video, pick_encoder

    encoder = pick_encoder()
    for size in range(16, 97, 8):
        settings = SyntheticSettings(num_videos=1, frames=3, size=size)
        settings.check()
        path = tmp_path / f"{size}.mp4"
        encode_video(render_index(settings, 0), path, fps=8, encoder=encoder)
        frames = np.asarray(open_source(path, "", decoder=decoder).read(np.arange(3)))
        assert frames.shape == (3, size, size, 3), size


def test_ctrl_c_leaves_only_complete_videos(tmp_path, monkeypatch):
    """SIGINT while the second of four videos is being encoded (one worker): the first video is complete,
    nothing else is written, no temporary file is left."""
    import decord

    from ops.prep.synthetic import make_synthetic

    started = []

    class Interrupting(subprocess.Popen):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append(kwargs.get("start_new_session"))
            if started.count(True) == 2:
                signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)  # what Ctrl-C does

    monkeypatch.setattr(subprocess, "Popen", Interrupting)
    settings = SyntheticSettings(num_videos=4, frames=6, size=32, classes=("grow", "shrink"))
    with pytest.raises(KeyboardInterrupt):
        make_synthetic(tmp_path, settings, workers=1)
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert files == ["videos/grow/grow_00000.mp4"]
    assert len(decord.VideoReader(str(tmp_path / files[0]))) == 6
