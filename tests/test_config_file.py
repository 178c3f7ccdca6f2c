"""Train configs in files: YAML/JSON, key checks, settings.json round trip, precedence."""
import json

import pytest

from ops.common.errors import UserError
from ops.engine.config import DataSettings, TrainSettings, write_json
from ops.engine.config_file import (DERIVED_KEYS, defaults_of, format_config, load_and_validate, load_config, merge,
                                    nest_flat, validate_keys)


def run_settings() -> TrainSettings:
    return TrainSettings(data=DataSettings(dataset="something", num_segments=8, crop_size=160, workers=3),
                         arch="msn_r50", model_options={"dropout": 0.3}, epochs=7, batch_size=4, lr=0.003,
                         lr_steps=[3.0, 5.0], wd=1e-4, gd=None, npb=True, seed=5, output_dir="runs/x")


def resolve(config=None, flags=None, recipe=None):
    return merge(defaults_of(TrainSettings), recipe, config, flags, recipe_label="recipe r", config_label="config c")


def test_settings_json_is_a_config_and_resolves_to_the_same_settings(tmp_path):
    settings = run_settings()
    # the trainer's settings.json: the settings plus resolved extras
    resolved_extras = {"num_classes": 174, "class_names": ["a", "b"], "input_spec": {"num_segments": 8}, "dataset_config": {"name": "x"},
                       "world_size": 2}
    assert set(resolved_extras) == set(DERIVED_KEYS)
    write_json(tmp_path / "settings.json", {**settings.to_dict(), **resolved_extras})
    config = load_and_validate(tmp_path / "settings.json")
    again = resolve(config=config).settings()
    assert again == settings
    # and --print-config's output is itself a config resolving to the same settings
    (tmp_path / "printed.yaml").write_text(format_config(resolve(config=config)))
    assert resolve(config=load_and_validate(tmp_path / "printed.yaml")).settings() == settings


def test_yaml_config_flags_override_and_origins(tmp_path):
    (tmp_path / "c.yaml").write_text("arch: tsm_r50\nlr: 1e-3\nlr_steps: [10, 20]\n"
                                     "model_options: {dropout: 0.8, shift_div: 4}\n"
                                     "data:\n  dataset: kinetics\n  num_segments: 16\n")
    config = load_and_validate(tmp_path / "c.yaml")
    assert config["lr"] == 0.001 and config["lr_steps"] == [10.0, 20.0]  # YAML 1.1 reads 1e-3 as a string
    recipe = {"epochs": 60, "lr": 0.01, "model_options": {"dropout": 0.5}, "data": {"workers": 4}}
    flags = nest_flat({"lr": 0.02, "model_options": {"dropout": 0.1}, "num_segments": 8})
    assert flags == {"lr": 0.02, "model_options": {"dropout": 0.1}, "data": {"num_segments": 8}}
    res = resolve(config=config, flags=flags, recipe=recipe)
    s = res.settings()
    assert (s.lr, s.epochs, s.batch_size, s.data.num_segments, s.data.workers) == (0.02, 60, 8, 8, 4)
    assert s.model_options == {"dropout": 0.1, "shift_div": 4}
    assert res.origin["lr"] == "flag" and res.origin["epochs"] == "recipe r" and res.origin["batch_size"] == "default"
    assert res.origin["data.dataset"] == "config c" and res.origin["model_options.shift_div"] == "config c"
    assert res.origin["model_options.dropout"] == "flag"
    printed = format_config(res)
    assert "lr: 0.02  # flag" in printed and "  dataset: \"kinetics\"  # config c" in printed


def test_unknown_key_is_refused_with_close_matches(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"arch": "tsm_r50", "lr_step": [1], "data": {"dataset": "x"}}))
    with pytest.raises(UserError, match=r"c.json: unknown key 'lr_step'; did you mean lr_steps"):
        load_and_validate(tmp_path / "c.json")
    with pytest.raises(UserError, match=r"data: unknown key 'num_segment'; did you mean num_segments"):
        validate_keys({"data": {"num_segment": 8}})
    with pytest.raises(UserError, match="unknown key 'zzz'; valid keys: "):
        validate_keys({"zzz": 1})
    with pytest.raises(UserError, match="lr must be float, not 'fast'"):
        validate_keys({"lr": "fast"})
    with pytest.raises(UserError, match="epochs must be int, not 2.5"):
        validate_keys({"epochs": 2.5})


def test_parse_errors_name_file_and_line(tmp_path):
    (tmp_path / "bad.yaml").write_text("arch: tsm_r50\nlr: [0.1\nepochs: 3\n")
    with pytest.raises(UserError) as err:
        load_config(tmp_path / "bad.yaml")
    assert "bad.yaml, line 3: not valid YAML" in str(err.value) and "\n" not in str(err.value)
    (tmp_path / "bad.json").write_text('{"arch": "x",\n "lr": }\n')
    with pytest.raises(UserError, match=r"bad.json, line 2: not valid JSON"):
        load_config(tmp_path / "bad.json")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(UserError, match="must hold a mapping"):
        load_config(tmp_path / "list.yaml")
    with pytest.raises(UserError, match="unknown format .toml"):
        load_config(tmp_path / "c.toml")
    with pytest.raises(UserError, match="cannot read it"):
        load_config(tmp_path / "missing.yaml")


def test_required_settings_must_come_from_some_layer():
    with pytest.raises(UserError, match="setting data.dataset is not given"):
        resolve(flags={"arch": "tsm_r50"}).settings()
    with pytest.raises(UserError, match="setting arch is not given"):
        resolve(flags={"data": {"dataset": "kinetics"}}).settings()
