"""extract-features: shards hold forward_features of each video (or window), bad videos are
listed and skipped, finished shards are not redone."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from archs.registry import create_model
from ops.apps.features import FeatureClips, FeatureSettings, extract_features, feature_spec, read_records
from ops.common.errors import UserError
from ops.data.sampling import sample_indices
from ops.data.sources import open_source
from ops.data.transforms import ClipTransform
from tests.conftest import write_frame_folder
from videorec_cli.main import app

CROP = 32


@pytest.fixture
def videos(tmp_path):
    """A list of 4 frame folders (12 frames of 32x32, random pixels) and a missing one at row 2."""
    rng = np.random.default_rng(0)
    lines = []
    for i in range(4):
        write_frame_folder(tmp_path / f"v{i}", rng.integers(0, 255, (12, 32, 32, 3), dtype=np.uint8))
        lines.append(f"v{i} 12 {i}")
    lines.insert(2, "missing 12 0")
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    return tmp_path


def _model():
    return create_model("x3d_xs", 5).eval()


def _expected(model, folder, start=0, end=12):
    """forward_features in Python of the centre-crop clip sampled over frames [start, end)."""
    spec = feature_spec(model.input_spec, CROP)
    transform = ClipTransform(mode="val", crop_size=spec.crop_size, scale_size=spec.scale_size, mean=spec.mean,
                              std=spec.std, value_range=spec.value_range)
    idx = start + sample_indices(end - start, mode="val", num_segments=spec.num_segments, sampling=spec.sampling,
                                 dense_stride=spec.dense_stride)
    views, _ = transform(open_source(folder, "img_{:05d}.jpg").read(idx), (0,))
    with torch.no_grad():
        return model.forward_features(transform.normalize(views)).numpy()[0]


def test_features_equal_forward_features_and_bad_videos_are_listed(videos):
    model = _model()
    ckpt = videos / "best.pth"
    torch.save({"model": model.state_dict(), "arch": "x3d_xs", "num_classes": 5, "settings": {}}, ckpt)
    out = videos / "out"
    result = CliRunner().invoke(app, ["extract-features", str(videos / "list.txt"), "--weights", str(ckpt),
                                      "--crop-size", str(CROP), "-o", str(out), "--shard-size", "2", "--workers", "0"])
    assert result.exit_code == 0, result.output
    shards = sorted(out.glob("features_*.npz"))
    assert [p.name for p in shards] == ["features_00000.npz", "features_00001.npz", "features_00002.npz"]
    rows = {}
    for path in shards:
        with np.load(path) as data:
            for i, row in enumerate(data["rows"]):
                rows[int(row)] = (str(data["ids"][i]), int(data["labels"][i]), data["features"][i])
    assert sorted(rows) == [0, 1, 3, 4]  # row 2 is the missing video
    for row, (vid, label, feats) in rows.items():
        np.testing.assert_allclose(feats, _expected(model, videos / vid), rtol=1e-5, atol=1e-6)
    assert rows[3][:2] == ("v2", 2)
    assert "missing" in (out / "bad_videos.txt").read_text()


def test_windows_and_resume(videos):
    model = _model()
    settings = FeatureSettings(source=str(videos / "list.txt"), output_dir=str(videos / "out"), window=0.6,
                               stride=0.2, fps=10.0, crop_size=CROP, shard_size=3, workers=0,
                               model={"arch": "x3d_xs"})
    paths = extract_features(model, settings)
    with np.load(paths[0]) as data:
        first = data["frames"][data["rows"] == 0]
        np.testing.assert_array_equal(first, [[0, 6], [2, 8], [4, 10], [6, 12]])  # 0.6 s every 0.2 s at 10 fps
        np.testing.assert_allclose(data["features"][1], _expected(model, videos / "v0", 2, 8), rtol=1e-5, atol=1e-6)
    paths[1].unlink()
    kept = paths[0].read_bytes()
    extract_features(model, settings)  # reruns only the missing shard
    assert paths[1].is_file() and paths[0].read_bytes() == kept
    with pytest.raises(UserError, match="other settings"):
        extract_features(model, FeatureSettings(**{**settings.__dict__, "stride": 0.3}))


def test_one_video_and_flags_that_do_not_apply(videos):
    records, root = read_records(FeatureSettings(source=str(videos / "v1"), output_dir="x"))
    assert [r.path for r in records] == [str(videos / "v1")] and root == ""
    spec = feature_spec(_model().input_spec, CROP)
    item = FeatureClips(records, root, spec, FeatureSettings(source="", output_dir="", window=1.0))[0]
    assert "pass --fps" in item["bad"]  # a frame folder has no frame rate of its own
    with pytest.raises(UserError, match="--stride applies to windows only"):
        extract_features(_model(), FeatureSettings(source=str(videos / "v1"), output_dir=str(videos / "o"), stride=1.0))
