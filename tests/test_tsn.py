"""TSN/TSM: the shift, partial BN, temporal pool, TSM checkpoints, counts."""
import pytest
import torch

from archs import create_model
from archs.checkpoint import load_state_dict_strict
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
def test_shapes_batch_one_identity_consensus_and_exits(arch):
    model = create_model(arch, 7, num_segments=3, width_mult=0.25) if "mbv2" in arch else create_model(arch, 7, num_segments=3)
    model.eval()
    x = torch.randn(1, 3, 3, 32, 32)
    assert model(x).shape == (1, 7)
    exits = model.forward_exits(x)
    assert exits.shape == (1, 3, 7) and torch.allclose(exits[:, -1], model(x), atol=1e-5)
    ident = create_model("tsm_r18", 7, num_segments=3, consensus_type="identity").eval()
    assert ident(x).shape == (1, 3, 7)


def test_temporal_pool_halves_time():
    model = create_model("tsm_r18", 5, num_segments=8, temporal_pool=True, consensus_type="identity").eval()
    assert model(torch.randn(2, 3, 8, 32, 32)).shape == (2, 4, 5)
    block = create_model("tsm_r18", 5, num_segments=4, shift_place="block").eval()
    assert block(torch.randn(1, 3, 4, 32, 32)).shape == (1, 5)


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
    from archs.checkpoint import extract_state_dict
    load_state_dict_strict(target, extract_state_dict({"state_dict": theirs}))
    assert torch.equal(target.new_fc.weight, theirs["module.new_fc.weight"])
    # a TSN (unshifted) checkpoint fine-tunes into a TSM: .net is added
    tsn_state = create_model("tsn_r18", 6).state_dict()
    load_state_dict_strict(create_model("tsm_r18", 6), tsn_state)


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
