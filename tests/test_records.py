"""List files and the dataset registry."""
import json
import re
from pathlib import Path

import pytest

from dataset_configs import DatasetConfigError, get_dataset
from ops.common.errors import UserError
from ops.data.records import parse_line, read_list_file


def test_line_forms():
    assert parse_line("a/b 30 2", "f", 1).num_frames == 30
    v = parse_line("some dir/video.mp4 7", "f", 1)
    assert v.path == "some dir/video.mp4" and v.num_frames is None and v.labels == (7,)
    m = parse_line("v_1,120,3,5", "f", 1)
    assert m.num_frames == 120 and m.labels == (3, 5)


def test_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("a 10 1\nb ten 1\n")
    with pytest.raises(UserError, match=r"train.txt:2: expected"):
        read_list_file(path)
    path.write_text("a 10 1\nb 10 9\n")
    with pytest.raises(UserError, match=r"train.txt:2: label 9 is out of range for 5 classes"):
        read_list_file(path, num_classes=5)
    with pytest.raises(UserError, match="list file not found"):
        read_list_file(tmp_path / "nope.txt")


def test_registry_and_custom_config(tmp_path):
    ss = get_dataset("somethingv2")
    assert ss.num_classes == 174 and ss.flip_map()[86] == 87 and ss.flip_map()[167] == 166
    assert get_dataset("actnet").multi_label and get_dataset("jester").flip == "none"
    cfg = tmp_path / "mine.json"
    cfg.write_text(json.dumps({"num_classes": 3, "root": "data", "frame_template": "{:06d}.jpg"}))
    mine = get_dataset(str(cfg))
    assert mine.name == "mine" and mine.root == str(tmp_path / "data") and mine.list_path("val") == tmp_path / "data" / "val.txt"
    cfg.write_text(json.dumps({"num_classes": 3, "colour": "red"}))
    with pytest.raises(DatasetConfigError, match="unknown keys"):
        get_dataset(str(cfg))
    with pytest.raises(DatasetConfigError, match="unknown dataset"):
        get_dataset("imagenet")


def _dataset(list_file, root, strict=False):
    from ops.data.dataset import SamplingSettings, VideoDataset
    from ops.data.transforms import ClipTransform

    transform = ClipTransform("val", 16, 16, mean=(0.5,) * 3, std=(0.25,) * 3)
    return VideoDataset(read_list_file(list_file, 3), root=str(root), template="img_{:05d}.jpg",
                        sampling=SamplingSettings("val", 2), transform=transform, num_classes=3, strict=strict,
                        video_ext=".mp4")


def test_missing_entries_counted_at_start_with_list_and_line(tmp_path, monkeypatch):
    from ops.data import dataset as dataset_module
    from ops.data.dataset import MissingEntry, write_missing_report

    (tmp_path / "a").mkdir()
    (tmp_path / "c.mp4").write_bytes(b"")  # a video found by the dataset's extension
    lists = tmp_path / "val.txt"
    lists.write_text("a 4 0\n# a comment\nb 4 1\nc 4 2\n/elsewhere/d 4 1\n")

    def no_reading(*_):
        raise AssertionError("a sample was read")

    monkeypatch.setattr(dataset_module, "open_source", no_reading)
    data = _dataset(lists, tmp_path)
    assert data.missing == [MissingEntry(str(lists), 3, tmp_path / "b.mp4"),
                            MissingEntry(str(lists), 5, Path("/elsewhere/d.mp4"))]
    assert [r.path for r in data.records] == ["a", "c"] and len(data) == 2
    report = write_missing_report(data.missing, tmp_path / "run", "val")
    assert report == tmp_path / "run" / "missing_val.txt"
    assert report.read_text() == f"{lists}:3 {tmp_path / 'b.mp4'}\n{lists}:5 /elsewhere/d.mp4\n"
    assert write_missing_report([], tmp_path / "run", "val") is None and not report.exists()

    first = re.escape(f"{lists}:3: {tmp_path / 'b.mp4'} does not exist (2 of 4 entries missing)")
    with pytest.raises(UserError, match=f"^{first}"):
        _dataset(lists, tmp_path, strict=True)
    lists.write_text("x 4 0\ny 4 1\n")
    with pytest.raises(UserError, match=r"none of its 2 entries exists .*is the dataset root right"):
        _dataset(lists, tmp_path)


def test_binary_list_file_names_the_line(tmp_path):
    path = tmp_path / "train.txt"
    path.write_bytes(b"a 10 1\n\xff\xfe 3 1\n")
    with pytest.raises(UserError, match=r"train.txt:2: not UTF-8 text"):
        read_list_file(path)
