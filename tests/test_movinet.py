"""MoViNet A0-A5 base and stream: shapes, stream equivalence, state, loading, sizes, training, streaming CLI ops."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from archs.checkpoint import CheckpointError, load_state_dict_strict
from archs.movinet import MoViNet, MoViNetConfig, TFAvgPool, movinet, same_padding
from archs.registry import ModelOptionError, count_params, create_model, list_models

FIXTURES = Path(__file__).parent / "fixtures"

# ARCH_BRIEF §1: measured params (M) per class count (K600 / K400 / SSv2 174 / ActivityNet 200).
BRIEF_PARAMS = {
    "movinet_a0": {600: 3.112, 400: 2.702, 174: 2.239, 200: 2.292},
    "movinet_a1": {600: 4.690, 400: 4.280, 174: 3.817, 200: 3.871},
    "movinet_a2": {600: 5.250, 400: 4.840, 174: 4.377, 200: 4.430},
    "movinet_a3": {600: 7.398, 400: 6.988, 174: 6.525, 200: 6.578},
    "movinet_a4": {600: 11.349, 400: 10.940, 174: 10.477, 200: 10.530},
    "movinet_a5": {600: 18.651, 400: 18.241, 174: 17.778, 200: 17.831},
    "movinet_a0_stream": {600: 3.748, 400: 3.338, 174: 2.875, 200: 2.928},
    "movinet_a1_stream": {600: 6.447, 400: 6.038, 174: 5.574, 200: 5.628},
    "movinet_a2_stream": {600: 7.327, 400: 6.917, 174: 6.454, 200: 6.507},
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These many tiny forwards run several times faster on one intra-op thread (no thread
    hand-offs), above all on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def randomize(model: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial weights: ReZero alphas, positional scales and BN statistics away from their init."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() == 0:  # alpha, pos_scale
                param.fill_(0.5 + torch.rand((), generator=gen).item())
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.normal_(0, 0.1, generator=gen)
                module.running_var.uniform_(0.5, 1.5, generator=gen)
    return model.eval()


# A narrow MoViNet with every kind of block of the real ones: strided (1,5,5) / (5,3,3) / (3,3,3)
# kernels, a (1,3,3) kernel without temporal conv, and a widening shortcut without pooling (res.0).
TINY = MoViNetConfig(stem=8, head=32, num_frames=8, crop_size=32, frame_stride=2, stages=(
    (8, 2, ((16, 155),)),
    (16, 2, ((24, 333), (24, 333))),
    (16, 2, ((32, 533),)),
    (24, 1, ((32, 533), (24, 133))),
    (32, 2, ((48, 533), (48, 155))),
))


def tiny(*, stream: bool = True, num_classes: int = 7, **options) -> MoViNet:
    model = MoViNet(TINY, num_classes=num_classes, causal=stream, conv_type="2plus1d" if stream else "3d", **options)
    model.input_spec = movinet(variant="a0").input_spec.replace(crop_size=32, scale_size=32)
    return model


def tiny_stream(**options) -> torch.nn.Module:
    return randomize(tiny(**options))


def test_registry_and_input_spec():
    names = list_models("movinet*")
    assert names == sorted([f"movinet_a{i}" for i in range(6)] + [f"movinet_a{i}_stream" for i in range(6)])
    with torch.device("meta"):
        spec = create_model("movinet_a2_stream", num_classes=5).input_spec
        views = [(spec.num_segments, spec.crop_size) for spec in
                 (create_model(f"movinet_a{i}", num_classes=5).input_spec for i in range(6))]
    assert views == [(50, 172), (50, 172), (50, 224), (120, 256), (80, 290), (120, 320)]
    assert (spec.num_segments, spec.crop_size, spec.scale_size, spec.sampling) == (50, 224, 224, "dense")
    assert spec.mean == (0.0, 0.0, 0.0) and spec.std == (1.0, 1.0, 1.0) and spec.value_range == 1.0


@pytest.mark.parametrize("stream", [False, True])
def test_forward_shapes_and_logits(stream):
    model = randomize(movinet(variant="a0", stream=stream, num_classes=7))
    with torch.no_grad():
        out = model(torch.rand(2, 3, 4, 32, 48))  # non-square frames work
    assert out.shape == (2, 7)
    # logits, not probabilities
    assert (out < 0).any() and not torch.allclose(out.sum(1), torch.ones(2), atol=1e-3)
    model.reset_classifier(3)
    assert model.get_classifier().out_channels == 3
    with torch.no_grad():
        assert model(torch.rand(1, 3, 2, 32, 32)).shape == (1, 3)


# The stream tests share input shapes (batch 2 or 1, 1/3/6 frames of 32x32): on CPU each new
# shape costs oneDNN set-up time that dwarfs these tiny forwards.
@pytest.mark.parametrize("positional", [False, True])
def test_stream_frame_by_frame_equals_chunks_equals_whole_clip(positional):
    model = tiny_stream(positional_encoding=positional)
    clip = torch.rand(2, 3, 6, 32, 32)
    with torch.no_grad():
        whole = model(clip)
        state = model.init_state(2, 32)
        for t in range(clip.shape[2]):
            by_frame, state = model(clip[:, :, t:t + 1], state)
        assert state["frames"].tolist() == [6.0, 6.0]
        state = model.init_state(2, 32)
        for t in range(0, clip.shape[2], 3):
            by_chunk, state = model(clip[:, :, t:t + 3], state)
        partial = model(clip[:, :, :3])
    torch.testing.assert_close(by_frame, whole, atol=1e-5, rtol=0)
    torch.testing.assert_close(by_chunk, whole, atol=1e-5, rtol=0)
    assert (partial - whole).abs().max() > 1e-3  # the logits depend on every frame fed so far


def test_folded_batch_norm_fast_path_matches_plain_path():
    """Eval without autograd folds BN into the convs (cached); it must give the plain path's logits,
    also after the weights change in place (the cache is rebuilt), and on base 3D / (2+1)D models."""
    model = tiny_stream()
    clip = torch.rand(2, 3, 6, 32, 32)

    def fast_and_plain(net):
        with torch.no_grad():
            fast = net(clip)
        with torch.enable_grad():  # autograd on: conv -> BN -> act as in training, not folded
            plain = net(clip).detach()
        return fast, plain

    for net in (randomize(tiny(stream=False)), randomize(MoViNet(TINY, num_classes=7, conv_type="2plus1d")), model):
        before, plain = fast_and_plain(net)
        torch.testing.assert_close(before, plain, atol=1e-5, rtol=0)
    with torch.no_grad():
        model.blocks["b1_l0"].deep.conv_1.norm.running_var.mul_(3.0)
        model.conv7.conv_1.conv2d.weight.mul_(-1.0)
    fast, plain = fast_and_plain(model)
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=0)
    assert (fast - before).abs().max() > 1e-3  # the folded weights followed the change


def test_stream_is_causal():
    model = tiny_stream()
    clip = torch.rand(2, 3, 6, 32, 32)
    changed = clip.clone()
    changed[:, :, 3:] = torch.rand(2, 3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(clip[:, :, :3]), model(changed[:, :, :3]))
        assert not torch.allclose(model(clip), model(changed))


def test_batch_size_changes_between_videos():
    model = tiny_stream()
    with torch.no_grad():
        for batch in (2, 1, 2):
            state = model.init_state(batch, 32)
            for t in range(2):
                logits, state = model(torch.rand(batch, 3, 1, 32, 32), state)
            assert logits.shape == (batch, 7)
            assert model(torch.rand(batch, 3, 1, 32, 32)).shape == (batch, 7)


def test_internal_state_mode_and_clean_activation_buffers():
    model = tiny_stream(internal_state=True)
    clip = torch.rand(2, 3, 6, 32, 32)
    with torch.no_grad():
        reference = model(clip)
        model.clean_activation_buffers()
        for t in range(0, 6, 3):
            streamed = model(clip[:, :, t:t + 3])
        model.clean_activation_buffers()
        torch.testing.assert_close(streamed, reference, atol=1e-5, rtol=0)
        assert model(torch.rand(1, 3, 1, 32, 32)).shape == (1, 7)  # cleaned: a new batch size is fine


def test_base_model_has_no_state():
    model = movinet(variant="a0", num_classes=4)
    with pytest.raises(ValueError):
        model.init_state(1)
    with pytest.raises(ValueError):
        model(torch.rand(1, 3, 2, 32, 32), {})


def test_tf_same_padding_and_avg_pool():
    assert same_padding(172, 3, 2) == (0, 1) and same_padding(86, 5, 2) == (1, 2)
    assert same_padding(43, 3, 2) == (1, 1) and same_padding(11, 5, 1) == (2, 2)
    x = torch.rand(1, 2, 1, 7, 7)
    odd = F.avg_pool3d(x, (1, 3, 3), (1, 2, 2), padding=(0, 1, 1), count_include_pad=False)
    torch.testing.assert_close(TFAvgPool()(x), odd)
    x = torch.rand(1, 2, 1, 6, 6)  # even: pad bottom/right only, average over the valid pixels
    pooled = TFAvgPool()(x)
    assert pooled.shape[-2:] == (3, 3)
    torch.testing.assert_close(pooled[0, 0, 0, 0, 0], x[0, 0, 0, :3, :3].mean())
    torch.testing.assert_close(pooled[0, 0, 0, 2, 2], x[0, 0, 0, 4:, 4:].mean())


@pytest.mark.parametrize("kind", ["base", "stream"])
def test_strict_loading_from_port_manifest(kind):
    manifest = json.loads((FIXTURES / f"movinet_a0_{kind}.json").read_text())["keys"]
    state = {key: (torch.zeros(shape, dtype=torch.long) if key.endswith("num_batches_tracked")
                   else torch.randn(shape)) for key, shape in manifest}
    model = create_model("movinet_a0" + ("_stream" if kind == "stream" else ""), num_classes=600)
    load_state_dict_strict(model, state)
    first = manifest[0][0]
    torch.testing.assert_close(model.state_dict()[first], state[first])
    del state[first]
    with pytest.raises(CheckpointError):
        load_state_dict_strict(model, state)


def test_param_counts_match_brief():
    counts = {}
    for name in list_models("movinet*"):
        with torch.device("meta"):
            model = create_model(name, num_classes=600)
            for classes in (600, 400, 174, 200):
                model.reset_classifier(classes)
                counts[name, classes] = count_params(model)
        for classes, millions in BRIEF_PARAMS.get(name, {}).items():
            params = counts[name, classes]
            assert abs(params / 1e6 - millions) / millions < 0.005, (name, classes, params)
    for i in (3, 4, 5):  # not in the brief: larger than base (doubled causal SE, 2+1D BNs)
        assert counts[f"movinet_a{i}_stream", 600] > counts[f"movinet_a{i}", 600]


def gmacs_meta(model: torch.nn.Module, shape, state=None) -> float:
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        x = torch.zeros(shape, device="meta")
        model(x) if state is None else model(x, state)
    return counter.get_total_flops() / 2e9


def test_gmacs_match_brief():
    with torch.device("meta"):
        base = movinet(variant="a0").eval()
        stream = movinet(variant="a0", stream=True).eval()
    assert gmacs_meta(base, (1, 3, 50, 172, 172)) == pytest.approx(2.63, rel=0.03)
    assert gmacs_meta(stream, (1, 3, 50, 172, 172)) == pytest.approx(2.43, rel=0.03)
    per_frame = gmacs_meta(stream, (1, 3, 1, 172, 172), stream.init_state(1, device="meta"))
    assert per_frame * 1000 == pytest.approx(50.7, rel=0.03)


@pytest.mark.parametrize("stream", [False, True])
def test_tiny_model_learns_and_fits_a_tiny_batch(stream):
    """A fixed batch of 3 clips is fitted (the loss falls below 5% of its first value: a few dozen
    steps here, 150 allowed) and every parameter moves (the blocks once their ReZero alpha has)."""
    torch.manual_seed(0)
    model = tiny(stream=stream, num_classes=3, dropout=0.0).train()
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    clips, labels = torch.rand(3, 3, 4, 32, 32), torch.tensor([0, 1, 2])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    while len(losses) < 150 and (not losses or losses[-1] > 0.05 * losses[0]):
        loss = F.cross_entropy(model(clips), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] <= 0.05 * losses[0], (len(losses), losses[0], losses[-1])
    assert not [k for k, p in model.named_parameters() if torch.equal(p, before[k])]


@pytest.mark.parametrize("stream", [False, True])
def test_features_and_head_split_the_forward(stream):
    model = randomize(tiny(stream=stream))
    clip = torch.rand(2, 3, 3, 32, 32)
    with torch.no_grad():
        features = model.forward_features(clip)
        assert features.shape == (2, TINY.head)
        torch.testing.assert_close(model.forward_head(features), model(clip))


def test_names_fix_stream_and_num_segments_sets_the_clip():
    with torch.device("meta"):
        for name, causal in (("movinet_a0", False), ("movinet_a0_stream", True), ("movinet", False),
                             ("movinet_stream", True)):
            model = create_model(name, 5, num_segments=8)
            assert model.causal is causal and model.input_spec.num_frames == 8
            assert model.arch_name == name if name.startswith("movinet_a") else model.arch_name.startswith("movinet_a0")
        assert create_model("movinet_a3_stream", 5).input_spec.num_frames == 120
        for name in ("movinet_a0", "movinet_a0_stream"):
            with pytest.raises(ModelOptionError, match="stream is fixed by the name"):
                create_model(name, 5, stream=name == "movinet_a0")
        with pytest.raises(ModelOptionError, match="stream models"):
            create_model("movinet_a0", 5, internal_state=True)


def make_video(path: Path, seconds: int, fps: int) -> Path:
    from ops.prep.media import ffmpeg_exe

    subprocess.run([ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                    f"testsrc=duration={seconds}:size=64x48:rate={fps}", "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


def test_stream_ops_read_frames_and_report_every_second(tmp_path):
    from ops.common.errors import UserError
    from ops.apps.stream import frame_tensor, read_frames, stream_predictions
    from ops.data.transforms import Normalize

    video = make_video(tmp_path / "v.mp4", seconds=2, fps=10)
    frames = list(read_frames(str(video), 32, fps=5))
    assert len(frames) == 10 and frames[0].shape == (32, 32, 3) and frames[0].dtype.name == "uint8"
    model = tiny_stream()
    spec = model.input_spec
    normalize = Normalize(spec.mean, spec.std, spec.value_range)
    clip = torch.cat([normalize(frame_tensor(f)) for f in frames[:7]], dim=2)
    with torch.no_grad():
        best = model(clip)[0].softmax(-1).topk(3)
    for compiled in (True, False):
        preds = list(stream_predictions(model, iter(frames[:7]), fps=5, top_k=3, compiled=compiled))
        assert [p.frames for p in preds] == [5, 7] and preds[0].seconds == 1.0
        assert len(preds[-1].top) == 3 and sum(p for _, p in preds[-1].top) <= 1.0
        assert [i for i, _ in preds[-1].top] == best.indices.tolist()
        torch.testing.assert_close(torch.tensor([p for _, p in preds[-1].top]), best.values, atol=1e-5, rtol=0)
    with pytest.raises(UserError):
        list(read_frames(str(tmp_path / "missing.mp4"), 32, fps=5))


def test_load_stream_model_released_state_dict_and_base_refused(tmp_path):
    from ops.common.errors import UserError
    from ops.apps.stream import load_stream_model

    manifest = json.loads((FIXTURES / "movinet_a0_stream.json").read_text())["keys"]
    ckpt = tmp_path / "modelA0_stream_statedict_v3"
    torch.save({key: torch.zeros(shape, dtype=torch.long if key.endswith("num_batches_tracked") else torch.float)
                for key, shape in manifest}, ckpt)
    model = load_stream_model("movinet_a0_stream", str(ckpt), None, []).model
    assert model.get_classifier().out_channels == 600 and not model.training
    with pytest.raises(UserError):
        load_stream_model("movinet_a0", None, 5, [])


def test_stream_command_is_registered():
    from typer.testing import CliRunner

    from videorec_cli.main import app

    result = CliRunner().invoke(app, ["stream", "--help"])
    assert result.exit_code == 0 and "--weights" in result.output and "--top-k" in result.output


@pytest.mark.parametrize("positional", [False, True])
def test_compiled_stream_step_equals_eager_model(positional):
    from ops.apps.stream import compile_stream_step

    model = tiny_stream(positional_encoding=positional)
    frames = torch.rand(2, 3, 6, 32, 32)
    state = model.init_state(2, 32)
    step = compile_stream_step(model, frames[:, :, :1], state)
    eager_state, compiled_state = state, state
    with torch.inference_mode():
        for t in range(6):
            eager, eager_state = model(frames[:, :, t:t + 1], eager_state)
            compiled, compiled_state = step(frames[:, :, t:t + 1], compiled_state)
            torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=0)
    assert compiled_state.keys() == eager_state.keys() and compiled_state["frames"].tolist() == [6.0, 6.0]
    with pytest.raises(ValueError, match="eval mode"):
        compile_stream_step(model.train(), frames[:, :, :1], state)
