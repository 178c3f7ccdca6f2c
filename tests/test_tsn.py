"""TSN/TSM: the shift, partial BN, temporal pool, consensus, TSM checkpoints, counts."""
import pytest
import torch
from torch import nn

from archs import create_model
from archs.checkpoint import CheckpointError, extract_state_dict, load_state_dict_strict
from archs.registry import ModelOptionError, training_loss
from archs.profile import profile_model
from archs.tsn import temporal_shift, running_mean


def test_temporal_shift_moves_channels_and_zero_fills():
    n, t, c = 2, 4, 16
    x = torch.arange(n * t * c, dtype=torch.float32).view(n * t, c, 1, 1)
    out = temporal_shift(x, t, fold_div=8).view(n, t, c)
    src = x.view(n, t, c)
    assert torch.equal(out[:, :-1, :2], src[:, 1:, :2])        # 1/8 from the next frame
    assert torch.equal(out[:, 1:, 2:4], src[:, :-1, 2:4])      # 1/8 from the previous frame
    assert torch.equal(out[:, :, 4:], src[:, :, 4:])
    assert (out[:, -1, :2] == 0).all() and (out[:, 0, 2:4] == 0).all()


def test_tsm_sees_time_order_tsn_does_not():
    x = torch.randn(1, 3, 4, 32, 32)
    rev = x.flip(2)
    for arch, same in (("tsn_r18", True), ("tsm_r18", False)):
        model = create_model(arch, 5, num_segments=4).eval()
        with torch.no_grad():
            assert torch.allclose(model(x), model(rev), atol=1e-5) is same


@pytest.mark.parametrize("arch", ["tsm_r18", "tsm_mbv2"])
def test_shapes_batch_one_exits_and_feature_head_split(arch):
    model = create_model(arch, 7, num_segments=3, width_mult=0.25) if "mbv2" in arch else create_model(arch, 7, num_segments=3)
    model.eval()
    x = torch.randn(1, 3, 3, 32, 32)
    with torch.no_grad():
        logits = model(x)
        exits = model.forward_exits(x)
        features = model.forward_features(x)
        assert logits.shape == (1, 7) and features.shape == (1, model.feature_dim)
        assert exits.shape == (1, 3, 7) and torch.allclose(exits[:, -1], logits, atol=1e-5)
        # the classifier of the mean feature = the mean of the segment logits (linear head, eval)
        torch.testing.assert_close(model.forward_head(features), logits, rtol=1e-4, atol=1e-5)
    assert model.train()(x).shape == (1, 7)


def test_identity_consensus_supervises_every_segment():
    """forward is (N, K) whatever the consensus; 'identity' changes the training objective to the
    mean over segments of the criterion on each segment's logits (CE and multi-label BCE)."""
    torch.manual_seed(0)
    avg = create_model("tsm_r18", 4, num_segments=3, dropout=0.0).eval()
    ident = create_model("tsm_r18", 4, num_segments=3, dropout=0.0, consensus_type="identity").eval()
    ident.load_state_dict(avg.state_dict())
    ident.new_fc.weight.data.normal_(0, 1.0)  # segment logits apart: the two objectives differ
    avg.new_fc.weight.data.copy_(ident.new_fc.weight)
    x, y = torch.randn(2, 3, 3, 32, 32), torch.tensor([1, 3])
    multi = torch.tensor([[1.0, 0, 1, 0], [0, 1, 0, 0]])
    with torch.no_grad():
        segments = ident.frame_logits(x)
        assert ident(x).shape == (2, 4)
        for criterion, target in ((nn.CrossEntropyLoss(), y), (nn.BCEWithLogitsLoss(), multi)):
            loss, logits = training_loss(ident, x, target, criterion)
            expected = sum(criterion(segments[:, t], target) for t in range(3)) / 3
            torch.testing.assert_close(loss, expected)
            torch.testing.assert_close(logits, segments.mean(1))
            avg_loss, avg_logits = training_loss(avg, x, target, criterion)
            torch.testing.assert_close(avg_loss, criterion(segments.mean(1), target))
            torch.testing.assert_close(avg_logits, logits)
            # convex criteria: the mean of the losses is at least the loss of the mean (here 6.9 vs 6.4 for CE)
            assert loss >= avg_loss - 1e-6
        ce = nn.CrossEntropyLoss()
        assert training_loss(ident, x, y, ce)[0] > training_loss(avg, x, y, ce)[0] + 0.1  # a wide gap
    with pytest.raises(ModelOptionError, match="consensus_type"):
        create_model("tsn_r18", 4, consensus_type="max")


def test_temporal_pool_halves_time():
    model = create_model("tsm_r18", 5, num_segments=8, temporal_pool=True).eval()
    with torch.no_grad():
        x = torch.randn(2, 3, 8, 32, 32)
        assert model(x).shape == (2, 5) and model.forward_exits(x).shape == (2, 4, 5)
    block = create_model("tsm_r18", 5, num_segments=4, shift_place="block").eval()
    assert block(torch.randn(1, 3, 4, 32, 32)).shape == (1, 5)


def test_tsn_takes_no_shift_options_and_resnets_no_width():
    with pytest.raises(ModelOptionError, match="tsn_r18 does not take option.*shift_div"):
        create_model("tsn_r18", 5, shift_div=4)
    with pytest.raises(ModelOptionError, match="width_mult is fixed by the name"):
        create_model("tsm_r18", 5, width_mult=0.5)
    with pytest.raises(ModelOptionError, match="temporal_pool is fixed by the name"):
        create_model("tsm_mbv2", 5, temporal_pool=True)


def test_partial_bn_freezes_all_but_first_bn():
    model = create_model("tsn_r18", 5, partial_bn=True).train()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms[0].training and norms[0].weight.requires_grad
    assert all(not m.training and not m.weight.requires_grad for m in norms[1:])
    assert model.train() is model  # the TSM repository's train() returned None


def test_loads_tsm_repository_checkpoint_keys():
    """TSM's DataParallel keys: module.base_model.* with shifted convs as .net, new_fc."""
    ours = create_model("tsm_r18", 6, num_segments=4)
    theirs = {}
    for key, value in ours.state_dict().items():
        theirs["module." + key] = torch.randn_like(value.float()).to(value.dtype)
    assert any(".conv1.net." in k for k in theirs)
    target = create_model("tsm_r18", 6, num_segments=4)
    load_state_dict_strict(target, extract_state_dict({"state_dict": theirs}))
    assert torch.equal(target.new_fc.weight, theirs["module.new_fc.weight"])
    # the TSM repository's classifier names map onto new_fc
    renamed = {("base_model.fc." + k[len("new_fc."):] if k.startswith("new_fc.") else k): v
               for k, v in ours.state_dict().items()}
    load_state_dict_strict(target, renamed)
    assert torch.equal(target.new_fc.weight, ours.new_fc.weight)


@pytest.mark.parametrize("source,target,marker,use", [
    ("tsm_r18", "tsn_r18", "has temporal-shift keys (base_model.layer1.0.conv1.net.weight): a TSM", "tsm_r18"),
    ("tsn_r18", "tsm_r18", "has no temporal-shift keys (base_model.layer1.0.conv1.weight", "tsn_r18"),
    ("tsm_mbv2", "tsn_mbv2", "has temporal-shift keys (base_model.features.", "tsm_mbv2"),
])
def test_checkpoint_of_the_other_family_is_refused(source, target, marker, use):
    """A TSM checkpoint used to load strictly into a TSN (and the reverse) by renaming .net keys,
    giving other logits; now it is refused with one line naming the arch to use."""
    with torch.device("meta"):
        state = create_model(source, 6, num_segments=4).state_dict()
        model = create_model(target, 6, num_segments=4)
    with pytest.raises(CheckpointError) as info:
        load_state_dict_strict(model, state, source="ckpt.pth")
    message = str(info.value)
    assert message.startswith("ckpt.pth: ") and marker in message and message.endswith(f"use --arch {use}")
    assert "\n" not in message


def test_counts_match_the_brief():
    assert profile_model("tsm_r50", 174).params == 23864558
    r50 = profile_model("tsm_r50", 400)
    assert r50.params == 24327632 and r50.gmacs == pytest.approx(32.70, rel=0.01)
    assert profile_model("tsm_mbv2", 174).params == 2446766
    assert profile_model("tsm_r101", 174).params == pytest.approx(42.857e6, rel=0.005)


def test_running_mean():
    x = torch.tensor([[[1.0], [3.0], [5.0]]])
    assert running_mean(x).flatten().tolist() == [1.0, 2.0, 3.0]


def test_imagenet_weights_offline_give_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    import torchvision

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.models._api.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(RuntimeError, match="cannot get ImageNet weights for resnet18.*--pretrained none"):
        create_model("tsn_r18", 5, pretrained="imagenet")
