"""X3D XS/S/M/L and VoV3D M/L: shapes, logits, released-checkpoint keys, size vs ARCH_BRIEF, training."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from archs import create_model
from archs.checkpoint import CheckpointError, load_pretrained, load_state_dict_strict
from archs.profile import profile_model
from archs.registry import KINETICS_MEAN, ModelOptionError, count_params
from archs.layers import depthwise_temporal_conv, make_divisible
from archs.vov3d import build_vov3d
from archs.x3d import build_x3d

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def _one_thread():
    """Many tiny grouped convs: one thread avoids oversubscribing the shared CPUs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
ALL = ["x3d_xs", "x3d_s", "x3d_m", "x3d_l", "vov3d_m", "vov3d_l"]


def randomize_bn(model: nn.Module) -> None:
    """Non-trivial BN statistics and affine terms (the final BNs start at zero otherwise)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm3d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)


def tiny_x3d(num_classes: int = 3, **options) -> nn.Module:
    return build_x3d(num_classes, depth_factor=0.5, dim_c1=4, dim_c5=32, **options)


def tiny_vov3d(num_classes: int = 3, **options) -> nn.Module:
    return build_vov3d(num_classes, inner_width=8, blocks=(1, 2, 1, 1), num_units=3, dim_c5=32, **options)


@pytest.mark.parametrize("name", ALL)
def test_registered_forward_shape_and_spec(name):
    model = create_model(name, num_classes=7).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 4, 64, 64))
    assert out.shape == (1, 7)
    spec = model.input_spec
    assert spec.sampling == "dense" and spec.mean == KINETICS_MEAN and spec.std == (0.225,) * 3
    expected = {"x3d_xs": (4, 12, 160, 182), "x3d_s": (13, 6, 160, 182), "x3d_m": (16, 5, 224, 256),
                "x3d_l": (16, 5, 312, 356), "vov3d_m": (16, 5, 224, 256), "vov3d_l": (16, 5, 224, 256)}[name]
    assert (spec.num_segments, spec.dense_stride, spec.crop_size, spec.scale_size) == expected


@pytest.mark.parametrize("name", ["x3d_m", "vov3d_m"])
def test_num_segments_sets_the_clip_length_and_32_frames_run(name):
    """num_segments is the clip's frame count (the SSv2 F32 configs use 32); the head pools
    globally, so a 32-frame clip gives logits like a 16-frame one."""
    torch.manual_seed(0)
    model = create_model(name, 10, num_segments=32)
    assert model.input_spec.num_frames == 32 and model.model_options["num_segments"] == 32
    assert create_model(name, 10).input_spec.num_frames == 16
    with torch.no_grad():
        out = model.eval()(torch.randn(1, 3, 32, 32, 32))
    assert out.shape == (1, 10) and torch.isfinite(out).all()


@pytest.mark.parametrize("build", [tiny_x3d, tiny_vov3d])
def test_any_clip_length_and_crop_batch_one(build):
    model = build()
    for shape in [(1, 3, 2, 32, 32), (1, 3, 5, 48, 80), (2, 3, 9, 70, 50)]:
        model.train()
        assert model(torch.randn(shape)).shape == (shape[0], 3)
        model.eval()
        with torch.no_grad():
            assert model(torch.randn(shape)).shape == (shape[0], 3)


@pytest.mark.parametrize("build", [tiny_x3d, tiny_vov3d])
def test_eval_returns_logits_of_the_head(build):
    model = build()
    randomize_bn(model)
    model.eval()
    x = torch.randn(2, 3, 4, 64, 64)
    with torch.no_grad():
        out = model(x)
        trunk = model.forward_trunk(x)
        feats = model.forward_features(x)
        expected = model.get_classifier()(model.head.pooled_features(trunk))
    assert trunk.shape[-2:] == (2, 2) and feats.shape == (2, 32)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(model.forward_head(feats), out)
    assert not torch.allclose(out.sum(1), torch.ones(2))  # not probabilities
    torch.testing.assert_close(out, model(x).detach())  # dropout off


def test_reset_classifier():
    model = tiny_x3d()
    model.reset_classifier(11)
    assert model.get_classifier().out_features == 11
    assert model.eval()(torch.randn(1, 3, 2, 32, 32)).shape == (1, 11)


def manifest_state(name: str) -> dict:
    entries = json.loads((FIXTURES / f"{name}.json").read_text())
    gen = torch.Generator().manual_seed(0)
    return {k: (torch.randint(0, 100, shape, generator=gen) if k.endswith("num_batches_tracked")
                else torch.randn(shape, generator=gen)) for k, shape in entries}


@pytest.mark.parametrize("name,size", [("x3d_m", 568), ("vov3d_m", 944)])
def test_released_checkpoint_keys_load_strictly(name, size, tmp_path):
    state = manifest_state(name)
    assert len(state) == size and any(k.startswith("s1.pathway0_stem.") for k in state)
    path = tmp_path / "released.pth"
    torch.save({"epoch": 1, "model_state": state}, path)  # PySlowFast container
    model = create_model(name, num_classes=400)
    load_pretrained(model, path)
    torch.testing.assert_close(model.s1.conv_xy.weight, state["s1.pathway0_stem.conv_xy.weight"])
    torch.testing.assert_close(model.head.projection.bias, state["head.projection.bias"])
    # our own keys pass through the key map unchanged
    own = model.state_dict()
    assert list(model.convert_state_dict(own)) == list(own)
    # a checkpoint missing one tensor is refused
    del state[next(k for k in state if "branch2" in k)]
    with pytest.raises(CheckpointError, match="missing"):
        load_state_dict_strict(model, state)


# (model, options, classes, view T x S, params (M), GMACs) from ARCH_BRIEF section 1.
BRIEF = [
    ("x3d_m", {}, 400, 16, 224, 3.794, 4.73), ("x3d_m", {}, 400, 16, 256, 3.794, 6.19),
    ("x3d_m", {}, 174, 16, 256, 3.331, 6.18), ("x3d_m", {}, 600, 16, 224, 4.204, None),
    ("x3d_m", {}, 200, 16, 224, 3.385, None),
    ("x3d_l", {}, 400, 16, 224, 6.153, 9.16), ("x3d_l", {}, 400, 16, 256, 6.153, 11.97),
    ("x3d_l", {}, 174, 16, 256, 5.690, 11.97), ("x3d_l", {}, 600, 16, 224, 6.563, None),
    ("x3d_l", {}, 200, 16, 224, 5.744, None),
    ("vov3d_m", {}, 400, 16, 224, 3.667, 4.92), ("vov3d_m", {}, 400, 16, 256, 3.667, 6.43),
    ("vov3d_m", {"num_segments": 32}, 174, 32, 224, 3.204, 9.83),
    ("vov3d_m", {"num_segments": 32}, 174, 32, 256, 3.204, 12.84),
    ("vov3d_m", {}, 600, 16, 224, 4.077, None), ("vov3d_m", {}, 200, 16, 224, 3.258, None),
    ("vov3d_l", {}, 400, 16, 224, 6.297, 9.31), ("vov3d_l", {}, 400, 16, 256, 6.297, 12.16),
    ("vov3d_l", {"num_segments": 32}, 174, 32, 224, 5.834, 18.61),
    ("vov3d_l", {"num_segments": 32}, 174, 32, 256, 5.834, 24.31),
    ("vov3d_l", {}, 600, 16, 224, 6.707, None), ("vov3d_l", {}, 200, 16, 224, 5.887, None),
]


@pytest.mark.parametrize("name,options,classes,frames,crop,params,gmacs", BRIEF)
def test_params_and_gmacs_match_arch_brief(name, options, classes, frames, crop, params, gmacs):
    if gmacs is None:  # parameter count only (meta device, no forward)
        with torch.device("meta"):
            measured = count_params(create_model(name, classes, **options)) / 1e6
        assert measured == pytest.approx(params, rel=5e-3)
        return
    prof = profile_model(name, classes, crop_size=crop, **options)
    assert prof.spec.num_frames == frames
    assert prof.params / 1e6 == pytest.approx(params, rel=5e-3)
    assert prof.gmacs == pytest.approx(gmacs, rel=3e-2)


def test_xs_s_share_m_network():
    with torch.device("meta"):
        counts = {n: count_params(create_model(n, 400)) for n in ("x3d_xs", "x3d_s", "x3d_m")}
    assert len(set(counts.values())) == 1


def test_depthwise_temporal_conv_equals_grouped_conv():
    x, w, b = torch.randn(2, 6, 5, 4, 3), torch.randn(6, 1, 3, 1, 1), torch.randn(6)
    torch.testing.assert_close(depthwise_temporal_conv(x, w, padding=1),
                               nn.functional.conv3d(x, w, padding=(1, 0, 0), groups=6), atol=1e-5, rtol=1e-5)
    # MoViNet's causal (kt, 1) Conv2d over (N, C, T, H*W), with a bias and no padding
    x2, w2 = torch.randn(2, 6, 7, 12), torch.randn(6, 1, 5, 1)
    torch.testing.assert_close(depthwise_temporal_conv(x2, w2, b),
                               nn.functional.conv2d(x2, w2, b, groups=6), atol=1e-5, rtol=1e-5)


def test_make_divisible_is_x3d_and_movinet_rounding():
    # X3D widths (24/48/96/192 from 12 x 2.0 ...), SE widths (at least 8), MoViNet SE widths
    assert [make_divisible(c * 2.0) for c in (12, 24, 48, 96)] == [24, 48, 96, 192]
    assert make_divisible(54 / 16) == 8 and make_divisible(216 / 16) == 16
    assert make_divisible(184 // 4) == 48 and make_divisible(184 // 4 * 2) == 96 and make_divisible(91) == 88


@pytest.mark.parametrize("build", [tiny_x3d, tiny_vov3d])
def test_fast_depthwise_option_same_outputs_and_keys(build):
    slow, fast = build(), build(fast_depthwise=True)
    randomize_bn(slow)
    fast.load_state_dict(slow.state_dict(), strict=True)
    x = torch.randn(2, 3, 6, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fast.eval()(x), slow.eval()(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("build", [tiny_x3d, tiny_vov3d])
def test_fuse_bn_same_outputs(build):
    model = build()
    randomize_bn(model)
    model.eval()
    x = torch.randn(2, 3, 4, 48, 48)
    with torch.no_grad():
        expected = model(x)
        fused = model.fuse_bn()
        assert not any(isinstance(m, nn.BatchNorm3d) for m in fused.modules())
        torch.testing.assert_close(fused(x), expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(RuntimeError, match="eval"):
        build().fuse_bn()


@pytest.mark.parametrize("build", [tiny_x3d, tiny_vov3d])
def test_tiny_model_learns_and_fits_tiny_batch(build):
    """Every parameter gets a gradient and moves; a fixed batch of 4 clips is fitted (the loss
    falls below 5% of its first value: a few dozen steps here, 150 allowed)."""
    torch.manual_seed(0)
    model = build(num_classes=2, dropout=0.0)
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    x, y = torch.randn(4, 3, 2, 32, 32), torch.tensor([0, 1, 0, 1])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    while len(losses) < 150 and (not losses or losses[-1] > 0.05 * losses[0]):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        if not losses:
            assert all(p.grad is not None for p in model.parameters())
        opt.step()
        losses.append(loss.item())
    assert not [k for k, p in model.named_parameters() if torch.equal(p, before[k])]
    assert losses[-1] <= 0.05 * losses[0], (len(losses), losses[0], losses[-1])


def slowfast_head_probabilities(head, fmap: torch.Tensor, window) -> torch.Tensor:
    """PySlowFast's X3D test head written out by hand: conv_5 -> BN -> ReLU, an average over
    every training-size window (stride 1), lin_5 -> ReLU, projection, a softmax per window
    position, the mean of those. (N, C, T, H, W) -> probabilities (N, K)."""
    bn = head.conv_5_bn
    x = torch.einsum("ncthw,oc->nothw", fmap, head.conv_5.weight[:, :, 0, 0, 0])
    x = (x - bn.running_mean[:, None, None, None]) / torch.sqrt(bn.running_var[:, None, None, None] + bn.eps)
    x = torch.clamp(x * bn.weight[:, None, None, None] + bn.bias[:, None, None, None], min=0)
    wt, wh, ww = window
    _, _, t_len, h_len, w_len = x.shape
    probs = []
    for t in range(t_len - wt + 1):
        for i in range(h_len - wh + 1):
            for j in range(w_len - ww + 1):
                pooled = x[:, :, t:t + wt, i:i + wh, j:j + ww].mean((2, 3, 4))                # (N, C)
                feat = torch.clamp(pooled @ head.lin_5.weight[:, :, 0, 0, 0].T, min=0)     # (N, D)
                logits = feat @ head.projection.weight.T + head.projection.bias            # (N, K)
                probs.append(torch.exp(logits) / torch.exp(logits).sum(1, keepdim=True))
    return torch.stack(probs).mean(0)


def reference_head():
    from archs.x3d import X3DHead

    head = X3DHead(6, 8, 5, lin5_channels=10, dropout=0.5, window=(2, 3, 3), test_head="reference").double()
    randomize_bn(head)
    return head.eval()


def test_reference_head_is_slowfast_arithmetic_on_a_larger_map():
    torch.manual_seed(0)
    head = reference_head()
    fmap = torch.randn(2, 6, 3, 5, 4, dtype=torch.float64)
    with torch.no_grad():
        out = head(fmap)
        expected = slowfast_head_probabilities(head, fmap, (2, 3, 3))  # 2 x 3 x 2 = 12 positions
        global_logits = head.classify(head.pooled_features(fmap))
    torch.testing.assert_close(out.softmax(-1), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out.exp().sum(1), torch.ones(2, dtype=torch.float64))  # log of probabilities
    assert (out.softmax(-1) - global_logits.softmax(-1)).abs().max() > 1e-3  # not global pooling


def test_reference_head_pools_globally_in_training_in_global_mode_and_when_the_window_covers_the_map():
    torch.manual_seed(0)
    fmap = torch.randn(2, 6, 3, 5, 4, dtype=torch.float64)
    with torch.no_grad():
        head = reference_head()
        global_logits = head.classify(head.pooled_features(fmap))
        whole = fmap[:, :, :2, :3, :3]  # exactly the window
        torch.testing.assert_close(head(whole), head.classify(head.pooled_features(whole)))
        torch.testing.assert_close(head(fmap[:, :, :1, :2, :2]),  # smaller than the window: global, as a crop
                                   head.classify(head.pooled_features(fmap[:, :, :1, :2, :2])))
        head.test_head = "global"
        torch.testing.assert_close(head(fmap), global_logits)
        head.test_head = "reference"
        head.train()
        head.conv_5_bn.eval()  # running statistics, so training mode differs only in the pooling
        head.dropout.p = 0.0
        torch.testing.assert_close(head(fmap), global_logits)


@pytest.mark.parametrize("build", [tiny_x3d, tiny_vov3d])
def test_model_at_a_larger_test_crop_uses_the_training_window(build):
    from archs.x3d import training_window

    window = training_window(4, 64)  # a 64-px training crop: 2 x 2 positions of the last map
    model = build(window=window, test_head="reference").double()
    randomize_bn(model)
    model.eval()
    x = torch.randn(1, 3, 4, 96, 96, dtype=torch.float64)  # map 3 x 3
    with torch.no_grad():
        trunk = model.forward_trunk(x)
        expected = slowfast_head_probabilities(model.head, trunk, window)
        out = model(x)
    assert trunk.shape[-2:] == (3, 3) and window == (4, 2, 2)
    torch.testing.assert_close(out.softmax(-1), expected, rtol=1e-10, atol=1e-12)


def test_registered_models_default_to_the_reference_head_with_the_training_window():
    assert create_model("x3d_m", 5).head.window == (16, 7, 7)
    assert create_model("x3d_l", 5, num_segments=8).head.window == (8, 10, 10)
    vov = create_model("vov3d_m", 5, num_segments=32)
    assert vov.head.window == (32, 7, 7) and vov.model_options["test_head"] == "reference"
    assert create_model("x3d_xs", 5, test_head="global").head.test_head == "global"
    with pytest.raises(ModelOptionError, match="test_head must be one of reference, global"):
        create_model("x3d_xs", 5, test_head="softmax")
