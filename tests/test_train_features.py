"""Issue "Training like the papers and beyond" wired into the trainer: config files and recipes on
`videorec train`, mixing, RandAugment and repeated augmentation in the data path, accumulation,
activation checkpointing, channels-last, the compile fallback and the loop that never syncs."""
import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from archs import create_model
from ops.common.errors import UserError
from ops.data.augment import RandAugment
from ops.data.dataset import EpochKeys, SamplingSettings, VideoDataset
from ops.data.loader import make_loader
from ops.data.repeated_aug import TrainSampler
from ops.data.records import VideoRecord
from ops.data.transforms import ClipTransform
from ops.engine.distributed import DistInfo
from ops.engine.mixing import Mixer
from ops.engine.speed import CompileGuard, channels_last_input, checkpoint_stages, to_channels_last
from ops.engine.train_step import RunningSums, TrainStep, criterion_for, grouped
from videorec_cli.main import app

from conftest import write_frame_folder


# -- the data path: RandAugment, repeated-augmentation keys, epochs through persistent workers ----------

@pytest.fixture(scope="module")
def still_videos(tmp_path_factory):
    """Three videos whose 8 frames are identical (a textured still image each)."""
    root = tmp_path_factory.mktemp("still")
    rng = np.random.default_rng(0)
    for i in range(3):
        frame = rng.integers(0, 256, (1, 40, 48, 3), dtype=np.uint8)
        write_frame_folder(root / f"v{i}", np.repeat(frame, 8, axis=0))
    return root


def still_dataset(root, augment=None) -> VideoDataset:
    records = [VideoRecord(f"v{i}", 8, (i,)) for i in range(3)]
    transform = ClipTransform(mode="train", crop_size=32, scale_size=36, mean=[0.5] * 3, std=[0.5] * 3, flip="none")
    dataset = VideoDataset(records, root=str(root), template="img_{:05d}.jpg",
                           sampling=SamplingSettings(mode="train", num_segments=4), transform=transform,
                           num_classes=3, augment=augment)
    dataset.set_epoch(0, seed=3)
    return dataset


def test_randaugment_changes_clips_and_keeps_frames_of_a_clip_alike(still_videos):
    plain, augmented = still_dataset(still_videos), still_dataset(still_videos, RandAugment(2, 9))
    changed = 0
    for key in range(3):
        a, b = plain[key]["clip"], augmented[key]["clip"]  # (1, C, T, H, W) uint8
        assert b.shape == a.shape and b.dtype == torch.uint8
        assert all(torch.equal(b[:, :, 0], b[:, :, t]) for t in range(b.shape[2]))  # still frames stay alike
        changed += not torch.equal(a, b)
    assert changed >= 2  # two random ops at magnitude 9 (identity may be drawn twice, rarely)


def test_repeated_aug_copies_differ_and_copy_zero_is_the_plain_item(still_videos):
    dataset = still_dataset(still_videos, RandAugment(2, 9))
    n = len(dataset)
    plain, copy0, copy1, copy2 = (dataset[k]["clip"] for k in (1, (0, 1), n + 1, 2 * n + 1))
    assert torch.equal(plain, copy0)
    assert dataset[n + 1]["index"] == 1  # the key names row 1
    assert not torch.equal(copy0, copy1) or not torch.equal(copy1, copy2)


def test_the_epoch_travels_with_the_keys_to_persistent_workers(still_videos):
    """Workers that live across epochs never see set_epoch; the (epoch, key) keys carry it, so the
    items of epoch 1 equal the ones a fresh process makes for epoch 1 (what resuming relies on)."""
    dataset = still_dataset(still_videos, RandAugment(2, 9))
    sampler = EpochKeys(TrainSampler(len(dataset), DistInfo(), seed=0))
    loader = make_loader(dataset, 3, 2, sampler=sampler, persistent=True)
    assert loader.persistent_workers
    per_epoch = []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        per_epoch.append(next(iter(loader)))
    fresh = still_dataset(still_videos, RandAugment(2, 9))
    fresh.set_epoch(1, seed=3)
    order = TrainSampler(len(dataset), DistInfo(), seed=0)
    order.set_epoch(1)
    assert torch.equal(per_epoch[1]["clip"], torch.stack([fresh[k]["clip"] for k in order]))
    assert not torch.equal(per_epoch[0]["clip"], per_epoch[1]["clip"])


# -- memory and speed switches -----------------------------------------------------------------------

def _grads(model, x):
    torch.manual_seed(1)  # dropout, if any, draws the same
    model(x).logsumexp(1).sum().backward()
    return {k: p.grad for k, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("arch,options,shape", [
    ("tsn_r18", {"num_segments": 2}, (2, 3, 2, 32, 32)),   # ResNet stages of a 2D model
    ("x3d_xs", {}, (2, 3, 4, 32, 32)),                     # X3D/VoV3D stages
    ("movinet_a0", {}, (2, 3, 4, 32, 32)),                  # MoViNet blocks
])
def test_checkpoint_activations_gives_the_same_gradients_and_bn_statistics(arch, options, shape):
    plain = create_model(arch, 4, **options).train()
    saving = copy.deepcopy(plain)
    names = checkpoint_stages(saving)
    assert names and set(saving.state_dict()) == set(plain.state_dict())  # checkpoints keep their keys
    x = torch.randn(shape)
    a, b = _grads(plain, x), _grads(saving, x)
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    # running statistics counted once, not again by the recomputation
    sa, sb = plain.state_dict(), saving.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_checkpoint_activations_refuses_a_model_without_known_stages():
    with pytest.raises(UserError, match="--checkpoint-activations: .* no stages it knows; it applies to ResNet"):
        checkpoint_stages(nn.Sequential(nn.Conv3d(3, 4, 3), nn.ReLU()))


def test_channels_last_converts_convolutions_and_keeps_the_output():
    model = create_model("tsn_r18", 4, num_segments=2).eval()
    fast = to_channels_last(copy.deepcopy(model))
    conv = fast.base_model.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    x = torch.randn(2, 3, 2, 32, 32)
    assert channels_last_input(x).is_contiguous(memory_format=torch.channels_last_3d)
    with torch.no_grad():
        assert torch.allclose(fast(channels_last_input(x)), model(x), atol=1e-5)
    x3d = to_channels_last(create_model("x3d_xs", 4))
    assert x3d.s1.conv.weight.is_contiguous(memory_format=torch.channels_last_3d)


# -- the training step: accumulation, mixing, running sums, compile fallback -------------------------

class NoBatchCoupling(nn.Module):
    """A test-only video model without BatchNorm: each clip's logits depend on that clip only, so a
    K-times batch and K accumulated micro-batches give the same mean gradient (the claim under test)."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 6, 3, padding=1)
        self.fc = nn.Linear(6, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, T, H, W) -> (N, K)
        return self.fc(torch.relu(self.conv(x)).mean((2, 3, 4)))


def make_step(model, *, mixer=None, guard=None, soft=False, gd=1.0):
    from ops.engine.trainer import TrainingObjective

    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    return TrainStep(TrainingObjective(model, criterion_for(False, soft)), model, optimizer, scaler,
                     torch.device("cpu"), gd=gd, mixer=mixer, guard=guard)


def test_accumulating_k_micro_batches_equals_one_k_times_batch():
    torch.manual_seed(0)
    big = NoBatchCoupling()
    accumulated = copy.deepcopy(big)
    x, y = torch.randn(4, 6, 3, 4, 8, 8), torch.randint(0, 3, (4, 6))
    one, two = make_step(big), make_step(accumulated)
    sums_one, sums_two = RunningSums(torch.device("cpu")), RunningSums(torch.device("cpu"))
    for step in range(4):  # four optimiser steps (momentum and clipping at 1.0 included)
        one([(x[step], y[step])], step, sums_one)
        two([(x[step][:3], y[step][:3]), (x[step][3:], y[step][3:])], step, sums_two)
    a, b = big.state_dict(), accumulated.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert not torch.equal(a["fc.weight"], NoBatchCoupling().state_dict()["fc.weight"])
    ra, rb = sums_one.read(), sums_two.read()
    assert ra["count"] == rb["count"] == 24 and ra["correct"] == rb["correct"]
    assert ra["loss"] == pytest.approx(rb["loss"], rel=1e-6)


def test_mixing_changes_the_loss_and_is_the_same_again_for_the_same_step():
    torch.manual_seed(0)
    model = NoBatchCoupling()
    x, y = torch.randn(4, 3, 4, 8, 8), torch.tensor([0, 1, 2, 0])
    losses = {}
    for name, mixer in (("plain", None), ("mixup", Mixer(3, mixup_alpha=0.8)), ("again", Mixer(3, mixup_alpha=0.8))):
        step = make_step(copy.deepcopy(model), mixer=mixer, soft=mixer is not None)
        sums = RunningSums(torch.device("cpu"))
        step([(x, y)], 7, sums)
        losses[name] = sums.read()["loss"]
    assert losses["mixup"] != losses["plain"] and losses["mixup"] == losses["again"]


def test_running_sums_stay_on_the_device_until_read():
    sums = RunningSums(torch.device("cpu"))
    sums.add(torch.tensor(2.0), torch.tensor([[0.0, 1.0], [1.0, 0.0]]), torch.tensor([1, 1]))
    sums.add(torch.tensor(1.0), torch.tensor([[0.0, 1.0]]), torch.tensor([1]))
    assert isinstance(sums.loss, torch.Tensor) and isinstance(sums.correct, torch.Tensor)
    assert sums.read() == {"loss": 5.0 / 3, "top1": 200.0 / 3, "loss_sum": 5.0, "correct": 2.0, "count": 3}
    assert [len(g) for g in grouped(range(7), 3)] == [3, 3]


def test_compile_failure_falls_back_to_eager_with_one_line():
    def broken_backend(graph, inputs):
        raise RuntimeError("no compiler for this graph")

    torch.manual_seed(0)
    model = NoBatchCoupling()
    before = copy.deepcopy(model.state_dict())
    lines = []
    step = make_step(model, guard=CompileGuard(model, lines.append, backend=broken_backend))
    x, y = torch.randn(2, 3, 4, 8, 8), torch.tensor([0, 1])
    sums = RunningSums(torch.device("cpu"))
    step([(x, y)], 0, sums)
    assert lines == ["--compile: torch.compile failed at the first step (RuntimeError: no compiler for this graph); "
                     "training in eager mode"]
    assert "forward" not in model.__dict__ and sums.count == 2  # eager again; the step counted once
    assert not torch.equal(before["fc.weight"], model.state_dict()["fc.weight"])
    step([(x, y)], 1, sums)
    assert len(lines) == 1


# -- through `videorec train` ------------------------------------------------------------------------

TINY = ["--arch", "tsm_mbv2", "-m", "width_mult=0.25", "--crop-size", "32", "--scale-size", "32",
        "--num-segments", "4", "-b", "4", "--workers", "0", "--npb", "--lr", "0.05", "--eval-freq", "1"]
QUICK = ["--epochs", "1", "--max-iters-per-epoch", "2"]




def train(*args):
    result = CliRunner().invoke(app, ["train", *[str(a) for a in args]])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result


def weights(run: Path) -> dict:
    return torch.load(run / "last.pth", weights_only=True)["model"]


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_settings_json_as_config_repeats_the_run_bit_for_bit(tiny_dataset, tmp_path):
    train(tiny_dataset, *TINY, *QUICK, "--mixup", 0.4, "-o", tmp_path / "first")
    again = train("--config", tmp_path / "first" / "settings.json", "-o", tmp_path / "again")
    first = json.loads((tmp_path / "first" / "settings.json").read_text())
    second = json.loads((tmp_path / "again" / "settings.json").read_text())
    assert {**first, "output_dir": None} == {**second, "output_dir": None}
    assert first["mixup"] == 0.4 and first["npb"] and first["data"]["num_segments"] == 4
    assert same_weights(weights(tmp_path / "first"), weights(tmp_path / "again")), again.output
    printed = train("--config", tmp_path / "first" / "settings.json", "--lr", 0.2, "--print-config").output
    assert "lr: 0.2  # flag" in printed and "mixup: 0.4  # config " in printed and "num_segments: 4  # config" in printed


def test_config_errors_are_one_line_naming_the_key(tiny_dataset, tmp_path, run_main):
    config = tmp_path / "c.yaml"
    config.write_text("dataset: x\narch: tsm_mbv2\nlr_step: [1]\n")
    code, _, err = run_main("train", "--config", config, "-o", tmp_path / "run")
    assert code == 2 and err.count("\n") == 1, err
    assert f"config {config}: unknown key 'dataset'" in err  # the data settings live under data:
    config.write_text(f"arch: tsm_mbv2\nlr_step: [1]\ndata: {{dataset: {tiny_dataset}}}\n")
    code, _, err = run_main("train", "--config", config, "-o", tmp_path / "run")
    assert code == 2 and err == f"videorec: error: config {config}: unknown key 'lr_step'; did you mean lr_steps?\n"
    code, _, err = run_main("train", "--recipe", "tsm_k400", "--arch", "x3d_xs", "--print-config")
    assert code == 2 and err.startswith("videorec: error: model_options.shift_div (from recipe tsm_k400) does not "
                                        "apply to x3d_xs; it takes: dropout"), err
    code, _, err = run_main("train", tiny_dataset, *TINY, "--mixup", -1)
    assert code == 2 and err == "videorec: error: --mixup (mixup) must be >= 0, not -1\n"
    code, _, err = run_main("train", tiny_dataset, *TINY, "--accumulate", 5, "-o", tmp_path / "run")
    assert code == 2 and err == ("videorec: error: --accumulate 5: an epoch has only 4 batch(es) of 4 per process; "
                                 "lower --accumulate or --batch-size\n"), err
    assert not (tmp_path / "run").exists()


def test_recipe_scales_its_lr_to_the_global_batch_and_flags_win(run_main):
    code, out, _ = run_main("train", "--recipe", "msn_ssv1", "-b", 4, "--accumulate", 2,
                            "--epochs", 3, "--print-config")
    assert code == 0
    # seed 001: lr 0.01 for 8 x 2 GPUs; this run: 4 x 1 process x 2 micro-batches = 8 clips per step
    assert "lr: 0.005  # recipe msn_ssv1, scaled to the global batch" in out
    assert "epochs: 3  # flag" in out and "lr_steps: [30.0, 45.0, 55.0]  # recipe msn_ssv1" in out
    assert "npb: true  # recipe msn_ssv1" in out and "  num_segments: 8  # recipe msn_ssv1" in out
    code, out, _ = run_main("train", "--recipe", "msn_ssv1", "--lr", 0.1, "--print-config")
    assert "lr: 0.1  # flag" in out


def test_mixup_changes_training_and_resumes_exactly(tiny_dataset, tmp_path):
    """Straight vs stopped and resumed, with mixing on and 2 persistent loader workers."""
    mix = ["--mixup", 0.4, "--cutmix", 1.0, "--label-smoothing", 0.1, "--max-iters-per-epoch", 2, "--workers", 2]
    train(tiny_dataset, *TINY, *mix, "--epochs", 2, "-o", tmp_path / "straight")
    train(tiny_dataset, *TINY, *mix, "--epochs", 1, "-o", tmp_path / "split")
    out = train(tiny_dataset, *TINY, *mix, "--epochs", 2, "--resume", "auto", "-o", tmp_path / "split")
    assert "resumed from" in out.output
    assert same_weights(weights(tmp_path / "straight"), weights(tmp_path / "split"))
    train(tiny_dataset, *TINY, "--max-iters-per-epoch", 2, "--epochs", 2, "-o", tmp_path / "plain")
    assert not same_weights(weights(tmp_path / "straight"), weights(tmp_path / "plain"))


def test_each_data_and_step_flag_changes_the_run(tiny_dataset, tmp_path):
    train(tiny_dataset, *TINY, *QUICK, "-o", tmp_path / "plain")
    base = weights(tmp_path / "plain")
    for name, flags in {"randaugment": ["--randaugment", "2,9"], "repeated": ["--repeated-aug", 3],
                        "accumulate": ["--accumulate", 2]}.items():
        out = train(tiny_dataset, *TINY, *QUICK, *flags, "--log-interval", 1, "-o", tmp_path / name)
        assert not same_weights(base, weights(tmp_path / name)), name
        # --max-iters-per-epoch caps optimiser steps (with --accumulate 2 each takes two batches)
        assert "epoch 0 step 1/2: loss" in out.output and "epoch 0 step 2/2: loss" in out.output, out.output
    # activation checkpointing: the same gradients, so the same weights bit for bit
    train(tiny_dataset, *TINY, *QUICK, "--checkpoint-activations", "-o", tmp_path / "checkpointed")
    assert same_weights(base, weights(tmp_path / "checkpointed"))
    assert "stages recompute their activations" in (tmp_path / "checkpointed" / "log.txt").read_text()
    # channels-last: another memory layout (float sums in another order: not compared bit for bit)
    train(tiny_dataset, *TINY, *QUICK, "--channels-last", "-o", tmp_path / "channels_last")
    conv = weights(tmp_path / "channels_last")["base_model.features.0.0.weight"]
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
