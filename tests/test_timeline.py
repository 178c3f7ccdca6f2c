"""Timelines: a video whose class changes halfway puts the change in the top-1 at the right
second; the CSV and JSON agree; the PNG is an image; a stream model makes one causal pass and
`stream -o` writes the same format."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from archs.registry import create_model
from ops.apps.predict import PredictSettings, TimelineSettings, centre_transform, predict_timeline
from ops.common.errors import UserError
from ops.engine.checkpoints import model_metadata
from ops.prep.synthetic import encode_video, pick_encoder, render_video
from videorec_cli.main import app

FPS = 10
HALF = 40  # frames per half: the class changes at 4.0 s
NAMES = ["first", "second"]
SIZE = 32


def _halves() -> np.ndarray:
    """(2 * HALF, 48, 48, 3) uint8: a synthetic clip, then another one with inverted colours."""
    rng = np.random.default_rng(3)
    first = render_video("move_right", rng, frames=HALF, size=48)
    second = 255 - render_video("rotate_clockwise", rng, frames=HALF, size=48)
    return np.concatenate([first, second])


def _nearest_centroid_tsn(frames: np.ndarray) -> torch.nn.Module:
    """tsn_mbv2 (random features, seeded) whose classifier is set by hand to a nearest-centroid
    rule on the features of the two halves: class 0 for clips of the first half, 1 of the second."""
    torch.manual_seed(0)
    model = create_model("tsn_mbv2", 2, num_segments=4, width_mult=0.25).eval()
    spec = model.input_spec.replace(crop_size=SIZE, scale_size=SIZE)
    transform = centre_transform(spec)

    def features(clip: np.ndarray) -> torch.Tensor:
        picks = np.linspace(0, len(clip) - 1, 4).round().astype(int)
        views, _ = transform(torch.from_numpy(clip[picks]), (0,))
        with torch.no_grad():
            return model.forward_features(transform.normalize(views))[0]

    centroids = torch.stack([features(frames[:HALF]), features(frames[HALF:])])
    scale = 10.0 / ((centroids[0] - centroids[1]).pow(2).sum() / 2)  # logit margin 10 on a pure clip
    with torch.no_grad():
        model.get_classifier().weight.copy_(scale * centroids)
        model.get_classifier().bias.copy_(-scale * centroids.pow(2).sum(1) / 2)
    model.input_spec = spec
    return model


@pytest.fixture(scope="module")
def halves_video(tmp_path_factory):
    """An mp4 at 10 fps whose first 4 s are one class and last 4 s the other, the frames as a
    JPEG folder too, and a checkpoint of a model that tells the halves apart."""
    from PIL import Image

    root = tmp_path_factory.mktemp("halves")
    frames = _halves()
    video = root / "halves.mp4"
    encode_video(frames, video, fps=FPS, encoder=pick_encoder())
    folder = root / "frames"
    folder.mkdir()
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"img_{i + 1:05d}.jpg", quality=95)
    model = _nearest_centroid_tsn(frames)
    ckpt = root / "tsn.pth"
    torch.save({"model": model.state_dict(), **model_metadata(model, 2, NAMES, model.input_spec)}, ckpt)
    return video, folder, ckpt


def _read_csv(path: Path) -> list:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _first_change(rows: list, centre: bool) -> float:
    """The time (window centre, or report time) of the first row whose top-1 is 'second'."""
    for row in rows:
        if row["top"][0]["class"] == "second":
            return (row["start"] + row["end"]) / 2 if centre else row["end"]
    raise AssertionError("the top-1 never changes")


def test_timeline_puts_the_class_change_at_the_right_second(halves_video, tmp_path):
    video, _, ckpt = halves_video
    out = tmp_path / "timeline"
    stride = 0.5
    done = CliRunner().invoke(app, ["predict", str(video), "--weights", str(ckpt), "--timeline", "--window", "2",
                                    "--stride", str(stride), "--top-k", "2", "--device", "cpu", "-o", str(out)])
    assert done.exit_code == 0, done.output
    doc = json.loads((out / "timeline.json").read_text())
    assert doc["kind"] == "windows" and doc["video_fps"] == FPS and doc["window"] == 2.0
    rows = doc["rows"]
    assert [(r["start"], r["end"]) for r in rows] == [(k * stride, k * stride + 2) for k in range(13)]  # 8 s video
    tops = [r["top"][0]["class"] for r in rows]
    assert tops[0] == "first" and tops[-1] == "second"
    assert tops == sorted(tops)  # one change, first -> second
    assert abs(_first_change(rows, centre=True) - 4.0) <= stride
    table = _read_csv(out / "timeline.csv")  # the CSV says what the JSON says
    assert [(float(t["start"]), float(t["end"])) for t in table] == [(r["start"], r["end"]) for r in rows]
    for line, row in zip(table, rows):
        assert [line["class1"], line["class2"]] == [c["class"] for c in row["top"]]
        assert [float(line["prob1"]), float(line["prob2"])] == [c["prob"] for c in row["top"]]
    from PIL import Image

    with Image.open(out / "timeline.png") as png:
        assert png.format == "PNG" and png.size[0] > 100 and png.size[1] > 100
        assert np.asarray(png.convert("RGB")).std() > 0  # something is drawn
    assert sorted(p.name for p in out.iterdir()) == ["timeline.csv", "timeline.json", "timeline.png"]


def test_frame_folder_needs_fps_and_gives_the_same_change(halves_video, tmp_path):
    video, folder, ckpt = halves_video
    settings = PredictSettings(video=folder, weights=str(ckpt), device="cpu", top_k=2)
    with pytest.raises(UserError, match="frame folder: pass --fps"):
        predict_timeline(settings, TimelineSettings(output=tmp_path / "a", window=2.0, stride=0.5))
    with pytest.raises(UserError, match="--fps applies to frame folders"):
        predict_timeline(PredictSettings(video=video, weights=str(ckpt), device="cpu"),
                         TimelineSettings(output=tmp_path / "a", window=2.0, stride=0.5, fps=10.0))
    # the rate sets the seconds: the same folder read as 20 fps changes class at 2.0 s
    for fps, change in [(10.0, 4.0), (20.0, 2.0)]:
        timeline, _ = predict_timeline(settings, TimelineSettings(output=tmp_path / str(fps), window=1.0,
                                                                  stride=0.25, fps=fps), say=lambda _: None)
        rows = json.loads((tmp_path / str(fps) / "timeline.json").read_text())["rows"]
        assert len(rows) == len(timeline.rows) and abs(_first_change(rows, centre=True) - change) <= 0.25


@pytest.fixture(scope="module")
def stream_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("movinet_a0_stream", 3)
    path = tmp_path_factory.mktemp("stream") / "stream.pth"
    torch.save({"model": model.state_dict(), **model_metadata(model, 3, ["a", "b", "c"],
                                                              model.input_spec.replace(crop_size=SIZE))}, path)
    return path


def test_stream_model_timeline_is_one_causal_pass_in_the_stream_format(halves_video, stream_ckpt, tmp_path):
    video, _, _ = halves_video
    runner = CliRunner()
    done = runner.invoke(app, ["predict", str(video), "--weights", str(stream_ckpt), "--timeline", "--stride", "2",
                               "--device", "cpu", "-o", str(tmp_path / "p")])
    assert done.exit_code == 0, done.output
    ours = json.loads((tmp_path / "p" / "timeline.json").read_text())
    assert ours["kind"] == "causal" and ours["model_fps"] == 5.0  # 25 / the model's frame stride
    assert [(r["start"], r["end"]) for r in ours["rows"]] == [(0.0, 2.0), (2.0, 4.0), (4.0, 6.0), (6.0, 8.0)]
    streamed = runner.invoke(app, ["stream", str(video), "--weights", str(stream_ckpt), "--every", "2",
                                   "--device", "cpu", "-o", str(tmp_path / "s")])
    assert streamed.exit_code == 0, streamed.output
    theirs = json.loads((tmp_path / "s" / "timeline.json").read_text())
    assert theirs.keys() == ours.keys() - {"video_fps"} and theirs["kind"] == "causal"
    assert [(r["start"], r["end"]) for r in theirs["rows"]] == [(r["start"], r["end"]) for r in ours["rows"]]
    assert {c["class"] for r in theirs["rows"] for c in r["top"]} == {"a", "b", "c"}
    assert _read_csv(tmp_path / "s" / "timeline.csv")[0].keys() == _read_csv(tmp_path / "p" / "timeline.csv")[0].keys()
    assert (tmp_path / "s" / "timeline.png").stat().st_size > 0
    refused = runner.invoke(app, ["predict", str(video), "--weights", str(stream_ckpt), "--timeline", "--window", "2",
                                  "-o", str(tmp_path / "w")])
    assert isinstance(refused.exception, UserError) and "--window does not apply to movinet_a0_stream" in str(
        refused.exception)


def test_timeline_flags_need_timeline_and_a_folder(halves_video, tmp_path):
    video, _, ckpt = halves_video
    runner = CliRunner()
    for extra, message in [(["--window", "2"], "--window applies only with --timeline"),
                           (["-o", str(tmp_path)], "-o/--output applies only with --timeline"),
                           (["--timeline"], "pass -o DIR")]:
        done = runner.invoke(app, ["predict", str(video), "--weights", str(ckpt), *extra])
        assert isinstance(done.exception, UserError) and message in str(done.exception), done.output
