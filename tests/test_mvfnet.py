"""MVFNet: shapes, full-res testing, released-checkpoint keys, size and cost vs ARCH_BRIEF, learning."""
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archs import count_params, create_model, list_models, measure_gmacs
from archs.checkpoint import load_state_dict_strict
from archs.mvfnet import FUSION_UNIT_AXIS, MultiViewFusion
from archs.registry import IMAGENET_MEAN, IMAGENET_STD

MANIFEST = Path(__file__).parent / "fixtures" / "mvfnet_r50.json"

# ARCH_BRIEF section 1: params (M) by class count, GMACs by view (T x S^2).
BRIEF_PARAMS_M = {
    "mvfnet_r50": {400: 24.342, 174: 23.879, 600: 24.752, 200: 23.933},
    "mvfnet_r101": {400: 43.358, 174: 42.895, 600: 43.768, 200: 42.949},
}
BRIEF_GMACS = {
    "mvfnet_r50": {(4, 224): 16.36, (8, 224): 32.72, (16, 224): 65.44, (8, 256): 42.73},
    "mvfnet_r101": {(4, 224): 31.22, (8, 224): 62.45, (16, 224): 124.90, (8, 256): 81.56},
}


def clip(n, t, h, w=None):
    return torch.randn(n, 3, t, h, w or h)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on shared, busy cores two OpenMP threads run many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def r50_t4():
    torch.manual_seed(0)
    return create_model("mvfnet_r50", num_classes=5, num_segments=4).eval()


def test_registered_with_dense_presets():
    assert {"mvfnet_r50", "mvfnet_r101"} <= set(list_models("mvfnet*"))
    with torch.device("meta"):
        for frames, stride in ((4, 16), (8, 8), (16, 4)):
            spec = create_model("mvfnet_r50", num_classes=400, num_segments=frames).input_spec
            assert (spec.num_segments, spec.sampling, spec.dense_stride) == (frames, "dense", stride)
            assert (spec.crop_size, spec.scale_size, spec.value_range) == (224, 256, 255.0)
            # ImageNet mean/std on 0-255 pixels, as the reference normalises.
            assert spec.mean == pytest.approx([255 * m for m in IMAGENET_MEAN])
            assert spec.std == pytest.approx([255 * s for s in IMAGENET_STD])


def test_forward_shapes_and_exits(r50_t4):
    with torch.no_grad():
        for n, (h, w) in ((1, (32, 32)), (2, (32, 64))):
            x = clip(n, 4, h, w)
            logits = r50_t4(x)
            exits = r50_t4.forward_exits(x)
            assert logits.shape == (n, 5) and exits.shape == (n, 4, 5)
            torch.testing.assert_close(exits[:, -1], logits)
    with pytest.raises(ValueError, match="4 frames"):
        r50_t4(clip(1, 3, 32))


@pytest.mark.parametrize("name,frames", [("mvfnet_r101", 2), ("mvfnet_r50", 8)])
def test_other_segment_counts(name, frames):
    torch.manual_seed(0)
    model = create_model(name, num_classes=3, num_segments=frames).eval()
    with torch.no_grad():
        assert model(clip(1, frames, 32)).shape == (1, 3)


def test_full_res_256_equals_reference_fcn_head():
    """At 256 the reference applies new_fc as a 1x1x1 conv on (N, 2048, T, 8, 8) and
    averages over T, h, w; our pooled head gives the same logits."""
    torch.manual_seed(0)
    model = create_model("mvfnet_r50", num_classes=5, num_segments=2).eval()
    x = clip(1, 2, 256)
    b = model.backbone
    trunk = nn.Sequential(b.conv1, b.bn1, b.relu, b.maxpool, b.layer1, b.layer2, b.layer3, b.layer4)
    with torch.no_grad():
        fmap = trunk(x.transpose(1, 2).reshape(2, 3, 256, 256))
        assert fmap.shape == (2, 2048, 8, 8)
        fmap = fmap.view(1, 2, 2048, 8, 8).transpose(1, 2)
        class_map = F.conv3d(fmap, model.new_fc.weight[..., None, None, None], model.new_fc.bias)
        torch.testing.assert_close(model(x), class_map.mean(dim=(2, 3, 4)), rtol=1e-4, atol=1e-5)


def test_fusion_equals_reference_conv3d_formulation():
    """Our 2D depthwise convolutions = the reference's Conv3d 3x1x1 + 1x3x1 + 1x1x3 on (N, k, T, H, W)."""
    torch.manual_seed(0)
    n, t, c, h, w = 2, 4, 32, 5, 6
    mvf = MultiViewFusion(nn.Identity(), num_segments=t, in_channels=c, alpha=0.25).eval()
    mvf.bn.running_mean.normal_()
    mvf.bn.running_var.uniform_(0.5, 2)
    x = torch.randn(n * t, c, h, w)
    k = mvf.fused_channels
    weights = {name: getattr(mvf, name.split(".")[0]).weight.unsqueeze(axis) for name, axis in FUSION_UNIT_AXIS.items()}
    views = x[:, :k].reshape(n, t, k, h, w).transpose(1, 2)
    summed = sum(F.conv3d(views, weight, padding=tuple(s // 2 for s in weight.shape[2:]), groups=k)
                 for weight in weights.values())
    bn = mvf.bn
    normed = (summed - bn.running_mean.view(1, -1, 1, 1, 1)) / (bn.running_var.view(1, -1, 1, 1, 1) + bn.eps).sqrt()
    fused = F.hardswish(normed * bn.weight.view(1, -1, 1, 1, 1) + bn.bias.view(1, -1, 1, 1, 1))
    expected = torch.cat([fused.transpose(1, 2).reshape(n * t, k, h, w), x[:, k:]], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(mvf(x), expected)


def test_released_checkpoint_loads_strictly():
    entries = json.loads(MANIFEST.read_text())
    assert len(entries) == 392 and entries[-1][0] == "cls_head.new_fc.bias"
    torch.manual_seed(0)
    state = {key: torch.randn(shape) if key.endswith(("weight", "bias", "running_mean", "running_var"))
             else torch.zeros(shape, dtype=torch.long) for key, shape in entries}
    model = create_model("mvfnet_r50", num_classes=400, num_segments=8)
    load_state_dict_strict(model, state, source="MVFNet R50_8x8.pth")
    fusion = model.backbone.layer3[0].conv1
    torch.testing.assert_close(fusion.net.weight, state["backbone.layer3.0.conv1.net.weight"])
    torch.testing.assert_close(fusion.h_conv.weight, state["backbone.layer3.0.conv1.h_conv.weight"].squeeze(2))
    shift = state["backbone.layer3.0.conv1.shift_conv.weight"]
    torch.testing.assert_close(fusion.shift_conv.weight, shift.squeeze(4))
    torch.testing.assert_close(model.new_fc.bias, state["cls_head.new_fc.bias"])
    # Our own keys pass through the key map unchanged.
    own = model.state_dict()
    converted = model.convert_state_dict(dict(own))
    assert list(converted) == list(own) and all(converted[k] is own[k] for k in own)
    load_state_dict_strict(model, own)


def test_params_match_brief():
    with torch.device("meta"):
        for name, by_classes in BRIEF_PARAMS_M.items():
            model = create_model(name, num_classes=400)
            for classes, brief in by_classes.items():
                model.reset_classifier(classes)
                assert count_params(model) / 1e6 == pytest.approx(brief, rel=0.005), (name, classes)


def test_gmacs_match_brief():
    with torch.device("meta"):
        for name, views in BRIEF_GMACS.items():
            models = {}
            for (frames, size), brief in views.items():
                model = models.setdefault(frames, create_model(name, num_classes=400, num_segments=frames))
                gmacs = measure_gmacs(model, (1, 3, frames, size, size))
                assert gmacs == pytest.approx(brief, rel=0.03), (name, frames, size)


def tiny_batch(model):
    torch.manual_seed(1)
    # 48 px leaves layer4 a 2x2 map, so every tap of the H/W convolutions sees data.
    return clip(2, model.num_segments, 48), torch.tensor([0, 1])


def _train(model, steps, lr):
    x, y = tiny_batch(model)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=0.9)
    model.train()
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_fits_tiny_batch_and_every_parameter_learns():
    """Every parameter moves in the first step; a fixed batch of two clips is fitted (the loss
    falls below 5% of its first value: 3 steps here, 20 allowed)."""
    torch.manual_seed(0)
    model = create_model("mvfnet_r50", num_classes=2, num_segments=2, dropout=0.0).train()
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    x, y = tiny_batch(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    while len(losses) < 20 and (not losses or losses[-1] > 0.05 * losses[0]):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if not losses:
            assert not [k for k, p in model.named_parameters() if torch.equal(p, before[k])]
        losses.append(loss.item())
    assert losses[-1] <= 0.05 * losses[0], losses


def test_partial_bn_freezes_all_but_first_norm():
    torch.manual_seed(0)
    model = create_model("mvfnet_r50", num_classes=2, num_segments=2, partial_bn=True)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    before = [(m.weight.detach().clone(), m.running_mean.clone()) for m in norms]
    _train(model, steps=1, lr=0.01)
    assert all(not m.training for m in norms[1:]) and norms[0].training
    assert not torch.equal(norms[0].weight, before[0][0])
    for m, (weight, mean) in zip(norms[1:], before[1:]):
        assert torch.equal(m.weight, weight) and torch.equal(m.running_mean, mean)
