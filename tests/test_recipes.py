"""Named recipes: valid settings and model options, the seed commands' values, linear lr scaling."""
import pytest
from typer.testing import CliRunner

from archs.registry import check_options, list_models
from dataset_configs import get_dataset
from ops.common.errors import UserError
from ops.engine.config import TrainSettings
from ops.engine.config_file import defaults_of, merge, validate_keys
from ops.engine.recipes import RECIPES, get_recipe, list_recipes, scale_lr
from videorec_cli.main import app

REQUIRED = ["tsm_k400", "tsm_ssv2", "tdn_ssv1", "tdn_ssv2", "tdn_k400", "msn_ssv1", "msn_ssv2", "msn_k400",
            "mvfnet_k400_8x8", "x3d_m_k400", "x3d_m_ssv2", "vov3d_m_k400", "vov3d_l_k400", "vov3d_m_ssv2",
            "vov3d_l_ssv2", "adafocusv2_actnet", "adafocusv2_minik"]


def test_every_recipe_is_valid_settings_for_a_registered_model():
    assert set(REQUIRED) <= set(RECIPES)
    for recipe in RECIPES.values():
        s = recipe.settings
        assert validate_keys(s, TrainSettings, recipe.name) == s  # keys and value types as TrainSettings has them
        assert s["arch"] in list_models()
        check_options(s["arch"], s["model_options"])  # raises ModelOptionError on an option the model lacks
        get_dataset(s["data"]["dataset"])
        assert recipe.gpus >= 1 and recipe.source and recipe.global_batch == s["batch_size"] * recipe.gpus
        if s["lr_scheduler"] == "step":
            assert s["lr_steps"] and max(s["lr_steps"]) < s["epochs"]
        settings = merge(defaults_of(TrainSettings), s).settings()
        assert settings.arch == s["arch"] and settings.data.num_segments == s["data"]["num_segments"]


def test_msn_something_v1_is_the_seed_command():
    # seed 001: --nproc_per_node=2 ... --num_segments 8 --gd 20 --lr 0.01 --lr_scheduler step
    # --lr_steps 30 45 55 --epochs 60 --batch-size 8 --wd 5e-4 --dropout 0.5 --npb
    recipe = get_recipe("msn_ssv1")
    s = merge(defaults_of(TrainSettings), recipe.settings).settings()
    assert (s.arch, s.data.dataset, s.data.num_segments) == ("msn_r50", "something", 8)
    assert (s.lr, s.lr_scheduler, s.lr_steps, s.epochs, s.batch_size, s.wd, s.gd, s.npb) == \
        (0.01, "step", [30.0, 45.0, 55.0], 60, 8, 5e-4, 20.0, True)
    assert s.model_options == {"dropout": 0.5} and recipe.gpus == 2 and recipe.global_batch == 16


def test_other_recipes_keep_their_sources_numbers():
    ada = get_recipe("adafocusv2_actnet").settings
    assert ada["model_options"]["global_lr_ratio"] == 0.5 and ada["model_options"]["stn_lr_ratio"] == 0.1
    assert ada["model_options"]["classifier_lr_ratio"] == 5.0 and ada["model_options"]["patch_size"] == 128
    assert get_recipe("adafocusv2_minik").global_batch == 48 and get_recipe("adafocusv2_minik").lr == 0.003
    x3d = get_recipe("x3d_m_k400")
    assert (x3d.settings["lr_scheduler"], x3d.settings["warmup_epochs"], x3d.settings["epochs"], x3d.global_batch) == \
        ("cos", 35.0, 300, 128)
    assert x3d.settings["data"]["dense_sample"] and x3d.settings["data"]["dense_stride"] == 5
    assert get_recipe("tsm_k400").global_batch == 128 and get_recipe("tsm_k400").lr == 0.02


def test_scale_lr_is_linear_and_says_so():
    recipe = get_recipe("msn_ssv1")
    assert scale_lr(recipe, 16)[0] == 0.01 and "the same as this run's" in scale_lr(recipe, 16)[1]
    lr, message = scale_lr(recipe, 64)
    assert lr == pytest.approx(0.04)
    assert message == ("recipe msn_ssv1: lr 0.01 is for its global batch 16 (8 x 2 GPUs); scaled linearly to 0.04 "
                       "for this run's global batch 64")
    assert scale_lr(get_recipe("tsm_k400"), 256)[0] == pytest.approx(0.04)  # the TSM README's own example


def test_unknown_recipe_and_listing():
    with pytest.raises(UserError, match="unknown recipe 'msn_sv1'; did you mean msn_ssv1"):
        get_recipe("msn_sv1")
    assert [r.name for r in list_recipes("msn*")] == ["msn_k400", "msn_ssv1", "msn_ssv2"]
    result = CliRunner().invoke(app, ["recipes", "vov3d*"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "vov3d_l_k400" in result.output and "16x8=128" in result.output and "msn" not in result.output
    details = CliRunner().invoke(app, ["recipes", "msn_ssv1", "--details"], terminal_width=200)
    assert "source: seed 001" in details.output and '"lr_steps": [30.0, 45.0, 55.0]' in details.output
    assert CliRunner().invoke(app, ["recipes", "nothing*"]).exit_code != 0
