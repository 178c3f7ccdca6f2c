"""make-annotations: every official format, missing-entry reports, malformed-line errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dataset_configs import read_class_names
from ops.prep.annotations import AnnotationInputs, kinetics_class_name, read_annotations
from ops.common.errors import UserError
from videorec_cli.main import app

runner = CliRunner()


def frames(folder: Path, count: int, template: str = "img_{:05d}.jpg") -> None:
    """A frame folder with ``count`` (empty) frames and a file the template must not count."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, count + 1):
        (folder / template.format(i)).write_bytes(b"")
    (folder / "flow_x_00001.jpg").write_bytes(b"")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> bytes:
    """The bytes of a decodable 2-frame 32x32 mp4 (make-annotations probes every video)."""
    import numpy as np

    from ops.prep.synthetic import encode_video, pick_encoder

    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    encode_video(np.zeros((2, 32, 32, 3), np.uint8), path, fps=8, encoder=pick_encoder())
    return path.read_bytes()


def video(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def invoke(*args):
    result = runner.invoke(app, ["make-annotations", *map(str, args)])
    if result.exception and not isinstance(result.exception, (UserError, SystemExit)):
        raise result.exception
    return result


def rows(path: Path):
    return [line.split() for line in path.read_text().splitlines()]


def test_sthv1_sorted_labels_missing_report(tmp_path):
    media = tmp_path / "img"
    frames(media / "1", 5, "{:05d}.jpg")
    frames(media / "2", 7, "{:05d}.jpg")
    frames(media / "4", 0, "{:05d}.jpg")  # empty folder: reported
    labels = write(tmp_path / "labels.csv", "Pushing something\nHolding something\nDropping something\n")
    train = write(tmp_path / "train.csv", "1;Pushing something\n2;Dropping something\n")
    val = write(tmp_path / "val.csv", "3;Holding something\n4;Pushing something\n")
    out = tmp_path / "lists"
    result = invoke("--format", "sthv1", "--media-dir", media, "--root", tmp_path, "--output-dir", out,
                    "--frame-template", "{:05d}.jpg", "--labels", labels, "--train", train, "--val", val)
    assert result.exit_code == 0, result.output
    assert read_class_names(out / "classes.txt") == ["Dropping something", "Holding something", "Pushing something"]
    assert rows(out / "train.txt") == [["img/1", "5", "2"], ["img/2", "7", "0"]]
    assert (out / "val.txt").read_text() == ""
    missing = (out / "missing_val.txt").read_text().splitlines()
    assert [m.split("\t")[0] for m in missing] == ["3", "4"]
    assert "no frames named like" in missing[1]
    assert "2 missing or empty" in result.output and not (out / "missing_train.txt").exists()

    # Malformed line: the error names the file and line.
    write(val, "3;Holding something\n4 Pushing something\n")
    result = invoke("--format", "sthv1", "--media-dir", media, "--output-dir", out, "--labels", labels, "--train", train, "--val", val)
    assert isinstance(result.exception, UserError) and f"{val}:2:" in str(result.exception)
    write(val, "3;Holding something\n4;Jumping\n")
    with pytest.raises(UserError, match=rf"{val}:2: unknown class 'Jumping'"):
        read_annotations("sthv1", AnnotationInputs(media, labels=labels, train=train, val=val))


def test_sthv2_templates_and_test_split(tmp_path):
    media = tmp_path / "frames"
    for vid, n in (("10", 4), ("11", 6), ("12", 3), ("13", 2)):
        frames(media / vid, n, "{:06d}.jpg")
    labels = write(tmp_path / "labels.json", json.dumps({"Holding something": "0", "Putting something on something": "1"}))
    train = write(tmp_path / "train.json", json.dumps([
        {"id": "10", "label": "putting a cup on a table", "template": "Putting [something] on [something]", "placeholders": ["cup", "table"]},
        {"id": "11", "label": "holding a pen", "template": "Holding [something]", "placeholders": ["pen"]},
    ]))
    val = write(tmp_path / "val.json", json.dumps([{"id": "12", "label": "x", "template": "Holding [something]", "placeholders": []}]))
    test = write(tmp_path / "test.json", json.dumps([{"id": "13"}]))
    result = invoke("--format", "sthv2", "--media-dir", media, "--frame-template", "{:06d}.jpg",
                    "--labels", labels, "--train", train, "--val", val, "--test", test)
    assert result.exit_code == 0, result.output
    assert read_class_names(media / "classes.txt") == ["Holding something", "Putting something on something"]
    assert rows(media / "train.txt") == [["10", "4", "1"], ["11", "6", "0"]]
    assert rows(media / "val.txt") == [["12", "3", "0"]] and rows(media / "test.txt") == [["13", "2", "0"]]

    write(val, json.dumps([{"id": "12", "label": "x"}]))
    with pytest.raises(UserError, match=r"val.json: entry 1"):
        read_annotations("sthv2", AnnotationInputs(media, labels=labels, train=train, val=val))


def test_kinetics_names_and_layouts(tmp_path):
    media = tmp_path / "frames"
    frames(media / "passing_American_football_in_game" / "abc_000010_000020", 3)  # class sub-folder layout
    frames(media / "zumba_000000_000010", 4)  # flat layout
    header = "label,youtube_id,time_start,time_end,split,is_cc\n"
    train = write(tmp_path / "train.csv", header + '"passing American football (in game)",abc,10,20,train,0\n'
                  "zumba,zumba,0,10,train,0\nzumba,gone,5,15,train,0\n")
    val = write(tmp_path / "validate.csv", header + '"passing American football (in game)",abc,10.0,20.0,val,0\n')
    result = invoke("--format", "kinetics", "--media-dir", media, "--train", train, "--val", val)
    assert result.exit_code == 0, result.output
    assert read_class_names(media / "classes.txt") == ["passing_American_football_in_game", "zumba"]
    assert rows(media / "train.txt") == [["passing_American_football_in_game/abc_000010_000020", "3", "0"],
                                         ["zumba_000000_000010", "4", "1"]]
    assert rows(media / "val.txt") == [["passing_American_football_in_game/abc_000010_000020", "3", "0"]]
    assert (media / "missing_train.txt").read_text().startswith("zumba/gone_000005_000015\t")
    assert kinetics_class_name("massaging person's head") == "massaging_persons_head"

    write(val, header + "zumba,abc,10,20,val\n")
    result = invoke("--format", "kinetics", "--media-dir", media, "--train", train, "--val", val)
    assert isinstance(result.exception, UserError) and f"{val}:2: expected 6 columns" in str(result.exception)


def test_ucf101_videos(tmp_path, clip):
    media = tmp_path / "videos"
    for rel in ("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi", "Archery/v_Archery_g01_c01.avi", "Archery/v_Archery_g08_c01.avi"):
        video(media / rel, clip)
    write(media / "Archery/v_Archery_g09_c01.avi", "")  # zero bytes: reported, not listed
    splits = tmp_path / "ucfTrainTestlist"
    write(splits / "classInd.txt", "1 ApplyEyeMakeup\n2 Archery\n")
    write(splits / "trainlist01.txt", "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi 1\nArchery/v_Archery_g01_c01.avi 2\n")
    write(splits / "testlist01.txt", "Archery/v_Archery_g08_c01.avi\nArchery/v_Archery_g09_c01.avi\n")
    result = invoke("--format", "ucf101", "--media", "videos", "--media-dir", media, "--root", tmp_path, "--split-dir", splits)
    assert result.exit_code == 0, result.output
    assert rows(tmp_path / "train.txt") == [["videos/ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi", "0"],
                                            ["videos/Archery/v_Archery_g01_c01.avi", "1"]]
    assert rows(tmp_path / "val.txt") == [["videos/Archery/v_Archery_g08_c01.avi", "1"]]
    assert "empty video file" in (tmp_path / "missing_val.txt").read_text()
    assert read_class_names(tmp_path / "classes.txt") == ["ApplyEyeMakeup", "Archery"]

    write(splits / "trainlist01.txt", "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi 2\n")
    with pytest.raises(UserError, match=r"trainlist01.txt:1: label 2 disagrees"):
        read_annotations("ucf101", AnnotationInputs(media, media="videos", split_dir=splits))


def test_hmdb51_splits(tmp_path):
    media = tmp_path / "frames"
    for cls, vid in (("brush_hair", "a"), ("brush_hair", "b"), ("cartwheel", "c"), ("cartwheel", "d")):
        frames(media / cls / vid, 2)
    splits = tmp_path / "splits"
    write(splits / "cartwheel_test_split1.txt", "c.avi 1\nd.avi 2\ne.avi 0\n")
    write(splits / "brush_hair_test_split1.txt", "a.avi 1 \nb.avi 2\n")
    write(splits / "brush_hair_test_split2.txt", "a.avi 2\nb.avi 1\n")
    result = invoke("--format", "hmdb51", "--media-dir", media, "--split-dir", splits)
    assert result.exit_code == 0, result.output
    assert read_class_names(media / "classes.txt") == ["brush_hair", "cartwheel"]
    assert rows(media / "train.txt") == [["brush_hair/a", "2", "0"], ["cartwheel/c", "2", "1"]]
    assert rows(media / "val.txt") == [["brush_hair/b", "2", "0"], ["cartwheel/d", "2", "1"]]

    write(splits / "cartwheel_test_split1.txt", "c.avi 1\nd.avi 3\n")
    with pytest.raises(UserError, match=r"cartwheel_test_split1.txt:2:"):
        read_annotations("hmdb51", AnnotationInputs(media, split_dir=splits))


def test_folder_split_is_seeded_and_per_class(tmp_path):
    media = tmp_path / "frames"
    for cls in ("b_class", "a_class"):
        for i in range(10):
            frames(media / cls / f"{cls}_{i}", 3)

    def split(seed, out):
        result = invoke("--format", "folder", "--media-dir", media, "--output-dir", out, "--val-fraction", "0.3", "--seed", seed)
        assert result.exit_code == 0, result.output
        return (out / "train.txt").read_text(), (out / "val.txt").read_text()

    first, again, other = split(0, tmp_path / "o1"), split(0, tmp_path / "o2"), split(1, tmp_path / "o3")
    assert first == again and first != other
    train, val = ([r for r in text.splitlines()] for text in first)
    assert len(train) == 14 and len(val) == 6
    assert sum(r.endswith(" 0") for r in val) == 3 and sum(r.startswith("a_class/") for r in val) == 3
    assert read_class_names(tmp_path / "o1" / "classes.txt") == ["a_class", "b_class"]


def test_missing_option_is_a_user_error(tmp_path):
    result = invoke("--format", "sthv2", "--media-dir", tmp_path)
    assert isinstance(result.exception, UserError) and "--labels" in str(result.exception)


def test_kinetics_videos_found_by_unique_name(tmp_path, clip):
    media = tmp_path / "kinetics400"
    video(media / "train/zumba/zumba_000000_000010.mp4", clip)
    video(media / "val/zumba_000005_000015.mp4", clip)
    video(media / "train/a/dup_000001_000002.mp4", clip)
    video(media / "val/dup_000001_000002.mp4", clip)  # the same name twice: ambiguous, so reported
    header = "label,youtube_id,time_start,time_end,split\n"
    train = write(tmp_path / "train.csv", header + "zumba,zumba,0,10,train\nzumba,dup,1,2,train\n")
    val = write(tmp_path / "val.csv", header + "zumba,zumba,5,15,val\n")
    result = invoke("--format", "kinetics", "--media", "videos", "--media-dir", media, "--root", tmp_path,
                    "--train", train, "--val", val)
    assert result.exit_code == 0, result.output
    assert rows(tmp_path / "train.txt") == [["kinetics400/train/zumba/zumba_000000_000010.mp4", "0"]]
    assert rows(tmp_path / "val.txt") == [["kinetics400/val/zumba_000005_000015.mp4", "0"]]
    assert (tmp_path / "missing_train.txt").read_text().startswith("zumba/dup_000001_000002\t")


def test_undecodable_videos_are_reported_and_left_out_quietly(tmp_path, clip, capfd):
    media = tmp_path / "videos"
    video(media / "a" / "good.mp4", clip)
    video(media / "a" / "zero.mp4", b"")
    video(media / "a" / "truncated.mp4", clip[: len(clip) // 2])  # the index (moov) is at the end: cut off
    write(media / "a" / "text.mp4", "this is not a video\n")
    result = invoke("--format", "folder", "--media", "videos", "--media-dir", media, "-o", tmp_path / "lists")
    assert result.exit_code == 0, result.output
    assert rows(tmp_path / "lists" / "train.txt") == [["a/good.mp4", "0"]]
    report = dict(line.split("\t") for line in (tmp_path / "lists" / "missing_train.txt").read_text().splitlines())
    assert sorted(report) == ["a/text", "a/truncated", "a/zero"]
    assert report["a/zero"].startswith("empty video file")
    assert "undecodable" in report["a/text"] and "undecodable: moov atom not found" in report["a/truncated"]
    assert "1 missing or empty, 2 undecodable, listed in" in result.output
    assert capfd.readouterr().err == ""  # no decoder noise reached the terminal


def test_binary_annotation_files_are_one_line(tmp_path):
    media = tmp_path / "img"
    frames(media / "1", 2)
    labels = tmp_path / "labels.csv"
    labels.write_bytes(b"\xff\xfe\x00binary")
    for fmt, extra in (("sthv1", ("--train", labels, "--val", labels)), ("sthv2", ("--train", labels, "--val", labels)),
                       ("kinetics", ("--train", labels, "--val", labels))):
        result = invoke("--format", fmt, "--media-dir", media, "--labels", labels, *extra, "-o", tmp_path / "out")
        assert isinstance(result.exception, UserError), (fmt, result.exception)
        assert str(result.exception) == f"{labels}: not UTF-8 text (byte 0); is it the right file?"


def test_inputs_a_format_does_not_read_are_errors(tmp_path):
    media = tmp_path / "frames"
    frames(media / "a" / "x", 2)
    labels = write(tmp_path / "labels.csv", "a\n")
    cases = [
        (("--format", "folder", "--labels", labels), "--labels does not apply to --format folder (it reads "
                                                     "--val-fraction --seed)"),
        (("--format", "folder", "--seed", 3), "--seed picks the val videos: it needs --val-fraction > 0"),
        (("--format", "sthv1", "--split", 2), "--split does not apply to --format sthv1 (it reads --labels --train --val)"),
        (("--format", "ucf101", "--val-fraction", 0.2), "--val-fraction does not apply to --format ucf101"),
        (("--format", "folder", "--media", "videos", "--frame-template", "{:06d}.jpg"),
         "--frame-template names the frames of --media frames"),
    ]
    for args, message in cases:
        result = invoke("--media-dir", media, "-o", tmp_path / "out", *args)
        assert isinstance(result.exception, UserError) and str(result.exception).startswith(message), result.exception
    assert not (tmp_path / "out").exists()
    result = invoke("--media-dir", media, "-o", tmp_path / "out", "--format", "folder", "--seed", 3,
                    "--val-fraction", 0.5)
    assert result.exit_code == 0, result.output
