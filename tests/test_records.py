"""List files and the dataset registry."""
import json

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
