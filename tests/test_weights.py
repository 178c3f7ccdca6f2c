"""The released-weights catalog: every entry builds, has a valid spec and a known protocol."""
from __future__ import annotations

import re
from dataclasses import replace

import pytest
import torch
from typer.testing import CliRunner

from archs.registry import InputSpec, ModelOptionError, create_model
from archs.weights import (Published, UnknownWeightsError, WeightsEntry, get_weights, list_weights, register_weights,
                           unregister_weights, validate_entry)
from dataset_configs import get_dataset
from ops.evaluation.protocols import weights_protocol
from videorec_cli.main import app

ENTRIES = list_weights()
BUILDS = sorted({(e.arch, tuple(sorted(e.options.items())), e.num_classes) for e in ENTRIES}, key=str)


@pytest.mark.parametrize("arch,options,num_classes", BUILDS, ids=[f"{a}-{dict(o)}-{k}" for a, o, k in BUILDS])
def test_every_entry_builds_its_arch_with_its_options(arch, options, num_classes):
    with torch.device("meta"):
        model = create_model(arch, num_classes, **dict(options))
    assert model.arch_name == arch
    assert model.get_classifier().weight.shape[0] == num_classes
    for entry in ENTRIES:
        if (entry.arch, tuple(sorted(entry.options.items()))) == (arch, options):
            spec = entry.input_spec(model.input_spec)
            assert isinstance(spec, InputSpec) and spec.sampling in ("segment", "dense")
            assert spec.num_segments > 0 and 0 < spec.crop_size <= spec.scale_size
            assert {k: getattr(spec, k) for k in _name_says(entry)} == _name_says(entry), entry.name


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_every_entry_is_consistent(entry):
    validate_entry(entry)
    assert get_dataset(entry.dataset).num_classes == entry.num_classes
    merged = weights_protocol(entry)
    assert merged.protocol.views >= 1
    assert entry.published.source and (entry.published.top1 or entry.published.mAP)
    assert entry.url.startswith("https://") and entry.channel_order in ("rgb", "bgr")


def _name_says(entry: WeightsEntry) -> dict:
    """Spec fields a name states: `_16f` 16 frames or segments, MVFNet's `_8x8` 8 dense frames at stride 8."""
    frames = re.search(r"_(\d+)f(_|$)", entry.name)
    dense = re.search(r"_(\d+)x(\d+)$", entry.name)
    if dense:
        return {"num_segments": int(dense.group(1)), "dense_stride": int(dense.group(2)), "sampling": "dense"}
    return {"num_segments": int(frames.group(1))} if frames else {}


def test_most_names_state_their_clip():
    assert sum(bool(_name_says(e)) for e in ENTRIES) > 50


def test_seed_rows_are_in_the_catalog():
    names = {e.name for e in ENTRIES}
    for family, count in [("mvfnet_*", 6), ("movinet_*", 9), ("adafocusv2_*", 10), ("vov3d_*", 14), ("x3d_*", 7),
                          ("tdn_*", 12), ("tsm_*", 15)]:
        assert len(list_weights(family)) == count, family
    assert {"mvfnet_r50_k400_8x8", "movinet_a2_stream_k600", "x3d_m_k400", "vov3d_l_sthv2_32f_k400pt",
            "adafocusv2_res50_actnet_p160", "tsm_r50_k400_8f_dense", "tdn_r101_k400_16f"} <= names


def test_lookup_names_close_matches():
    assert get_weights("mvfnet_r50_k400_8x8").options == {"num_segments": 8}
    with pytest.raises(UnknownWeightsError, match="mvfnet_r50_k400_8x8"):
        get_weights("mvfnet_r50_k400_8x")
    assert [e.name for e in list_weights("movinet_a0*")] == ["movinet_a0_k600", "movinet_a0_stream_k600"]


def _entry(**changes) -> WeightsEntry:
    base = WeightsEntry(name="test_catalog_entry", arch="tsn_r18", url="https://example.invalid/a.pth",
                        file_name="test_catalog_entry.pth", dataset="ucf101", num_classes=101, protocol="tsn-1x1",
                        published=Published(top1=1.0, source="test"))
    return replace(base, **changes)


@pytest.mark.parametrize("changes,message", [
    ({"name": "mvfnet_r50_k400_8x8"}, "registered twice"),
    ({"name": "Bad.Name"}, "lower-case"),
    ({"sha256": "abc"}, "64 lower-case hex"),
    ({"spec": {"frames": 8}}, "not InputSpec fields"),
    ({"file_name": "R50_8x8.pth"}, "share the file name"),
    ({"channel_order": "yuv"}, "channel_order must be rgb or bgr"),
])
def test_register_refuses_bad_entries(changes, message):
    with pytest.raises(ValueError, match=message):
        register_weights(_entry(**changes))
    assert "test_catalog_entry" not in {e.name for e in list_weights()}


def test_validate_names_the_entry_and_the_bad_option():
    entry = register_weights(_entry(options={"num_frames": 8}))
    try:
        with pytest.raises(ModelOptionError, match="weights test_catalog_entry: tsn_r18 does not take option"):
            validate_entry(entry)
    finally:
        unregister_weights(entry.name)


def test_weights_command_lists_rows_and_cached_state(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDEOREC_HOME", str(tmp_path))
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "R50_8x8.pth").write_bytes(b"x")
    runner = CliRunner()
    result = runner.invoke(app, ["weights", "mvfnet_r50*"], terminal_width=200)
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split() for line in result.output.splitlines()[1:]}
    assert set(rows) == {"mvfnet_r50_k400_4x16", "mvfnet_r50_k400_8x8", "mvfnet_r50_k400_16x4"}
    assert rows["mvfnet_r50_k400_8x8"][-1] == "yes" and rows["mvfnet_r50_k400_4x16"][-1] == "no"
    assert rows["mvfnet_r50_k400_8x8"][1:4] == ["mvfnet_r50", "kinetics", "mvfnet-30view"]
    assert "76.0" in result.output and "url:" not in result.output
    manual = runner.invoke(app, ["weights", "tdn_r50_k400_8f", "-v"], terminal_width=200)
    assert manual.output.splitlines()[1].split()[-1] == "manual"
    assert "page (fetch by hand): https://drive.google.com/" in manual.output
    assert f"file: {tmp_path / 'weights' / 'tdn_r50_k400_8f.pth.tar'}" in manual.output
    missing = runner.invoke(app, ["weights", "nothing*"])
    assert missing.exit_code != 0 and "no weights match" in missing.output


def test_bgr_rows_swap_the_channels_before_normalising():
    from ops.data.transforms import ClipTransform, Normalize

    spec = get_weights("vov3d_m_sthv2_16f").input_spec(InputSpec())
    assert spec.channel_order == "bgr" and (spec.sampling, spec.crop_size) == ("segment", 224)
    assert get_weights("x3d_l_sthv2_16f").input_spec(InputSpec()).channel_order == "rgb"
    x = torch.randint(0, 256, (2, 3, 2, 4, 4), dtype=torch.uint8)
    mean, std = (0.1, 0.2, 0.3), (0.5, 1.0, 2.0)
    torch.testing.assert_close(Normalize(mean, std, channel_order="bgr")(x), Normalize(mean, std)(x.flip(1)))
    frames = x[0].permute(1, 2, 3, 0).contiguous()  # (T, H, W, 3)
    rgb, bgr = (ClipTransform("val", 4, 4, mean, std, channel_order=order) for order in ("rgb", "bgr"))
    torch.testing.assert_close(bgr.normalize(bgr(frames, (0,))[0]), rgb.normalize(rgb(frames.flip(-1), (0,))[0]))


@pytest.mark.parametrize("name,expected", [
    # (segments, frames per segment, sampling, stride, crop, short side, channels), views, full-res crops
    ("mvfnet_r50_k400_8x8", ((8, 1, "dense", 8, 224, 256, "rgb"), 30, True)),
    ("tdn_r50_k400_8f", ((8, 5, "segment", 8, 224, 256, "rgb"), 30, True)),
    ("tsm_r50_k400_8f", ((8, 1, "segment", 8, 224, 256, "rgb"), 1, False)),
    ("movinet_a0_k600", ((50, 1, "dense", 5, 172, 172, "rgb"), 1, False)),
    ("x3d_l_k400", ((16, 1, "dense", 5, 312, 356, "rgb"), 30, True)),
    ("vov3d_m_sthv2_16f", ((16, 1, "segment", 5, 224, 256, "bgr"), 6, True)),
    ("adafocusv2_mbv2_actnet_p128", ((16, 1, "segment", 8, 224, 256, "rgb"), 1, False)),
])
def test_one_row_per_family_says_what_test_runs(name, expected):
    """What `videorec test DATASET --weights NAME` tests with no other flag: the row's model and
    options, its input spec and its protocol's views (the model built on the meta device)."""
    from ops.data.loader import resolve_spec
    from ops.engine.config import DataSettings
    from ops.evaluation.protocols import fields_for_data, resolve_protocol

    entry = get_weights(name)
    with torch.device("meta"):
        model = create_model(entry.arch, entry.num_classes, **entry.options)
    protocol = resolve_protocol(entry).protocol
    s = resolve_spec(entry.input_spec(model.input_spec), DataSettings(dataset=entry.dataset, **fields_for_data(protocol)))
    spec = (s.num_segments, s.frames_per_segment, s.sampling, s.dense_stride, s.crop_size, s.scale_size, s.channel_order)
    assert (spec, protocol.views, protocol.full_res) == expected
