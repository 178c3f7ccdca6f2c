"""AdaFocusV2: frame order, differentiable crop, shapes, causality, released layout, cost."""
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from archs import count_params, create_model, measure_gmacs, training_loss
from archs.adafocus import AdaFocusV2, coarse_to_fine_order, crop_patches
from archs.checkpoint import load_state_dict_strict

FIXTURES = Path(__file__).parent / "fixtures"
# Tiny settings: 4 frames of 64 px, 32 px patches, narrow policy and classifier.
TINY = dict(num_segments=4, input_size=64, patch_size=32, hidden_dim=32, stn_hidden_dim=16, dropout=0.0, fc_dropout=0.0)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny convolutions run faster on one thread (and do not spin on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(glance_arch: str = "mbv2", **changes) -> AdaFocusV2:
    torch.manual_seed(0)
    extra = {"glance_size": 32} if glance_arch == "res50" else {}
    return create_model("adafocusv2", 5, glance_arch=glance_arch, **{**TINY, **extra, **changes})


def clip(n: int = 1, t: int = 4, size: int = 64) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(n, 3, t, size, size)


def test_coarse_to_fine_order():
    assert coarse_to_fine_order(16) == [7, 0, 15, 3, 11, 1, 5, 9, 13, 2, 4, 6, 8, 10, 12, 14]
    assert coarse_to_fine_order(8) == [3, 0, 7, 1, 5, 2, 4, 6]
    for t in range(1, 40):
        assert sorted(coarse_to_fine_order(t)) == list(range(t))


def test_crop_is_exact_at_integer_corners_and_differentiable():
    frames = torch.arange(2 * 3 * 20 * 24, dtype=torch.float32).view(2, 3, 20, 24)
    # top-left (3, 5) and (0, 16): fractions of (H - P, W - P) = (12, 16)
    corners = torch.tensor([[3 / 12, 5 / 16], [0.0, 1.0]], requires_grad=True)
    patches = crop_patches(frames, corners, 8)
    torch.testing.assert_close(patches[0], frames[0, :, 3:11, 5:13])
    torch.testing.assert_close(patches[1], frames[1, :, 0:8, 16:24])
    patches.sum().backward()
    assert corners.grad is not None and (corners.grad.abs() > 0).all()


def reference_objective(model: AdaFocusV2, x: torch.Tensor, target: torch.Tensor, criterion) -> torch.Tensor:
    """The loss the engine took from the old packed (N, 6T, K) train-mode output, rebuilt from the
    model's pieces: the mean of ``criterion`` over [glance, glance, focus head and exits on random
    patches, focus head and exits on policy patches], T rows each."""
    n, t = x.shape[0], model.num_segments
    frames = model._frames(x)
    maps, glance = model._glance(frames)
    glance_logits = model.global_CNN_fc(glance).view(n, t, -1)
    policy = model.policy_stn(maps.detach(), t)
    rows = [glance_logits, glance_logits]
    for corners in (torch.rand_like(policy), policy):
        local = model.local_CNN(crop_patches(frames, corners, model.patch_size))
        exits = model.classifier(torch.cat([glance, local], 1).view(n, t, -1))  # the old order of dropout draws
        rows += [model.local_CNN_fc(local).view(n, t, -1), exits]
    packed = torch.cat(rows, dim=1)
    assert packed.shape == (n, 6 * t, 5)
    return torch.stack([criterion(packed[:, e], target) for e in range(6 * t)]).mean()


@pytest.mark.parametrize("criterion,target", [
    (nn.CrossEntropyLoss(), torch.tensor([1, 4])),
    (nn.BCEWithLogitsLoss(), torch.tensor([[1.0, 0, 0, 1, 0], [0, 0, 1, 0, 0]])),
])
def test_training_loss_is_the_reference_objective(criterion, target):
    model = tiny(dropout=0.3, fc_dropout=0.3).train()  # dropout on: the random draws must line up too
    x = clip(n=2)
    torch.manual_seed(5)
    loss, logits = training_loss(model, x, target, criterion)
    torch.manual_seed(5)
    expected = reference_objective(model, x, target, criterion)
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-7)
    assert logits.shape == (2, 5) and loss.requires_grad
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.forward_exits(x)[:, -1])


def test_focus_loss_trains_the_policy_not_the_glance_through_it():
    model = tiny().train()
    assert model(clip()).shape == (1, 5)
    # the final exit of the policy pass: the policy is the only path back to the patch corners
    model(clip()).logsumexp(-1).sum().backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    for name in ("policy_stn.encoder.0.weight", "policy_stn.gru.weight_hh_l0", "policy_stn.fc.0.weight"):
        assert grads[name] is not None and grads[name].abs().sum() > 0, name
    model.zero_grad()
    # the glance head reaches the glance CNN but not the policy (its input is detached)
    frames = model._frames(clip())
    model.global_CNN_fc(model._glance(frames)[1]).logsumexp(-1).sum().backward()
    assert model.global_CNN.features[0][0].weight.grad.abs().sum() > 0
    assert model.policy_stn.fc[0].weight.grad is None or model.policy_stn.fc[0].weight.grad.abs().sum() == 0


@pytest.mark.parametrize("glance_arch", ["mbv2", "res50"])
def test_shapes_and_exits(glance_arch):
    model = tiny(glance_arch).eval()
    x = clip()
    with torch.no_grad():
        exits = model.forward_exits(x)
        final = model(x)
        features = model.forward_features(x)
    assert exits.shape == (1, 4, 5) and final.shape == (1, 5) and features.shape == (1, TINY["hidden_dim"])
    torch.testing.assert_close(final, exits[:, -1])
    torch.testing.assert_close(model.forward_head(features), final)


def test_other_segment_counts_and_batch():
    model = tiny(num_segments=3).eval()
    with torch.no_grad():
        assert model.forward_exits(clip(n=2, t=3)).shape == (2, 3, 5)
    with pytest.raises(ValueError, match="3 frames"):
        model(clip(t=4))


def test_exit_t_only_sees_frames_up_to_t():
    model = tiny().eval()
    x = clip()
    changed = x.clone()
    changed[:, :, 3] += 1.0
    with torch.no_grad():
        a, b = model.forward_exits(x), model.forward_exits(changed)
    torch.testing.assert_close(a[:, :3], b[:, :3])
    assert not torch.allclose(a[:, 3], b[:, 3])


def test_coarse_to_fine_permutes_frames_inside():
    plain, ordered = tiny().eval(), tiny(coarse_to_fine=True).eval()
    ordered.load_state_dict(plain.state_dict())
    x = clip()
    with torch.no_grad():
        torch.testing.assert_close(ordered.forward_exits(x), plain.forward_exits(x[:, :, coarse_to_fine_order(4)]))


def test_reset_classifier_and_lr_multipliers():
    model = tiny(stn_lr_ratio=0.1, global_lr_ratio=0.5, classifier_lr_ratio=5.0)
    model.reset_classifier(7)
    with torch.no_grad():
        assert model.eval().forward_exits(clip()).shape == (1, 4, 7)
    assert model.global_CNN_fc[1].out_features == model.local_CNN_fc[1].out_features == 7
    mults = model.lr_multipliers()
    assert mults["policy_stn."] == 0.1 and mults["global_CNN."] == 0.5 and mults["classifier."] == 5.0
    names = [n for n, _ in model.named_parameters()]
    for prefix in mults:
        assert any(n.startswith(prefix) for n in names), prefix
    assert not any(n.startswith("global_CNN.") for n in names if n.startswith("global_CNN_fc."))
    assert tiny().lr_multipliers()["policy_stn."] == 0.01


def test_released_checkpoint_layout_loads_strictly():
    """The reference's state dict (mbv2 glance, P128, 200 classes), `module.`-prefixed as released."""
    manifest = json.loads((FIXTURES / "adafocusv2_mbv2.json").read_text())["keys"]
    with torch.device("meta"):
        model = create_model("adafocusv2", 200, glance_arch="mbv2", patch_size=128)
        state = {k: torch.empty(shape) for k, shape in manifest}
    load_state_dict_strict(model, state)  # raises on any missing / unexpected / misshaped key
    own = model.state_dict()
    assert set(model.convert_state_dict(dict(own))) == set(own)  # our own keys pass unchanged
    # tonylins block layout -> torchvision's: BN after the depthwise conv of an expand-1 block,
    # the projection conv of an expanding block
    marker = torch.empty(1)
    converted = model.convert_state_dict({"global_CNN.features.1.conv.4.weight": marker,
                                          "global_CNN.features.2.conv.6.weight": marker,
                                          "global_CNN.classifier.weight": marker})
    assert list(converted) == ["global_CNN.features.1.conv.2.weight", "global_CNN.features.2.conv.2.weight"]


# ARCH_BRIEF §6a / the reference README: GFLOPs per 16-frame video; params with 200 classes.
# Our backbones have no ImageNet 1000-way heads (never used by the reference, 3.33 M / 4.10 M params).
GFLOPS = {("mbv2", 96): 17.6, ("mbv2", 128): 27.0, ("mbv2", 160): 39.0,
          ("res50", 96): 24.8, ("res50", 128): 34.1, ("res50", 160): 46.1}
PARAMS = {"mbv2": (88.175, 1281 * 1000 + 2049 * 1000), "res50": (108.333, 2 * 2049 * 1000)}


@pytest.mark.parametrize("glance_arch,patch_size", [("mbv2", 96), ("mbv2", 160), ("res50", 128)])
def test_gflops_and_params_match_the_reference(glance_arch, patch_size):
    with torch.device("meta"):
        model = create_model("adafocusv2", 200, glance_arch=glance_arch, patch_size=patch_size)
        gmacs = measure_gmacs(model, (1, 3, 16, 224, 224))
    assert gmacs == pytest.approx(GFLOPS[glance_arch, patch_size], rel=0.02)
    table, unused_heads = PARAMS[glance_arch]
    assert (count_params(model) + unused_heads) / 1e6 == pytest.approx(table, rel=0.005)
