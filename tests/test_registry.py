"""The registry and the model interface every zoo model follows (archs/registry.py)."""
from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import archs
from archs.registry import (ModelOptionError, UnknownModelError, builder_parameters, create_model, get_entry,
                            list_aliases, list_models, model_options, register_model, resolve_name)

ALIASES = {"tsn": "tsn_r50", "tsm": "tsm_r50", "tdn": "tdn_r50", "msn": "msn_r50", "mvfnet": "mvfnet_r50",
           "x3d": "x3d_m", "vov3d": "vov3d_m", "movinet": "movinet_a0", "movinet_stream": "movinet_a0_stream",
           "adafocus": "adafocusv2"}
ALL = list_models()


def test_every_model_is_a_decorated_builder_function_with_declared_options():
    assert len(ALL) == 35
    for name in ALL:
        entry = get_entry(name)
        builder = entry.builder
        assert inspect.isfunction(builder) and builder.__doc__, name  # a documented builder, not a class
        params = inspect.signature(builder).parameters
        assert list(params)[0] == "num_classes"
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in list(params.values())[1:]), name
        assert "num_segments" in entry.options, name
        assert set(entry.fixed) | set(entry.options) <= set(params)
        assert entry.description and entry.family


def test_registration_is_decorators_only():
    """No loops, helpers or ``register_model(...)(Class)`` calls: every use is a decorator line."""
    for path in Path(archs.__file__).parent.glob("*.py"):
        if path.name in ("registry.py", "__init__.py"):
            continue
        for line in path.read_text().splitlines():
            if "register_model(" in line:
                assert line.startswith("@register_model("), (path.name, line)


def test_builder_with_kwargs_and_unknown_fixed_or_default_refused():
    def loose(num_classes: int, **options) -> nn.Module:
        """Takes anything."""

    def strict(num_classes: int, *, depth: int = 1) -> nn.Module:
        """Takes depth."""

    with pytest.raises(TypeError, match=r"\*\*kwargs"):
        register_model("test_loose", family="test")(loose)
    with pytest.raises(TypeError, match="fixed options"):
        register_model("test_strict", family="test", width=2)(strict)
    with pytest.raises(TypeError, match="defaults"):
        register_model("test_strict", family="test", defaults={"width": 2})(strict)
    assert "test_strict" not in list_models()


def test_unknown_option_names_the_model_and_its_options():
    with pytest.raises(ModelOptionError) as info:
        create_model("x3d_m", 5, num_frames=32)
    message = str(info.value)
    assert message.startswith("x3d_m does not take option(s) num_frames;")
    assert message.endswith("it takes: dropout, fast_depthwise, num_segments, test_head")
    with pytest.raises(ModelOptionError, match="msn_r50 does not take option.*alpha.*it takes: dropout, num_segments"):
        create_model("msn", 5, alpha=0.5)
    with pytest.raises(ModelOptionError, match="imagenet_pretrained is not a model option of tsm_r18"):
        create_model("tsm_r18", 5, imagenet_pretrained=True)


@pytest.mark.parametrize("name,option,value", [
    ("tsm_r50", "backbone", "resnet18"), ("tdn_r101", "backbone", "resnet50"), ("mvfnet_r50", "depth", 101),
    ("x3d_m", "variant", "l"), ("vov3d_l", "variant", "m"), ("movinet_a2", "variant", "a0"),
    ("movinet_a0", "stream", True), ("movinet_a0_stream", "stream", False),
])
def test_fixed_options_are_refused(name, option, value):
    with pytest.raises(ModelOptionError, match=f"{option} is fixed by the name"):
        create_model(name, 5, **{option: value})
    assert option not in model_options(name)


def test_aliases_resolve_and_build():
    assert list_aliases() == dict(sorted(ALIASES.items()))
    for alias, name in ALIASES.items():
        assert resolve_name(alias) == name
        assert alias in get_entry(name).aliases
        with torch.device("meta"):
            model = create_model(alias, 5)
        assert model.arch_name == name and model.model_options == model_options(name)
    with pytest.raises(UnknownModelError, match="unknown model 'tsm_r9'.*Similar: .*tsm_r18"):
        resolve_name("tsm_r9")


def test_none_options_keep_defaults_and_model_options_record_the_resolved_ones():
    with torch.device("meta"):
        model = create_model("vov3d_m", 10, num_segments=32, dropout=None)
    assert model.model_options == {"num_segments": 32, "dropout": 0.5, "fast_depthwise": False, "test_head": "reference"}
    assert model.input_spec.num_frames == 32


# Small options for a fast real forward: 2 segments (2 frames, or 2 x 5 for TDN/MSN) of 32 px.
SMALL_OPTIONS = {"adafocusv2": {"input_size": 64, "patch_size": 32, "hidden_dim": 16, "stn_hidden_dim": 8}}


@pytest.mark.parametrize("name", ALL)
def test_interface_of_every_model(name):
    """forward is (N, K) in train and eval; forward_features (N, D) and forward_head (N, K), whose
    composition is forward in eval; get_classifier / reset_classifier; exits are (N, E, K)."""
    torch.manual_seed(0)
    model = create_model(name, 5, num_segments=2, **SMALL_OPTIONS.get(name, {}))
    spec = model.input_spec
    assert spec.num_segments == 2 and model.model_options["num_segments"] == 2
    size = SMALL_OPTIONS.get(name, {}).get("input_size", 32)
    x = torch.randn(2, 3, spec.num_frames, size, size)
    assert model.train()(x).shape == (2, 5)
    model.eval()
    with torch.no_grad():
        logits = model(x)
        features = model.forward_features(x)
        assert logits.shape == (2, 5) and features.dim() == 2 and features.shape[0] == 2
        torch.testing.assert_close(model.forward_head(features), logits, rtol=1e-4, atol=1e-5)
        if hasattr(model, "forward_exits"):
            exits = model.forward_exits(x)
            assert exits.shape[::2] == (2, 5)
            torch.testing.assert_close(exits[:, -1], logits, rtol=1e-4, atol=1e-5)
    assert isinstance(model.get_classifier(), nn.Module)
    model.reset_classifier(3)
    with torch.no_grad():
        assert model(x).shape == (2, 3)


def test_training_loss_helper_falls_back_to_the_criterion():
    torch.manual_seed(0)
    model = create_model("x3d_xs", 4, num_segments=2).train()
    x, y = torch.randn(2, 3, 2, 32, 32), torch.tensor([0, 3])
    assert not hasattr(model, "training_loss")
    torch.manual_seed(1)
    loss, logits = archs.training_loss(model, x, y, nn.CrossEntropyLoss())
    torch.manual_seed(1)
    expected = model(x)
    torch.testing.assert_close(logits, expected)
    torch.testing.assert_close(loss, nn.functional.cross_entropy(expected, y))


def test_registry_names_match_their_fixed_constants():
    """Names carry their constants (r50 = resnet50, a3 = variant a3 ...), not a loop's bookkeeping."""
    for name in ALL:
        fixed = get_entry(name).fixed
        if "backbone" in fixed:
            short = {"resnet18": "r18", "resnet34": "r34", "resnet50": "r50", "resnet101": "r101",
                     "mobilenet_v2": "mbv2"}[fixed["backbone"]]
            assert name.endswith("_" + short), name
        if "variant" in fixed:
            assert re.match(rf"^[a-z0-9]+?_{fixed['variant']}(_stream)?$", name), name
        if "stream" in fixed:
            assert name.endswith("_stream") == fixed["stream"], name
        if "depth" in fixed:
            assert name.endswith(f"_r{fixed['depth']}"), name
    assert builder_parameters(get_entry("tsn_r50").builder).keys() >= {"backbone", "num_segments"}


def test_models_command_lists_aliases_and_options_and_imports_torch_lazily():
    import subprocess
    import sys

    from typer.testing import CliRunner

    from videorec_cli.main import app

    result = CliRunner().invoke(app, ["models", "msn*", "--no-measure"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    row = next(line for line in lines if line.startswith("msn_r50 "))
    assert row.split()[:3] == ["msn_r50", "msn", "msn"]
    assert lines[lines.index(row) + 1].split() == ["options:", "dropout=0.5,", "num_segments=8,", "partial_bn=False"]
    code = "import sys, videorec_cli.models_cmd; assert 'torch' not in sys.modules and 'archs' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(archs.__file__).parent.parent)
