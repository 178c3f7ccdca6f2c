"""Streaming recognition (`videorec stream`): frames in one at a time, running top-k out.

A video file, URL or capture device is decoded by one ffmpeg process into a raw RGB pipe,
resized (short side to the model's crop, then centre crop) and resampled to a fixed frame rate
by ffmpeg itself; each frame goes through a stream model (``model.init_state`` /
``logits, state = model(frame, state)``, e.g. ``movinet_a0_stream``), so memory stays constant
however long the video is.

One frame of a small stream model costs more in Python and operator dispatch than in arithmetic
(MoViNet-A0: about 70% of a 172x172 frame on one core), so by default the per-frame step is
traced with TorchScript once, for the batch and frame size of the stream, and frozen
(:func:`compile_stream_step`): the same logits, about 1.7x faster on CPU.
"""
from __future__ import annotations

import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from archs.registry import InputSpec, create_model
from dataset_configs import read_class_names
from ops.apps.runtime import OnnxStreamStep, class_names_of, load_onnx, onnx_device
from ops.common.errors import UserError
from ops.common.options import GivenOptions, given_options
from ops.data.transforms import Normalize
from ops.engine.checkpoints import LoadedModel, load_model
from ops.engine.distributed import pick_device
from ops.prep.media import ffmpeg_exe

DEFAULT_ARCH = "movinet_a0_stream"

RELEASED_NUM_CLASSES = 600  # the released MoViNet weights are Kinetics-600 classifiers

State = Dict[str, torch.Tensor]
StreamStep = Callable[[torch.Tensor, State], Tuple[torch.Tensor, State]]


@dataclass(frozen=True)
class Prediction:
    """The running prediction after ``frames`` frames (``seconds`` of video)."""

    frames: int
    seconds: float
    top: List[Tuple[int, float]]  # (class index, probability), best first
    probs: np.ndarray  # (K,) every class's probability


def ffmpeg_command(source: str, size: int, fps: Optional[float], input_format: Optional[str] = None) -> List[str]:
    """ffmpeg arguments writing ``source`` as raw RGB24 ``size`` x ``size`` frames to stdout."""
    filters = [f"fps={fps:g}"] if fps else []
    filters += [f"scale={size}:{size}:force_original_aspect_ratio=increase", f"crop={size}:{size}"]
    fmt = ["-f", input_format] if input_format else []
    return [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", *fmt, "-i", source,
            "-vf", ",".join(filters), "-an", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]


def read_frames(source: str, size: int, *, fps: Optional[float] = None,
                input_format: Optional[str] = None) -> Iterator[np.ndarray]:
    """Frames of ``source`` as (size, size, 3) uint8 RGB arrays, one in memory at a time.

    ``source``: anything ffmpeg opens (a file, a URL, ``/dev/video0`` with ``input_format='v4l2'``).
    ``fps``: resample to this frame rate (None: every decoded frame). Raises :class:`UserError`
    when ffmpeg fails before the first frame.
    """
    frame_bytes = size * size * 3
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(ffmpeg_command(source, size, fps, input_format), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=errors)
        count = 0
        try:
            while True:
                data = proc.stdout.read(frame_bytes)
                if len(data) < frame_bytes:
                    break
                count += 1
                yield np.frombuffer(data, dtype=np.uint8).reshape(size, size, 3)
        finally:
            proc.stdout.close()
            if proc.poll() is None:
                proc.kill()
            code = proc.wait()
        if count == 0 and code != 0:
            errors.seek(0)
            lines = errors.read().decode(errors="replace").strip().splitlines()
            raise UserError(f"{source}: ffmpeg could not read it ({lines[-1] if lines else f'exit code {code}'})")


def frame_tensor(frame: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 RGB (read-only, from the pipe) -> a (1, 3, 1, H, W) uint8 tensor of its own;
    :class:`~ops.data.transforms.Normalize` makes it the model's input."""
    return torch.from_numpy(frame.copy()).permute(2, 0, 1)[None, :, None]


def default_fps(spec: InputSpec) -> float:
    """Frame rate the model was trained at: the clips sample 25 fps video every ``dense_stride`` frames."""
    return 25.0 / spec.dense_stride


def load_stream_model(arch: Optional[str], weights: Optional[str], num_classes: Optional[int],
                      class_names: Sequence[str], options: Optional[GivenOptions] = None) -> LoadedModel:
    """A stream model in eval mode with the input spec and class names to use it with:
    ``weights`` loaded strictly (the checkpoint's model, options, classes and input spec), or
    random weights when None.

    The model is ``arch``, else the checkpoint's, else ``movinet_a0_stream`` (random weights).
    The class count is ``num_classes``, else the checkpoint's, else the length of ``class_names``,
    else 600 (the released MoViNet weights). ``class_names`` (a classes file) win over the
    checkpoint's names.
    """
    options = options or GivenOptions()
    fallback = num_classes or len(class_names) or RELEASED_NUM_CLASSES
    if weights is None:
        name = options.check(arch or DEFAULT_ARCH)
        model = create_model(name, fallback, **options.values)
        loaded = LoadedModel(model, model.input_spec, [])
    else:
        loaded = load_model(weights, arch=arch, num_classes=num_classes, options=options, fallback_classes=fallback,
                            classes_fix="drop --num-classes (the checkpoint says its class count)")
    if not is_stream(loaded.model):
        raise UserError(f"{loaded.model.arch_name} is not a stream model; "
                        "`videorec models 'movinet_*_stream'` lists them")
    loaded.model.eval()
    if class_names:
        loaded.class_names = list(class_names)
    return loaded


@dataclass
class StreamRunner:
    """A stream model ready to feed: a torch module on ``device``, or an ONNX Runtime
    :class:`~ops.apps.runtime.OnnxStreamStep` (CPU tensors in and out, ``device`` 'cpu')."""

    model: object
    spec: InputSpec
    class_names: List[str]
    notes: List[str]
    device: str


def load_stream_runner(runtime: str, arch: Optional[str], weights: Optional[str], num_classes: Optional[int],
                       classes: Optional[str], model_option: Sequence[str], device: str) -> StreamRunner:
    """The stream model of `videorec stream`: under ``runtime`` 'torch' :func:`load_stream_model`
    on ``device``; under 'onnx' the exported step ``weights`` (ONNX Runtime's CUDA provider for
    ``device`` cuda). ``classes`` (a classes file) wins over the names the weights store."""
    names = read_class_names(classes) if classes else []
    if runtime == "onnx":
        step = load_onnx(weights, device=onnx_device(device))
        if not isinstance(step, OnnxStreamStep):
            raise UserError(f"{weights}: {step.arch_name} is not a stream model; export one of "
                            "`videorec models 'movinet_*_stream'`")
        return StreamRunner(step, step.input_spec, names or class_names_of(step), [], "cpu")
    loaded = load_stream_model(arch, weights, num_classes, names, given_options({}, model_option))
    target = pick_device(0, device)
    return StreamRunner(loaded.model.to(target), loaded.spec, loaded.class_names, loaded.notes, str(target))


def is_stream(model: nn.Module) -> bool:
    """Whether ``model`` is a stream model (it has an explicit ``init_state``)."""
    try:
        model.init_state(1)
    except (AttributeError, ValueError):
        return False
    return True


class StateAsTuple(nn.Module):
    """``model(frame, state)`` with the state as positional tensors (what tracing takes)."""

    def __init__(self, model: nn.Module, keys: Sequence[str]) -> None:
        super().__init__()
        self.model, self.keys = model, tuple(keys)

    def forward(self, frame: torch.Tensor, *values: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        logits, state = self.model(frame, dict(zip(self.keys, values)))
        return (logits, *(state[key] for key in self.keys))


def compile_stream_step(model: nn.Module, frame: torch.Tensor, state: State) -> StreamStep:
    """``model``'s per-frame step traced with TorchScript and frozen (BatchNorm folded, weights
    constant), for frames shaped like ``frame`` (N, 3, 1, H, W) and a state like ``state``.

    The returned ``step(frame, state) -> (logits, state)`` gives the eager model's results; it
    holds the weights as they are now (compile again after changing them). The model must be in
    eval mode.
    """
    if model.training:
        raise ValueError("compile_stream_step needs a model in eval mode")
    keys = list(state)
    with torch.no_grad(), warnings.catch_warnings():
        # the trace fixes the frame size and batch (shape-dependent padding), as intended here;
        # TorchScript is deprecated upstream in favour of torch.compile, which needs a C++ compiler
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(StateAsTuple(model, keys).eval(), (frame, *state.values()), check_trace=False)
        traced = torch.jit.freeze(traced)

    def step(x: torch.Tensor, current: State) -> Tuple[torch.Tensor, State]:
        logits, *values = traced(x, *(current[key] for key in keys))
        return logits, dict(zip(keys, values))

    return step


def stream_predictions(model: nn.Module, frames: Iterable[np.ndarray], *, fps: float, top_k: int = 5,
                       every: float = 1.0, device: str = "cpu", compiled: bool = True,
                       spec: Optional[InputSpec] = None) -> Iterator[Prediction]:
    """Feed ``frames`` one at a time, keeping the stream state; yield the running top-k
    every ``every`` seconds of video (``fps`` frames per second) and after the last frame.
    ``compiled``: run the step traced (:func:`compile_stream_step`) rather than eagerly.
    ``spec``: the input spec the frames are normalised by (default: the model's; a checkpoint's
    trained spec from :func:`load_stream_model`)."""
    spec = spec or model.input_spec
    normalize = Normalize(spec.mean, spec.std, spec.value_range, spec.channel_order)
    period = fps * every  # frames between two reports
    state, step, logits, count, reported = None, model, None, 0, 0
    for count, frame in enumerate(frames, start=1):
        x = normalize(frame_tensor(frame).to(device))
        if state is None:
            state = model.init_state(1, tuple(x.shape[-2:]), device=device)
            step = compile_stream_step(model, x, state) if compiled else model
        with torch.inference_mode():
            logits, state = step(x, state)
        if int(count / period) > int((count - 1) / period):
            reported = count
            yield _prediction(logits, count, fps, top_k)
    if logits is not None and reported != count:
        yield _prediction(logits, count, fps, top_k)


def _prediction(logits: torch.Tensor, count: int, fps: float, top_k: int) -> Prediction:
    probs = logits[0].float().softmax(-1)
    values, indices = probs.topk(min(top_k, probs.numel()))
    return Prediction(count, count / fps, list(zip(indices.tolist(), values.tolist())), probs.cpu().numpy())
