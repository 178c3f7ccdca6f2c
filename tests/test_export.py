"""Export: each format round-trips with PyTorch (max |Δlogit| <= 1e-4), a stream model streams
in ONNX Runtime with its explicit state, the manifest matches the model, and a failing check
leaves no file behind."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from archs.registry import create_model
from ops.apps.export import CheckFailed, ExportSettings, export_model
from ops.apps.runtime import OnnxClassifier, OnnxStreamStep, load_onnx, manifest_path, read_manifest
from ops.common.errors import UserError
from videorec_cli.main import app

ATOL = 1e-4


def _export(model, tmp_path, fmt="onnx", suffix=None, **settings):
    out = tmp_path / f"model.{suffix or ('pt2' if fmt == 'exported-program' else fmt)}"
    return export_model(model.eval(), ExportSettings(output=str(out), format=fmt, **settings), log=lambda _: None)


@pytest.mark.parametrize("arch, options, size, frames", [
    ("tsm_r18", {"num_segments": 4}, 32, None),
    ("x3d_xs", {}, 32, 4),
    ("movinet_a0", {}, 32, 4),
])
def test_clip_models_round_trip_in_onnx_runtime(tmp_path, arch, options, size, frames):
    model = create_model(arch, 5, **options).eval()
    result = _export(model, tmp_path, size=size, num_frames=frames, dynamic_batch=True)
    assert result.max_abs_diff <= ATOL
    runtime = load_onnx(result.path, threads=1)
    assert isinstance(runtime, OnnxClassifier) and runtime.arch_name == arch
    clip = torch.rand(3, 3, frames or model.input_spec.num_frames, size, size)  # a batch the trace did not see
    with torch.no_grad():
        expected = model(clip)
    assert (runtime(clip) - expected).abs().max().item() <= ATOL


def test_dynamic_frames_of_a_3d_model(tmp_path):
    """Global pooling takes any frame count; the reference test head's window (the training
    frames) makes the graph depend on the frame count, and the self-check refuses that file."""
    with pytest.raises(CheckFailed, match="does not take a second frame count|exceeds --atol"):
        _export(create_model("x3d_xs", 5).eval(), tmp_path, size=32, num_frames=4, dynamic_frames=True)
    assert not list(tmp_path.glob("*.onnx"))
    model = create_model("x3d_xs", 5, test_head="global").eval()
    result = _export(model, tmp_path, size=32, num_frames=4, dynamic_frames=True)
    runtime = load_onnx(result.path, threads=1)
    clip = torch.rand(1, 3, 6, 32, 32)
    with torch.no_grad():
        assert (runtime(clip) - model(clip)).abs().max().item() <= ATOL
    assert runtime.manifest["inputs"][0]["shape"] == [1, 3, "frames", 32, 32]


@pytest.mark.parametrize("fmt", ["torchscript", "exported-program"])
def test_torch_formats_round_trip(tmp_path, fmt):
    model = create_model("tsn_r18", 5, num_segments=2).eval()
    result = _export(model, tmp_path, fmt=fmt, size=32)
    assert result.max_abs_diff <= ATOL
    clip = torch.rand(1, 3, 2, 32, 32)
    loaded = torch.jit.load(str(result.path)) if fmt == "torchscript" else torch.export.load(str(result.path)).module()
    with torch.no_grad():
        assert (loaded(clip) - model(clip)).abs().max().item() <= ATOL
    assert json.loads(result.manifest.read_text())["format"] == fmt


@pytest.fixture(scope="module")
def stream_export(tmp_path_factory):
    """movinet_a0_stream (7 classes) and its one-frame step exported to ONNX at 64x64."""
    torch.manual_seed(0)
    model = create_model("movinet_a0_stream", 7).eval()
    return model, _export(model, tmp_path_factory.mktemp("stream"), size=64)


def test_stream_step_in_onnx_runtime_gives_the_pytorch_stream_logits(stream_export):
    model, result = stream_export
    step = load_onnx(result.path, threads=1)
    assert isinstance(step, OnnxStreamStep)
    clip = torch.rand(1, 3, 8, 64, 64)
    with torch.no_grad():
        expected = model(clip)  # the whole clip at once, from the zero state
    state = step.init_state(1)
    for t in range(clip.shape[2]):
        logits, state = step(clip[:, :, t:t + 1], state)
    assert (logits - expected).abs().max().item() <= ATOL
    assert state["frames"].item() == 8


def test_stream_manifest_names_the_model_state(stream_export):
    model, result = stream_export
    manifest = read_manifest(result.path)
    state = model.init_state(1, 64)
    entries = manifest["stream"]["state"]
    assert [e["key"] for e in entries] == list(state)
    assert all(e["shape"] == list(state[e["key"]].shape) and e["initial"] == "zeros" for e in entries)
    assert [i["name"] for i in manifest["inputs"]] == ["frame", *(f"state.{k}" for k in state)]
    assert [o["name"] for o in manifest["outputs"]] == ["logits", *(f"next_state.{k}" for k in state)]
    assert manifest["input_spec"]["crop_size"] == 64 and manifest["input_spec"]["mean"] == [0.0, 0.0, 0.0]
    import onnx

    graph = onnx.load(str(result.path))
    assert [i.name for i in graph.graph.input] == [i["name"] for i in manifest["inputs"]]
    assert json.loads({p.key: p.value for p in graph.metadata_props}["videorec.manifest"])["arch"] == "movinet_a0_stream"


def test_failing_check_leaves_no_file(tmp_path):
    model = create_model("x3d_xs", 5).eval()
    with torch.no_grad():  # logits large enough that float reordering shows at a tiny tolerance
        model.get_classifier().weight.mul_(1e4)
    with pytest.raises(CheckFailed, match="exceeds --atol"):
        _export(model, tmp_path, size=32, num_frames=4, atol=1e-12)
    assert list(tmp_path.iterdir()) == []


def test_flags_that_do_not_apply_are_refused(tmp_path):
    with pytest.raises(UserError, match="--dynamic-frames does not apply to tsm_mbv2"):
        _export(create_model("tsm_mbv2", 5, num_segments=4), tmp_path, size=32, dynamic_frames=True)
    with pytest.raises(UserError, match="--frames does not apply to movinet_a0_stream"):
        _export(create_model("movinet_a0_stream", 5), tmp_path, size=32, num_frames=4)
    with pytest.raises(UserError, match=r"\.pt2"):
        _export(create_model("x3d_xs", 5), tmp_path, fmt="exported-program", suffix="ep", size=32)


def test_cli_exports_from_a_checkpoint(tmp_path):
    model = create_model("x3d_xs", 3).eval()
    ckpt = tmp_path / "best.pth"
    torch.save({"model": model.state_dict(), "arch": "x3d_xs", "num_classes": 3, "class_names": ["a", "b", "c"],
                "settings": {"model_options": {}}}, ckpt)
    out = tmp_path / "out" / "x3d.onnx"
    done = CliRunner().invoke(app, ["export", "--weights", str(ckpt), "-o", str(out), "--size", "32", "--frames", "4"])
    assert done.exit_code == 0, done.output
    assert "max |Δlogit|" in done.output and out.is_file() and manifest_path(out).is_file()
    runtime = load_onnx(out, threads=1)
    clip = torch.rand(1, 3, 4, 32, 32)
    with torch.no_grad():
        np.testing.assert_allclose(runtime(clip).numpy(), model(clip).numpy(), atol=ATOL)
    assert runtime.num_classes == 3 and runtime.manifest["class_names"] == ["a", "b", "c"]


def test_onnx_stream_step_drops_into_stream_predictions(stream_export):
    from ops.apps.stream import stream_predictions

    model, result = stream_export
    step = load_onnx(result.path, threads=1)
    frames = list(np.random.default_rng(0).integers(0, 255, (6, 64, 64, 3), dtype=np.uint8))
    ours = list(stream_predictions(model, frames, fps=2.0, top_k=3, compiled=False))
    theirs = list(stream_predictions(step, frames, fps=2.0, top_k=3, compiled=False))
    assert [p.frames for p in theirs] == [p.frames for p in ours] == [2, 4, 6]
    for a, b in zip(ours, theirs):
        assert [c for c, _ in a.top] == [c for c, _ in b.top]
        np.testing.assert_allclose([p for _, p in a.top], [p for _, p in b.top], atol=1e-5)
    with pytest.raises(ValueError, match="exported for 64x64"):
        step.init_state(1, 32)


def test_runtime_sessions_and_errors(stream_export, tmp_path):
    import onnxruntime as ort

    from ops.apps.runtime import providers

    _, result = stream_export
    assert load_onnx(result.path, threads=2).session.get_session_options().intra_op_num_threads == 2
    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert providers("cuda")[0] == "CUDAExecutionProvider"
    else:
        with pytest.raises(UserError, match="no provider for device 'cuda'"):
            providers("cuda")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(UserError, match="ONNX Runtime cannot load it"):
        load_onnx(bad)


class _RunningMax(torch.nn.Module):
    """AdaFocusV2's running max over segments, with the indices (ties: the latest)."""

    def forward(self, x):
        values, indices = x.cummax(dim=1)
        return values, indices


class _Deformable(torch.nn.Module):
    """MSN's deformable convolution: offsets from a conv, then torchvision's DeformConv2d."""

    def __init__(self):
        super().__init__()
        from torchvision.ops import DeformConv2d

        self.offset = torch.nn.Conv2d(4, 18, 3, padding=1)
        self.conv = DeformConv2d(4, 6, 3, padding=1)

    def forward(self, x):
        return (self.conv(x, self.offset(x)),)


@pytest.mark.parametrize("module, x", [
    (_RunningMax(), torch.tensor([[[1.0, 5.0], [3.0, 2.0], [3.0, 7.0], [0.0, 1.0]]])),
    (_Deformable(), torch.rand(1, 4, 8, 8)),
])
def test_operators_onnx_lacks_are_exported(tmp_path, module, x):
    from ops.apps.export import _write_onnx, compare, load_runner

    path = tmp_path / "op.onnx"
    with torch.no_grad():
        outputs = [f"out{i}" for i in range(len(module(x)))]
        _write_onnx(module.eval(), [x], path, ["x"], outputs, {}, {})
    worst, others, _ = compare(module, load_runner(path, "onnx"), [x], stream=False)
    assert worst <= ATOL and others <= ATOL
