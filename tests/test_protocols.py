"""Named test protocols: presets, aliases, and the merge where flags win over presets."""
from __future__ import annotations

import pytest

from archs.weights import get_weights, list_weights
from ops.common.errors import UserError
from ops.engine.config import DataSettings
from ops.engine import tester
from ops.common.options import GivenOptions
from ops.evaluation.protocols import (ALIASES, fields_for_data, fields_for_tester, get_preset, list_protocols,
                                      merge_protocol, resolve_protocol, weights_protocol)


def test_every_preset_and_alias_is_valid():
    for preset in list_protocols():
        assert preset.protocol.check() is preset.protocol and preset.description
    for alias, target in ALIASES.items():
        assert get_preset(alias) is get_preset(target)
    with pytest.raises(UserError, match="unknown test protocol 'tsm-3x10'; choose one of: 30-view, center-crop-1clip"):
        get_preset("tsm-3x10")


@pytest.mark.parametrize("name,views", [("center-crop-1clip", 1), ("tsn-1x1", 1), ("tsn-10crop", 10),
                                        ("full-res-1x3", 3), ("30-view", 30), ("mvfnet-30view", 30),
                                        ("x3d-30view", 30), ("x3d-1x1", 1), ("ssv2-2x3", 6), ("tsm-2x3", 6),
                                        ("movinet-whole-video", 1)])
def test_views_per_video_match_the_seed_tables(name, views):
    assert get_preset(name).protocol.views == views


def test_flags_win_over_the_row_and_the_row_over_the_preset():
    merged = merge_protocol("x3d-30view", {"scale_size": 356}, {"num_clips": 1, "test_crops": None},
                            row_label="weights x3d_l_k400")
    p = merged.protocol
    assert (p.num_clips, p.test_crops, p.full_res, p.dense_sample, p.scale_size) == (1, 3, True, True, 356)
    assert merged.origin["num_clips"] == "flag" and merged.origin["test_crops"] == "preset x3d-30view"
    assert merged.origin["scale_size"] == "weights x3d_l_k400" and merged.origin["twice_sample"] == "default"
    assert merge_protocol("x3d-30view", {"scale_size": 356}, {"scale_size": 300}).protocol.scale_size == 300
    assert "num_clips=1 (flag)" in merged.describe() and merged.describe().startswith("3 views per video")
    assert merged.as_record()["values"]["scale_size"] == 356


def test_a_weights_row_brings_its_protocol():
    merged = weights_protocol(get_weights("x3d_l_k400"))
    assert merged.protocol.views == 30 and merged.protocol.scale_size == 356
    assert merged.origin["scale_size"] == "weights x3d_l_k400" and merged.origin["num_clips"] == "preset x3d-30view"
    assert weights_protocol(get_weights("tsm_r50_sthv2_8f"), {"test_crops": 1}).protocol.views == 2


@pytest.mark.parametrize("flags,message", [
    ({"clips": 3}, "clips is not a protocol setting; settings: test_segments"),
    ({"test_crops": 5}, "--test-crops must be 1, 3 or 10"),
    ({"test_crops": 1}, "--full-res applies to 3-crop testing"),
    ({"twice_sample": True}, "--twice-sample applies to segment sampling"),
    ({"num_clips": 0}, "--num-clips must be at least 1"),
    ({"scale_size": 0}, "--scale-size must be positive"),
])
def test_impossible_settings_are_refused(flags, message):
    with pytest.raises(UserError, match=message):
        merge_protocol("dense-10x3", flags=flags)


def test_without_a_preset_only_the_flags_apply():
    merged = merge_protocol(flags={"test_crops": 3})
    assert merged.protocol.views == 3 and merged.origin == {**{k: "default" for k in merged.origin},
                                                            "test_crops": "flag"}


def test_protocol_maps_onto_the_tester_settings():
    p = merge_protocol("ssv2-2x3", {"scale_size": 224}).protocol
    data = DataSettings(dataset="something", **fields_for_data(p))
    settings = tester.TestSettings(data=data, weights="w.pth", **fields_for_tester(p))
    assert (settings.num_clips, settings.clip_indices, settings.test_crops, settings.full_res) == (2, [0, 1], 3, True)
    assert (settings.data.scale_size, settings.data.crop_size, settings.data.dense_sample) == (224, None, False)


def test_every_catalog_row_has_a_known_protocol():
    assert {get_preset(e.protocol).name for e in list_weights()} >= {"dense-10x3", "tsn-10x3", "ssv2-2x3", "tsn-1x1",
                                                                      "movinet-whole-video", "tsm-2x3"}


def test_flags_that_change_a_preset_or_row_value_give_notes():
    merged = weights_protocol(get_weights("x3d_l_k400"), {"num_clips": 1, "full_res": False, "test_crops": 1,
                                                          "scale_size": 356, "crop_size": 300})
    assert merged.notes == ("--num-clips 1 overrides preset x3d-30view's num_clips=10",
                            "--no-full-res overrides preset x3d-30view's full_res=True",
                            "--test-crops 1 overrides preset x3d-30view's test_crops=3")
    assert merged.origin["crop_size"] == "flag"  # a default changed: no note
    assert not merge_protocol("dense-10x3", flags={"num_clips": 10}).notes


def test_protocol_by_name_replaces_the_row_and_no_row_means_the_flags():
    entry = get_weights("x3d_l_k400")
    assert resolve_protocol(entry).protocol.scale_size == 356
    chosen = resolve_protocol(entry, "tsn-1x1", {"num_clips": 2})
    assert (chosen.protocol.scale_size, chosen.protocol.num_clips) == (256, 2)
    assert chosen.origin["scale_size"] == "preset tsn-1x1" and chosen.origin["num_clips"] == "flag"
    plain = resolve_protocol(None, None, {"test_crops": 3})
    assert plain.protocol.views == 3 and plain.describe() == "3 views per video: test_crops=3 (flag)"


def test_protocol_settings_put_the_segments_in_the_model_options():
    merged = merge_protocol("tsn-1x1", {"test_segments": 16}, row_label="weights w")
    fields = tester.protocol_settings(DataSettings(dataset="x"), merged, GivenOptions())
    assert fields["model_options"].values == {"num_segments": 16}
    assert fields["model_options"].flags == {"num_segments": "weights w test_segments=16"}
    assert (fields["data"].crop_size, fields["data"].scale_size, fields["num_clips"]) == (224, 256, 1)
    assert fields["protocol"] is merged
    given = GivenOptions({"num_segments": 8}, {"num_segments": "-m num_segments=8"})
    assert tester.protocol_settings(DataSettings(dataset="x"), merged, given)["model_options"].values == \
        {"num_segments": 8}
