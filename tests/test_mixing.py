"""Mixup / CutMix / label smoothing: label sums, the same box on every frame, lambda = kept area, determinism."""
import pytest
import torch

from ops.engine.mixing import Mixer, soft_target_loss, soft_targets, step_generator

K = 5


def batch(n=6, t=4, h=12, w=16):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, t, h, w, generator=g)
    return x, torch.arange(n) % K


def multi_hot(n=6):
    y = torch.zeros(n, K)
    y[torch.arange(n), torch.arange(n) % K] = 1.0
    y[:, 0] = 1.0  # class 0 present in every clip
    return y


@pytest.mark.parametrize("kind", ["mixup", "cutmix", "both"])
def test_single_label_soft_targets_sum_to_one_and_follow_lambda(kind):
    x, y = batch()
    mixer = Mixer(K, mixup_alpha=0.0 if kind == "cutmix" else 0.8, cutmix_alpha=0.0 if kind == "mixup" else 1.0,
                  label_smoothing=0.1)
    for it in range(8):
        out = mixer(x, y, step_generator(0, 0, it))
        assert out.mode in (("mixup", "cutmix") if kind == "both" else (kind,))
        assert torch.allclose(out.target.sum(1), torch.ones(len(y)))
        smooth = soft_targets(y, K, 0.1)
        assert torch.allclose(out.target, out.lam * smooth + (1 - out.lam) * smooth.flip(0))
        if out.mode == "mixup":
            assert torch.allclose(out.x, out.lam * x + (1 - out.lam) * x.flip(0))


def test_cutmix_box_is_the_same_on_every_frame_and_lambda_is_its_area():
    x, y = batch(h=12, w=16)
    mixer = Mixer(K, cutmix_alpha=1.0)
    boxes = set()
    for it in range(20):
        out = mixer(x, y, step_generator(3, 0, it))
        top, left, h, w = out.box
        boxes.add(out.box)
        inside = torch.zeros(12, 16, dtype=torch.bool)
        inside[top:top + h, left:left + w] = True
        # every frame of every clip: the box from the reversed batch, the rest untouched
        assert torch.equal(out.x[..., inside], x.flip(0)[..., inside])
        assert torch.equal(out.x[..., ~inside], x[..., ~inside])
        assert out.lam == pytest.approx(1 - h * w / (12 * 16))
        assert torch.allclose(out.target, out.lam * soft_targets(y, K) + (1 - out.lam) * soft_targets(y.flip(0), K))
    assert len(boxes) > 5  # the box moves from step to step


def test_multi_label_mixing_keeps_shared_labels_and_weights_the_others():
    x, _ = batch()
    y = multi_hot()
    for mixer in (Mixer(K, mixup_alpha=0.4), Mixer(K, cutmix_alpha=1.0)):
        out = mixer(x, y, step_generator(1, 0, 7))
        assert torch.allclose(out.target, out.lam * y + (1 - out.lam) * y.flip(0))
        assert torch.all(out.target[:, 0] == 1.0)  # present in both clips: stays 1 (no renormalisation)
        assert soft_target_loss(torch.zeros(len(y), K), out.target, multi_label=True).item() == pytest.approx(
            torch.nn.functional.binary_cross_entropy_with_logits(torch.zeros(len(y), K), out.target).item())
    smoothed = soft_targets(y, K, 0.2)
    assert torch.allclose(smoothed[y == 1], torch.full_like(smoothed[y == 1], 0.9))
    assert torch.allclose(smoothed[y == 0], torch.full_like(smoothed[y == 0], 0.1))


def test_same_seed_same_mix_and_resume_is_exact():
    x, y = batch()
    mixer = Mixer(K, mixup_alpha=0.8, cutmix_alpha=1.0)
    first = [mixer(x, y, step_generator(0, 0, it)) for it in range(6)]
    resumed = [mixer(x, y, step_generator(0, 0, it)) for it in range(3, 6)]  # a run resumed at iteration 3
    for a, b in zip(first[3:], resumed):
        assert (a.mode, a.lam, a.box) == (b.mode, b.lam, b.box) and torch.equal(a.x, b.x)
    other_rank = mixer(x, y, step_generator(0, 1, 3))
    assert (other_rank.lam, other_rank.box) != (first[3].lam, first[3].box)


def test_alpha_zero_is_off_and_smoothing_alone_only_softens():
    x, y = batch()
    off = Mixer(K)
    assert not off.enabled
    out = off(x, y, step_generator(0, 0, 0))
    assert out.mode == "none" and out.x is x and torch.equal(out.target, soft_targets(y, K))
    smooth = Mixer(K, label_smoothing=0.1)
    out = smooth(x, y, step_generator(0, 0, 0))
    assert smooth.enabled and out.x is x and torch.allclose(out.target.max(1).values, torch.full((6,), 0.92))
    logits = torch.randn(6, K, generator=torch.Generator().manual_seed(1))
    assert soft_target_loss(logits, out.target, multi_label=False).item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits, y, label_smoothing=0.1).item(), rel=1e-5)
    with pytest.raises(ValueError):
        Mixer(K, mixup_alpha=-1.0)
