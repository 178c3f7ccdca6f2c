"""TDN and MSN: shapes, released-checkpoint keys, size against the reference, training."""
from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from archs.checkpoint import CheckpointError, extract_state_dict, load_state_dict_strict
from archs.msn import DeformConvPack, MotionSensitiveModule
from archs.registry import CUSTOM_FLOP_FORMULAS, count_params, create_model, list_models, measure_gmacs
from archs.tdn import FRAMES_PER_SEGMENT, LearnableShift, LongTermTDM
from ops.engine.optim import make_optimizer, param_groups

FIXTURES = Path(__file__).parent / "fixtures"

# ARCH_BRIEF section 1 (reference code, 174 classes, batch 1, T segments x 5 frames x 224^2).
# Params include the reference's never-used modules, which our models leave out:
# conv1_temp (9,472) in both, conv1_5 (37,760) and the cancelling conv_1/conv_2 biases (80) in MSN.
BRIEF_PARAMS_174 = {"tdn_r50": 24.420e6, "tdn_r101": 43.682e6, "msn_r50": 31.018e6, "msn_r101": 56.486e6}
BRIEF_GMACS = {("tdn_r50", 8): 35.64, ("tdn_r50", 16): 71.28, ("tdn_r101", 8): 65.84,
               ("msn_r50", 8): 53.88, ("msn_r50", 16): 107.76, ("msn_r101", 8): 89.19}


@functools.lru_cache(maxsize=None)
def tiny_model(name: str, num_segments: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(name, num_classes=5, num_segments=num_segments).eval()


def clip(batch: int, num_segments: int, height: int, width: int) -> torch.Tensor:
    return torch.randn(batch, 3, num_segments * FRAMES_PER_SEGMENT, height, width)


@pytest.mark.parametrize("name,segments,batch,size", [
    ("tdn_r50", 3, 1, (64, 96)), ("tdn_r50", 3, 2, (32, 32)), ("tdn_r50", 8, 1, (32, 64)),
    ("msn_r50", 3, 1, (96, 64)), ("msn_r50", 2, 2, (32, 32)), ("msn_r50", 8, 1, (32, 32)),
])
def test_forward_shapes_any_segments_batch_and_size(name, segments, batch, size):
    torch.manual_seed(1)
    model = tiny_model(name, segments)
    x = clip(batch, segments, *size)
    with torch.no_grad():
        logits = model(x)
        exits = model.forward_exits(x)
    assert logits.shape == (batch, 5) and exits.shape == (batch, segments, 5)
    assert torch.isfinite(logits).all()
    torch.testing.assert_close(exits[:, -1], logits, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(exits[:, 0], model.frame_logits(x)[:, 0].detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["tdn_r50", "msn_r50"])
def test_batch_one_in_train_mode_and_wrong_frame_count_is_refused(name):
    model = tiny_model(name, 3)
    model.train()
    try:
        assert model(clip(1, 3, 32, 32)).shape == (1, 5)
    finally:
        model.eval()
    with pytest.raises(ValueError, match="expects 15 frames"):
        model(torch.randn(1, 3, 8, 64, 64))


def test_registry_input_spec_and_stem_init():
    assert {"tdn_r50", "tdn_r101", "msn_r50", "msn_r101"} <= set(list_models("*n_r*"))
    model = tiny_model("msn_r50", 3)
    assert model.input_spec.frames_per_segment == 5 and model.input_spec.num_frames == 15
    assert (model.base_model.alpha, model.base_model.beta) == (0.75, 0.25)
    tdn = tiny_model("tdn_r50", 8).base_model
    assert (tdn.alpha, tdn.beta) == (0.5, 0.5)
    # conv1_5 starts as the RGB conv1 averaged over colours, once per difference channel
    torch.testing.assert_close(tdn.conv1_5[0].weight, tdn.conv1.weight.mean(1, keepdim=True).expand(-1, 12, -1, -1))


def test_learnable_shift_starts_as_tsm_shift():
    shift = LearnableShift(16, num_segments=3)
    x = torch.randn(2 * 3, 16, 2, 2)
    out = shift(x).view(2, 3, 16, 2, 2)
    clips = x.view(2, 3, 16, 2, 2)
    torch.testing.assert_close(out[:, :-1, :2], clips[:, 1:, :2])      # channels [0, C/8) take t+1
    torch.testing.assert_close(out[:, 1:, 2:4], clips[:, :-1, 2:4])     # [C/8, 2C/8) take t-1
    torch.testing.assert_close(out[:, :, 4:], clips[:, :, 4:])
    assert (out[:, -1, :2] == 0).all() and (out[:, 0, 2:4] == 0).all()


def test_long_term_tdm_uses_both_neighbours_only():
    torch.manual_seed(0)
    tdm = LongTermTDM(32, num_segments=5).eval()
    x = torch.randn(5, 32, 4, 4)
    y = x.clone()
    y[2] += 1.0
    changed = (tdm(x) - tdm(y)).abs().flatten(1).amax(1)
    assert changed[[1, 2, 3]].min() > 0 and changed[[0, 4]].max() == 0


def test_motion_module_spans_every_segment():
    """The reference hard-codes 8 frames: at 16 segments its 3-D branch sees two halves."""
    torch.manual_seed(0)
    module = MotionSensitiveModule(16, num_segments=16).eval()
    x = torch.randn(16, 16, 6, 6)
    y = x.clone()
    y[0] += 1.0
    with torch.no_grad():
        assert (module(x)[15] - module(y)[15]).abs().max() > 0


def test_deform_conv_flop_formula():
    conv = DeformConvPack(8, 12, kernel_size=3)
    counter = FlopCounterMode(display=False, custom_mapping=dict(CUSTOM_FLOP_FORMULAS))
    with torch.no_grad(), counter:
        conv(torch.randn(2, 8, 5, 7))
    offsets = 2 * 2 * 18 * 8 * 9 * 5 * 7
    assert counter.get_total_flops() == offsets + 2 * 2 * 12 * 8 * 9 * 5 * 7


@pytest.mark.parametrize("name", ["tdn_r50", "msn_r50"])
def test_reference_checkpoint_loads_strictly(name):
    manifest = json.loads((FIXTURES / f"{name}.json").read_text())
    num_classes = dict(manifest)["new_fc.weight"][0]
    torch.manual_seed(0)
    model = create_model(name, num_classes=num_classes)
    gen = torch.Generator().manual_seed(2)
    state = {"module." + key: torch.randn(shape, generator=gen) if key.split(".")[-1] != "num_batches_tracked"
             else torch.tensor(3) for key, shape in manifest}
    load_state_dict_strict(model, extract_state_dict({"epoch": 1, "state_dict": state}))
    layer = "motion_layer.motion_offset" if name.startswith("msn") else "mse.conv1"
    for key in (f"base_model.layer3_bak.2.{layer}.weight", "base_model.layer1_bak.0.conv1.bias", "new_fc.weight"):
        assert torch.equal(model.state_dict()[key], state["module." + key])
    assert model.convert_state_dict(model.state_dict()).keys() == model.state_dict().keys()
    del state["module.base_model.layer2_bak.0.shift.conv.weight"]
    with pytest.raises(CheckpointError, match="missing"):
        load_state_dict_strict(model, extract_state_dict(state))


def deform_gmacs(model: torch.nn.Module, input_shape) -> float:
    """GMACs of the deformable convolutions alone, from their output shapes: Cout (Cin/g) k^2 per output."""
    macs = []
    hooks = [m.register_forward_hook(lambda m, i, out: macs.append(out.numel() * m.weight[0].numel()))
             for m in model.modules() if isinstance(m, DeformConvPack)]
    with torch.no_grad():
        model(torch.zeros(input_shape))
    for hook in hooks:
        hook.remove()
    return sum(macs) / 1e9


@pytest.mark.parametrize("name", ["tdn_r50", "tdn_r101", "msn_r50", "msn_r101"])
def test_params_and_gmacs_match_reference(name):
    """The brief's MSN GMACs leave the deformable convolutions out (its FLOP formula never
    fired: they equal ours without them to 0.01 %); we count them, and compare the rest."""
    with torch.device("meta"):
        model = create_model(name, num_classes=174, num_segments=8)
        for classes in (174, 400, 600, 200):
            model.reset_classifier(classes)
            brief = BRIEF_PARAMS_174[name] + (classes - 174) * 2049
            assert abs(count_params(model) - brief) / brief < 0.005, (classes, count_params(model), brief)
        for segments in (8, 16):
            if (name, segments) not in BRIEF_GMACS:
                continue
            if segments != 8:
                model = create_model(name, num_classes=174, num_segments=segments)
            shape = (1, 3, segments * FRAMES_PER_SEGMENT, 224, 224)
            gmacs, deform = measure_gmacs(model, shape), deform_gmacs(model.eval(), shape)
            assert (deform > 0.07 * gmacs) == name.startswith("msn")
            brief = BRIEF_GMACS[name, segments]
            assert abs(gmacs - deform - brief) / brief < 0.03, (segments, gmacs, deform, brief)
    if name.startswith("msn"):
        assert sum(isinstance(m, DeformConvPack) for m in model.modules()) == 2 * (13 if name == "msn_r50" else 30)


def biases_before_batchnorm(model: torch.nn.Module) -> set:
    """Conv biases feeding a BatchNorm directly (the reference ResNet has them; we keep them for
    its checkpoints). BN removes any per-channel constant, so in train mode they get no gradient."""
    names = set()
    for name, module in model.named_modules():
        pairs = {"conv1": "bn1", "conv2": "bn2", "conv3": "bn3", "conv_down": "bn1", "conv": "bn2", "time_conv": "bn_t"}
        if isinstance(module, MotionSensitiveModule):
            pairs["conv1"] = "bn3"
        if name.endswith("downsample"):
            pairs = {"0": "1"}
        names.update(f"{name}.{conv}.bias" for conv, bn in pairs.items()
                     if hasattr(module, bn) and getattr(getattr(module, conv, None), "bias", None) is not None)
    return names


@pytest.mark.parametrize("name", ["tdn_r50", "msn_r50"])
def test_training_updates_every_parameter(name):
    """The reference never gives MSN's deformable kernels to its optimiser: here the project's
    optimiser gets every parameter, every one that can learn (deformable kernels included) gets
    a gradient and moves in the first step, and the conv biases a BatchNorm cancels get none."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=3, num_segments=2, dropout=0.0)
    model.train()
    inert = biases_before_batchnorm(model)
    assert len(inert) > 50 and all(k in dict(model.named_parameters()) for k in inert)
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    optimiser = make_optimizer("adamw", param_groups(model, weight_decay=0.0, new_classifier=False), lr=1e-3, momentum=0.9)
    in_optimiser = {id(p) for group in optimiser.param_groups for p in group["params"]}
    assert all(id(p) in in_optimiser for p in model.parameters())
    loss = torch.nn.functional.cross_entropy(model(clip(2, 2, 32, 32)), torch.tensor([0, 2]))
    optimiser.zero_grad()
    loss.backward()
    grads = {k: p.grad.abs().max().item() for k, p in model.named_parameters()}
    assert max(grads[k] for k in inert) < 1e-3 * max(grads.values())
    assert min(grads[k] for k in grads if k not in inert) > 0
    optimiser.step()
    frozen = [k for k, p in model.named_parameters() if k not in inert and torch.equal(p, before[k])]
    assert not frozen, frozen
    assert any(".motion_offset.weight" in k for k in before) == name.startswith("msn")
