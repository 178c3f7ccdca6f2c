"""`--weights NAME` through the commands: a catalog entry brings the model, input and protocol."""
from __future__ import annotations

import hashlib
import json
import shutil
import socket
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from archs.registry import create_model
from archs.weights import Published, WeightsEntry, register_weights, unregister_weights
from ops.common.download import cached_file
from ops.common.options import GivenOptions
from ops.evaluation.early_exit import per_exit_gmacs
from ops.evaluation.scores import read_scores
from videorec_cli.main import app

TINY_ARCH = {"arch": "tsm_mbv2", "options": {"width_mult": 0.25, "num_segments": 4}}
TINY_SPEC = {"crop_size": 32, "scale_size": 32}
TRAIN = ["--arch", "tsm_mbv2", "-m", "width_mult=0.25", "--num-segments", "4", "--npb", "--crop-size", "32",
         "--scale-size", "32", "-b", "4", "--workers", "0", "--epochs", "1", "--eval-freq", "1"]


def invoke(*args) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.output  # stdout and stderr




def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def released_file(folder: Path, arch: str, num_classes: int, seed: int = 0, **options) -> Path:
    """A bare state dict (as a released checkpoint: it says nothing about its model)."""
    torch.manual_seed(seed)
    path = folder / f"{arch}_{seed}.pth"
    torch.save(create_model(arch, num_classes, **options).state_dict(), path)
    return path


def catalog_entry(name: str, file: Path, url: str, dataset: str, **changes) -> WeightsEntry:
    """A registered entry of ``file`` (published sha256) for the tiny dataset."""
    fields = {"name": name, "url": url, "file_name": f"{name}.pth", "dataset": dataset, "num_classes": 4,
              "protocol": "center-crop-1clip", "published": Published(top1=50.0, top5=100.0, source="a test"),
              "sha256": sha256(file), "spec": TINY_SPEC,
              "protocol_overrides": {"num_clips": 2, "test_crops": 3, "full_res": True}, **TINY_ARCH, **changes}
    return register_weights(WeightsEntry(**fields))


@pytest.fixture
def zoo(tmp_path, monkeypatch, tiny_dataset):
    """VIDEOREC_HOME in tmp_path; ``tiny_zoo`` (a TSM-MobileNetV2 on the tiny dataset, 2 clips x 3
    full-resolution crops) placed in the cache, as after a download."""
    monkeypatch.setenv("VIDEOREC_HOME", str(tmp_path / "home"))
    file = released_file(tmp_path, "tsm_mbv2", 4, seed=7, width_mult=0.25, num_segments=4)  # not the training seed
    entry = catalog_entry("tiny_zoo", file, "https://example.invalid/tiny_zoo.pth", str(tiny_dataset))
    cached_file(entry).parent.mkdir(parents=True)
    shutil.copy(file, cached_file(entry))
    yield entry
    unregister_weights("tiny_zoo")


def test_weights_name_brings_arch_spec_and_protocol(zoo, tiny_dataset, tmp_path):
    out = invoke("test", tiny_dataset, "--weights", "tiny_zoo", "--workers", 0, "-o", tmp_path / "s")
    assert "protocol: 6 views per video: num_clips=2 (weights tiny_zoo), test_crops=3 (weights tiny_zoo)" in out
    assert "overrides" not in out
    scores = [read_scores(tmp_path / "s" / f"scores_clip{i}of2.pkl") for i in range(2)]
    settings = scores[0].settings
    assert scores[0].logits.shape == (8, 3, 4) and scores[1].clip_index == 1
    assert settings["arch"] == "tsm_mbv2" and settings["model_options"]["width_mult"] == 0.25
    assert settings["input_spec"]["crop_size"] == 32 and settings["input_spec"]["num_segments"] == 4
    assert settings["protocol"]["origin"]["num_clips"] == "weights tiny_zoo"
    assert settings["protocol"]["values"]["full_res"] is True and settings["weights_file"] == str(cached_file(zoo))


def test_flags_override_the_row_with_a_note(zoo, tiny_dataset, tmp_path):
    out = invoke("test", tiny_dataset, "--weights", "tiny_zoo", "--workers", 0, "--num-clips", 1, "--test-crops", 1,
                 "--no-full-res", "--test-segments", 2, "-o", tmp_path / "s")
    assert "--num-clips 1 overrides weights tiny_zoo's num_clips=2" in out
    assert "--no-full-res overrides weights tiny_zoo's full_res=True" in out
    assert "--test-segments 2 overrides the checkpoint's 4" in out
    scores = read_scores(tmp_path / "s" / "scores_clip0of1.pkl")
    assert scores.logits.shape == (8, 1, 4) and scores.settings["model_options"]["num_segments"] == 2
    assert not (tmp_path / "s" / "scores_clip1of2.pkl").exists()


def test_protocol_presets_change_the_views(zoo, tiny_dataset, tmp_path):
    out = invoke("test", tiny_dataset, "--weights", "tiny_zoo", "--workers", 0, "--protocol", "tsm-2x3",
                 "--crop-size", 32, "--scale-size", 32, "-o", tmp_path / "p")
    assert "protocol: 6 views per video: test_crops=3 (preset tsm-2x3), twice_sample=True (preset tsm-2x3)" in out
    assert "--crop-size 32 overrides preset tsm-2x3's crop_size=224" in out
    scores = read_scores(tmp_path / "p" / "scores_clip0of1.pkl")
    assert scores.logits.shape == (8, 6, 4) and scores.settings["protocol"]["origin"]["twice_sample"] == "preset tsm-2x3"
    # a checkpoint path without --protocol: 1 clip x 1 centre crop, as before
    invoke("test", tiny_dataset, "--weights", cached_file(zoo), "--arch", "tsm_mbv2", "-m", "width_mult=0.25",
           "--test-segments", 4, "--crop-size", 32, "--workers", 0, "-o", tmp_path / "d")
    assert read_scores(tmp_path / "d" / "scores_clip0of1.pkl").logits.shape == (8, 1, 4)


def test_predict_takes_a_catalog_name_and_its_dataset_class_names(zoo, tiny_dataset):
    from tests.conftest import TINY_CLASSES

    out = invoke("predict", tiny_dataset.parent / "frames" / "grow" / "grow_4", "--weights", "tiny_zoo",
                 "--device", "cpu")
    named = [line.split()[-1] for line in out.splitlines() if "%" in line]
    assert sorted(named) == sorted(TINY_CLASSES)  # 4 classes, named from the dataset's classes.txt


def test_stream_loads_a_catalog_name_with_its_model(zoo, tmp_path):
    from ops.apps.stream import load_stream_model

    file = released_file(tmp_path, "movinet_a0_stream", 4)
    entry = catalog_entry("tiny_stream", file, "https://example.invalid/s.pth", "kinetics600", arch="movinet_a0_stream",
                          options={}, spec={"crop_size": 64})
    try:
        shutil.copy(file, cached_file(entry))
        loaded = load_stream_model(None, "tiny_stream", None, [])
    finally:
        unregister_weights("tiny_stream")
    assert loaded.model.arch_name == "movinet_a0_stream" and loaded.model.get_classifier().weight.shape[0] == 4
    assert loaded.spec.crop_size == 64 and loaded.entry is entry


def test_early_exit_measures_the_catalog_model(zoo, tiny_dataset, tmp_path):
    invoke("test", tiny_dataset, "--weights", "tiny_zoo", "--workers", 0, "--exits", "--protocol", "center-crop-1clip",
           "-o", tmp_path / "s")
    scores = tmp_path / "s" / "scores_clip0of1.pkl"
    invoke("early-exit", "--eval-scores", scores, "--weights", "tiny_zoo", "-o", tmp_path / "by_name")
    cost = json.loads((tmp_path / "by_name" / "early_exit.json").read_text())["gflops_per_exit"]
    with_options = per_exit_gmacs("tsm_mbv2", 4, 4, 32, GivenOptions({"width_mult": 0.25}, {"width_mult": "-m"}))
    assert cost == pytest.approx(with_options) and cost != pytest.approx(per_exit_gmacs("tsm_mbv2", 4, 4, 32))


@pytest.mark.parametrize("flag", ["--tune-from", "--pretrained"])
def test_train_starts_from_a_catalog_name(flag, zoo, tiny_dataset, tmp_path):
    invoke("train", tiny_dataset, *TRAIN, "--lr", 0, flag, "tiny_zoo", "-o", tmp_path / "run")
    tuned = torch.load(tmp_path / "run" / "last.pth", weights_only=True)["model"]
    released = torch.load(cached_file(zoo), weights_only=True)
    key = next(k for k in released if k.endswith("fc.weight") or k.endswith("classifier.weight"))
    torch.testing.assert_close(tuned[key], released[key])  # lr 0: the tuned weights are the catalog's


def test_without_network_the_download_is_one_line(zoo, tiny_dataset, tmp_path, run_main):
    with socket.socket() as sock:  # a loopback port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    entry = catalog_entry("tiny_offline", cached_file(zoo), f"http://127.0.0.1:{port}/w.pth", str(tiny_dataset))
    try:
        code, out, err = run_main("test", tiny_dataset, "--weights", "tiny_offline",
                                  "-o", tmp_path / "s")
    finally:
        unregister_weights("tiny_offline")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"cannot reach http://127.0.0.1:{port}/w.pth" in err and str(cached_file(entry)) in err


def test_an_unknown_name_says_close_ones(zoo, tiny_dataset, tmp_path, run_main):
    code, _, err = run_main("predict", tmp_path, "--weights", "tiny_zo")
    assert code == 2 and "unknown weights 'tiny_zo'" in err and "tiny_zoo" in err
