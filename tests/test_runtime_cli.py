"""`--runtime onnx` for predict and stream: an exported file gives the PyTorch checkpoint's
top-5 classes and probabilities (within the export tolerance); flags that do not apply to a
runtime are refused in one line naming what applies."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from archs.registry import create_model
from ops.apps.export import ExportSettings, build_model, export_model
from ops.apps.predict import PredictSettings, TimelineSettings, predict_timeline, predict_video
from ops.common.errors import UserError
from ops.common.options import GivenOptions
from ops.engine.checkpoints import model_metadata
from ops.prep.synthetic import encode_video, pick_encoder, render_video
from videorec_cli.main import app

ATOL = 1e-4
SIZE = 32
CLASSES = [f"class{i}" for i in range(7)]


def _checkpoint_and_export(root, arch: str, **options):
    """A seeded ``arch`` with 7 classes trained (so its file says) at 32 px, its checkpoint, and
    that checkpoint exported to ONNX at the same size."""
    torch.manual_seed(0)
    model = create_model(arch, 7, **options).eval()
    with torch.no_grad():  # spread the probabilities: no near-ties in the top-5
        model.get_classifier().weight.mul_(20)
    ckpt = root / f"{arch}.pth"
    spec = model.input_spec.replace(crop_size=SIZE, scale_size=SIZE)
    torch.save({"model": model.state_dict(), **model_metadata(model, 7, CLASSES, spec)}, ckpt)
    exported = build_model(None, str(ckpt), None, GivenOptions(), say=lambda _: None)
    out = root / f"{arch}.onnx"
    export_model(exported, ExportSettings(output=str(out), weights=str(ckpt)), log=lambda _: None)
    return ckpt, out


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("runtime")
    frames = render_video("grow", np.random.default_rng(0), frames=30, size=48)
    video = root / "clip.mp4"
    encode_video(frames, video, fps=10, encoder=pick_encoder())
    classes = root / "classes.txt"
    classes.write_text("".join(f"{name}\n" for name in CLASSES))
    return {"video": video, "classes": classes, "root": root,
            "tsm": _checkpoint_and_export(root, "tsm_mbv2", num_segments=4, width_mult=0.25),
            "stream": _checkpoint_and_export(root, "movinet_a0_stream")}


def _same_top(ours, theirs):
    assert [name for name, _ in ours] == [name for name, _ in theirs]
    np.testing.assert_allclose([p for _, p in ours], [p for _, p in theirs], atol=ATOL)


@pytest.mark.parametrize("which", ["tsm", "stream"])
def test_predict_onnx_gives_the_checkpoints_top5(files, which):
    ckpt, onnx = files[which]
    torch_top = predict_video(PredictSettings(video=files["video"], weights=str(ckpt), device="cpu"))
    onnx_top = predict_video(PredictSettings(video=files["video"], weights=str(onnx), runtime="onnx",
                                             classes=files["classes"], device="cpu"))
    assert len(torch_top) == 5 and {name for name, _ in torch_top} <= set(CLASSES)
    _same_top(torch_top, onnx_top)
    done = CliRunner().invoke(app, ["predict", str(files["video"]), "--weights", str(onnx), "--runtime", "onnx",
                                    "--classes", str(files["classes"]), "--top-k", "3"])
    assert done.exit_code == 0, done.output
    assert [line.split()[-1] for line in done.output.strip().splitlines()] == [n for n, _ in torch_top[:3]]


def _rows(path):
    return [[(c["class"], c["prob"]) for c in row["top"]] for row in json.loads(path.read_text())["rows"]]


def test_stream_onnx_gives_the_checkpoints_running_top5(files, tmp_path):
    ckpt, onnx = files["stream"]
    runner = CliRunner()
    common = [str(files["video"]), "--every", "1", "--classes", str(files["classes"]), "--device", "cpu"]
    by_torch = runner.invoke(app, ["stream", *common, "--weights", str(ckpt), "-o", str(tmp_path / "torch")])
    by_onnx = runner.invoke(app, ["stream", *common, "--weights", str(onnx), "--runtime", "onnx",
                                  "-o", str(tmp_path / "onnx")])
    assert by_torch.exit_code == 0 and by_onnx.exit_code == 0, by_torch.output + by_onnx.output
    assert "32x32 frames at 5 fps (onnx)" in by_onnx.output
    ours, theirs = _rows(tmp_path / "torch" / "timeline.json"), _rows(tmp_path / "onnx" / "timeline.json")
    assert len(ours) == len(theirs) == 3  # a 3 s video, a report every second
    for a, b in zip(ours, theirs):
        _same_top(a, b)


@pytest.mark.parametrize("which, window", [("tsm", 1.0), ("stream", None)])
def test_timeline_under_onnx_matches_torch(files, tmp_path, which, window):
    found = {}
    for runtime, weights in zip(["torch", "onnx"], files[which]):
        settings = PredictSettings(video=files["video"], weights=str(weights), runtime=runtime, device="cpu",
                                   classes=files["classes"])
        timeline, _ = predict_timeline(settings, TimelineSettings(output=tmp_path / runtime, window=window, stride=1.0),
                                       say=lambda _: None)
        found[runtime] = np.stack([row.probs for row in timeline.rows])
        assert json.loads((tmp_path / runtime / "timeline.json").read_text())["runtime"] == runtime
    assert found["torch"].shape == (3, 7)  # 3 windows of 1 s, or 3 reports of a causal pass
    np.testing.assert_allclose(found["onnx"], found["torch"], atol=ATOL)


@pytest.mark.parametrize("args, message", [
    (["predict", "{video}", "--weights", "{tsm_onnx}", "--runtime", "onnx", "-m", "dropout=0.1"],
     "-m/--model-option does not apply to --runtime onnx"),
    (["predict", "{video}", "--weights", "{tsm_onnx}", "--runtime", "onnx", "--test-segments", "2"],
     "--test-segments does not apply to --runtime onnx"),
    (["stream", "{video}", "--weights", "{stream_onnx}", "--runtime", "onnx", "--no-jit"],
     "--jit/--no-jit does not apply to --runtime onnx"),
    (["stream", "{video}", "--runtime", "onnx"], "--runtime onnx needs --weights FILE.onnx"),
    (["stream", "{video}", "--weights", "{tsm_onnx}", "--runtime", "onnx"], "tsm_mbv2 is not a stream model"),
    (["predict", "{video}", "--weights", "{tsm_onnx}"], "is an ONNX file: run it with --runtime onnx"),
    (["predict", "{video}", "--weights", "{tsm_onnx}", "--runtime", "tensorrt"], "choose one of torch, onnx"),
])
def test_flags_that_do_not_apply_to_the_runtime_are_refused(files, args, message):
    names = {"video": files["video"], "tsm_onnx": files["tsm"][1], "stream_onnx": files["stream"][1]}
    done = CliRunner().invoke(app, [a.format(**names) for a in args])
    assert isinstance(done.exception, UserError), done.output
    assert message in str(done.exception) and "\n" not in str(done.exception)


def test_onnx_cuda_is_the_cuda_provider_or_one_clear_error(files):
    import onnxruntime as ort

    settings = PredictSettings(video=files["video"], weights=str(files["tsm"][1]), runtime="onnx", device="cuda")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert len(predict_video(settings)) == 5
    else:
        with pytest.raises(UserError, match="no provider for device 'cuda'.*use --device cpu"):
            predict_video(settings)
