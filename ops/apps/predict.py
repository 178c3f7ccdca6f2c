"""One video in, top-k classes out (`videorec predict`): one centre clip, or a timeline of windows.

The model runs under PyTorch (a checkpoint, ``runtime='torch'``) or ONNX Runtime (a file of
`videorec export`, ``runtime='onnx'``); either way its input spec (sampling, size,
normalisation) and class count come from the file.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Mapping, Optional, Tuple, Union

import numpy as np
import torch
from torch import nn

from archs.registry import InputSpec
from dataset_configs import read_class_names
from ops.apps.runtime import OnnxClassifier, OnnxStreamStep, class_names_of, load_onnx, onnx_device
from ops.common.errors import UserError
from ops.common.options import GivenOptions
from ops.data.dataset import SamplingSettings
from ops.data.sources import VIDEO_EXTENSIONS, SourceError, open_source, video_fps
from ops.data.transforms import ClipTransform

DEFAULT_WINDOW = 2.0  # seconds per window of a clip-model timeline


@dataclass
class PredictSettings:
    """What `videorec predict` was asked; model, classes and input spec come from the weights."""

    video: Path
    weights: str
    arch: Optional[str] = None
    num_classes: Optional[int] = None
    classes: Optional[Path] = None
    top_k: int = 5
    frame_template: str = "img_{:05d}.jpg"
    model_options: GivenOptions = field(default_factory=GivenOptions)
    device: str = "auto"
    runtime: str = "torch"


@dataclass
class TimelineSettings:
    """`--timeline`: windows of ``window`` seconds every ``stride`` seconds (a stream model: one
    causal pass reporting every ``stride``), written to ``output``; ``fps`` is the frame rate
    of a frame folder (a video file says its own)."""

    output: Path
    window: Optional[float] = None  # None: DEFAULT_WINDOW for clip models
    stride: float = 1.0
    fps: Optional[float] = None


@dataclass
class Predictor:
    """A loaded model and what it takes: ``model`` is a torch module on ``device``, an
    :class:`OnnxClassifier` or an :class:`OnnxStreamStep` (CPU tensors in and out)."""

    model: Union[nn.Module, OnnxClassifier, OnnxStreamStep]
    spec: InputSpec
    class_names: List[str]
    device: str
    stream: bool
    runtime: str

    @property
    def arch_name(self) -> str:
        return self.model.arch_name

    def name(self, index: int) -> str:
        return self.class_names[index] if index < len(self.class_names) else str(index)


def check_timeline_flags(timeline: bool, given: Mapping[str, bool]) -> None:
    """Flags of a timeline (``given``: flag -> set by the user) without ``--timeline``."""
    used = [flag for flag, is_set in given.items() if is_set]
    if used and not timeline:
        raise UserError(f"{used[0]} applies only with --timeline (one centre clip needs none of "
                        f"{', '.join(given)})")


def load_predictor(s: PredictSettings, say: Callable[[str], None] = print) -> Predictor:
    """The model of ``s.weights`` under ``s.runtime``, with its input spec and class names
    (``s.classes`` wins over the names the file stores)."""
    if s.runtime == "onnx":
        model = load_onnx(s.weights, device=onnx_device(s.device))
        names = read_class_names(s.classes) if s.classes else class_names_of(model)
        return Predictor(model, model.input_spec, names, "cpu", isinstance(model, OnnxStreamStep), "onnx")
    from ops.apps.stream import is_stream
    from ops.engine.checkpoints import load_model
    from ops.engine.distributed import pick_device

    loaded = load_model(s.weights, arch=s.arch, num_classes=s.num_classes, options=s.model_options,
                        classes_fix="drop --num-classes (the checkpoint says its class count)")
    for note in loaded.notes:
        say(note)
    device = pick_device(0, s.device)
    model = loaded.model.to(device).eval()
    names = read_class_names(s.classes) if s.classes else loaded.class_names
    return Predictor(model, loaded.spec, names, str(device), is_stream(model), "torch")


def centre_transform(spec: InputSpec) -> ClipTransform:
    """The centre-crop test transform of ``spec``."""
    return ClipTransform.of(spec)


def clip_logits(model, clip: torch.Tensor) -> torch.Tensor:
    """Logits (N, K) of a normalised clip (N, C, T, H, W); an ONNX stream step is fed it frame by
    frame from its initial state (what the torch stream model computes on a clip)."""
    if isinstance(model, OnnxStreamStep):
        state = model.init_state(clip.shape[0], tuple(clip.shape[-2:]))
        for t in range(clip.shape[2]):
            logits, state = model(clip[:, :, t:t + 1].contiguous(), state)
        return logits
    return model(clip)


def clip_classifier(p: Predictor) -> Callable[[torch.Tensor], np.ndarray]:
    """uint8 frames (T, H, W, 3) -> class probabilities (K,) of their centre crop."""
    transform = centre_transform(p.spec)

    def classify(frames: torch.Tensor) -> np.ndarray:
        views, _ = transform(frames, (0,))
        with torch.no_grad():
            logits = clip_logits(p.model, transform.normalize(views.to(p.device)))
        return logits.float().softmax(-1).mean(0).cpu().numpy()

    return classify


def open_video(s: PredictSettings):
    try:
        return open_source(s.video, s.frame_template)
    except SourceError as exc:
        raise UserError(str(exc)) from None


def predict_video(s: PredictSettings, say: Callable[[str], None] = print,
                  predictor: Optional[Predictor] = None) -> List[Tuple[str, float]]:
    """(class name, probability) of the ``top_k`` classes of one centre-crop clip of ``s.video``."""
    p = predictor or load_predictor(s, say)
    source = open_video(s)
    spec = p.spec
    sampling = SamplingSettings.of(spec)
    try:
        frames = source.read(sampling.indices(source.num_frames, None))
    except SourceError as exc:
        raise UserError(str(exc)) from None
    probs = clip_classifier(p)(frames)
    order = np.argsort(-probs, kind="stable")[:s.top_k]
    return [(p.name(int(i)), float(probs[i])) for i in order]


def source_fps(s: PredictSettings, t: TimelineSettings) -> float:
    """The frame rate of ``s.video``: a video file's own; a frame folder's from ``--fps``."""
    if Path(s.video).suffix.lower() in VIDEO_EXTENSIONS:
        if t.fps is not None:
            raise UserError(f"--fps applies to frame folders; {s.video} says its own frame rate")
        try:
            return video_fps(Path(s.video))
        except SourceError as exc:
            raise UserError(str(exc)) from None
    if t.fps is None:
        raise UserError(f"{s.video} is a frame folder: pass --fps (its frame rate)")
    return t.fps


def predict_timeline(s: PredictSettings, t: TimelineSettings, say: Callable[[str], None] = print,
                     predictor: Optional[Predictor] = None):
    """The :class:`~ops.apps.timeline.Timeline` of ``s.video``, written to ``t.output``;
    returns (timeline, written paths)."""
    from ops.apps.stream import default_fps, stream_predictions
    from ops.apps.timeline import Timeline, causal_timeline, resampled_frames, window_rows, write_timeline
    from ops.common.fileio import check_output_dir

    check_output_dir(t.output, "timeline folder", "choose another with -o")
    if t.stride <= 0 or (t.window is not None and t.window <= 0) or (t.fps is not None and t.fps <= 0):
        raise UserError("--window, --stride and --fps must be > 0 (seconds, frames per second)")
    p = predictor or load_predictor(s, say)
    if p.stream and t.window is not None:
        raise UserError(f"--window does not apply to {p.arch_name}: a stream model sees every frame since the start "
                        "(one causal pass); set how often it reports with --stride")
    fps = source_fps(s, t)
    source = open_video(s)
    settings = {"video": str(s.video), "arch": p.arch_name, "weights": str(s.weights), "runtime": p.runtime,
                "stride": t.stride, "video_fps": fps}
    if p.stream:
        rate = default_fps(p.spec)
        transform = centre_transform(p.spec)
        frames = resampled_frames(source, source.num_frames, fps, rate,
                                  lambda clip: transform(clip, (0,))[0][0].permute(1, 2, 3, 0))
        preds = stream_predictions(p.model, frames, fps=rate, top_k=s.top_k, every=t.stride, device=p.device,
                                   compiled=p.runtime == "torch", spec=p.spec)
        settings["model_fps"] = rate
        timeline = causal_timeline(preds, p.class_names, settings)
    else:
        window = t.window or DEFAULT_WINDOW
        settings["window"] = window
        if source.num_frames / fps < window:
            say(f"note: {s.video} is shorter than --window {window:g}: one window, the whole video")
        rows = window_rows(clip_classifier(p), source, source.num_frames, fps, p.spec, window, t.stride)
        timeline = Timeline(list(rows), p.class_names, False, settings)
    return timeline, write_timeline(timeline, t.output, s.top_k)
