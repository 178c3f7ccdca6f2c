"""ONNX Runtime inference with the call shapes of our torch models.

A file written by ``videorec export --format onnx`` carries its manifest (what
:func:`ops.apps.export.build_manifest` writes: the input spec, the input and output names,
shapes and dtypes, and for stream models the state tensors and their initial values) in its
ONNX metadata and in a ``FILE.json`` beside it. :func:`load_onnx` opens it as

* :class:`OnnxClassifier`: ``model(clip (N, C, T, H, W)) -> logits (N, K)``, or
* :class:`OnnxStreamStep`: ``state = step.init_state(N)``; ``logits, state = step(frame (N, 3, 1, H, W), state)``,

taking and returning torch tensors (CPU), so code written for our models runs them unchanged
(both carry ``input_spec`` and ``arch_name``; ``ops.apps.stream.stream_predictions(step, ...,
compiled=False)`` streams through ONNX Runtime).
Sessions run on the CPU provider, or CUDA's where ONNX Runtime has it and ``device='cuda'``.
`videorec predict` / `stream` pick the runtime with ``--runtime torch|onnx``
(:func:`check_runtime_flags` refuses the flags that shape a PyTorch model under onnx).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import torch

from archs.registry import InputSpec
from ops.common.errors import UserError

MANIFEST_KEY = "videorec.manifest"  # ONNX metadata_props key holding the manifest JSON

State = Dict[str, torch.Tensor]


def manifest_path(path: Union[str, Path]) -> Path:
    """Where the manifest of an exported ``path`` lies: ``path`` + ``.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def providers(device: str = "cpu") -> List[str]:
    """ONNX Runtime execution providers for ``device`` (``cpu`` or ``cuda``), best first."""
    import onnxruntime as ort

    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    raise UserError(f"ONNX Runtime has no provider for device {device!r} here (available: "
                    f"{', '.join(ort.get_available_providers())}); use --device cpu")


RUNTIMES = ("torch", "onnx")


def onnx_device(device: str) -> str:
    """``--device`` for ONNX Runtime: ``auto`` is CUDA where ONNX Runtime has its provider and a
    GPU is visible, else the CPU; ``cpu`` / ``cuda`` as given (see :func:`providers`)."""
    if device != "auto":
        return device
    import onnxruntime as ort

    return "cuda" if "CUDAExecutionProvider" in ort.get_available_providers() and torch.cuda.is_available() else "cpu"


def check_runtime_flags(runtime: str, weights: Optional[str], torch_only: Dict[str, bool], onnx_takes: str) -> None:
    """Refuse a flag that does not apply to ``runtime``, in one line naming what applies.

    torch_only: flag -> whether the user set it (flags that shape a PyTorch model, which an
    exported file fixes); onnx_takes: the flags that apply with ``--runtime onnx``.
    """
    if runtime not in RUNTIMES:
        raise UserError(f"--runtime {runtime!r}: choose one of {', '.join(RUNTIMES)}")
    if runtime == "torch":
        if weights is not None and str(weights).endswith(".onnx"):
            raise UserError(f"--weights {weights} is an ONNX file: run it with --runtime onnx")
        return
    if weights is None:
        raise UserError("--runtime onnx needs --weights FILE.onnx (a file of `videorec export --format onnx`)")
    used = [flag for flag, is_set in torch_only.items() if is_set]
    if used:
        raise UserError(f"{used[0]} does not apply to --runtime onnx (the exported file fixes the model); "
                        f"with onnx: {onnx_takes}")


def class_names_of(model: "_OnnxModel") -> List[str]:
    """The class names an exported file's manifest records (none when it does not)."""
    return list(model.manifest.get("class_names") or [])


def open_session(path: Union[str, Path], *, threads: Optional[int] = None, device: str = "cpu"):
    """An ``onnxruntime.InferenceSession`` of ``path`` with all graph optimisations on.

    threads: ``intra_op_num_threads`` (None: ONNX Runtime's default, one per core).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers(device))
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf/NoSuchFile types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: ONNX Runtime cannot load it ({first})") from None


def read_manifest(path: Union[str, Path], session=None) -> dict:
    """The manifest of an exported file: its ONNX metadata (when ``session`` is given), else the
    ``FILE.json`` beside it."""
    if session is not None:
        text = session.get_modelmeta().custom_metadata_map.get(MANIFEST_KEY)
        if text:
            return json.loads(text)
    side = manifest_path(path)
    if not side.is_file():
        raise UserError(f"{path}: no videorec manifest (neither in the file nor {side.name} beside it); "
                        "export it with `videorec export`")
    try:
        return json.loads(side.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{side}: not a valid manifest ({exc})") from None


def manifest_spec(manifest: dict) -> InputSpec:
    """The :class:`InputSpec` a manifest records."""
    return InputSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in manifest["input_spec"].items()})


class _OnnxModel:
    """An ONNX Runtime session with its manifest (``arch_name``, ``input_spec``, ``num_classes``)."""

    def __init__(self, session, manifest: dict) -> None:
        self.session, self.manifest = session, manifest
        self.arch_name: str = manifest["arch"]
        self.num_classes: int = manifest["num_classes"]
        self.input_spec = manifest_spec(manifest)


class OnnxClassifier(_OnnxModel):
    """``model(clip)`` for an exported clip classifier: float (N, C, T, H, W) -> logits (N, K)."""

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        (logits,) = self.session.run(None, {self.manifest["inputs"][0]["name"]: _numpy(clip)})
        return torch.from_numpy(logits)


class OnnxStreamStep(_OnnxModel):
    """One frame of an exported stream model, its state explicit::

        state = step.init_state(1)
        logits, state = step(frame, state)    # frame (N, 3, 1, H, W) -> logits (N, K)

    The state keys are the torch model's (``model.init_state``), so the two can swap states.
    """

    def __init__(self, session, manifest: dict) -> None:
        super().__init__(session, manifest)
        stream = self.manifest["stream"]
        self.frame_input: str = stream["frame_input"]
        self.keys: List[str] = [entry["key"] for entry in stream["state"]]
        self._inputs = [entry["input"] for entry in stream["state"]]
        self._initial = {entry["key"]: entry for entry in stream["state"]}

    def init_state(self, batch_size: int = 1, frame_size: Union[int, Tuple[int, int], None] = None, *,
                   device: Union[str, torch.device, None] = None, dtype: Optional[torch.dtype] = None) -> State:
        """The state before the first frame (the torch model's signature): each tensor's recorded
        initial value (zeros or values, the same for every stream of the batch), repeated
        ``batch_size`` times. The file is exported for one frame size: another raises ValueError;
        ``device`` / ``dtype`` other than CPU float32 do too (ONNX Runtime takes CPU arrays here)."""
        size = self.manifest["inputs"][0]["shape"][-2:]
        if frame_size is not None and list((frame_size, frame_size) if isinstance(frame_size, int) else frame_size) != size:
            raise ValueError(f"{self.arch_name} was exported for {size[0]}x{size[1]} frames, not {frame_size}")
        if torch.device(device or "cpu").type != "cpu" or dtype not in (None, torch.float32):
            raise ValueError("an ONNX Runtime stream step keeps its state as CPU float32 tensors")
        state = {}
        for key, entry in self._initial.items():
            shape = [batch_size, *entry["shape"][1:]]
            kind = getattr(torch, entry["dtype"])
            value = entry["initial"]
            state[key] = torch.zeros(shape, dtype=kind) if value == "zeros" else \
                torch.tensor(value, dtype=kind).expand(shape).clone()
        return state

    def __call__(self, frame: torch.Tensor, state: State) -> Tuple[torch.Tensor, State]:
        feeds = {self.frame_input: _numpy(frame)}
        feeds.update((name, _numpy(state[key])) for name, key in zip(self._inputs, self.keys))
        logits, *values = self.session.run(None, feeds)
        return torch.from_numpy(logits), {key: torch.from_numpy(v) for key, v in zip(self.keys, values)}


def load_onnx(path: Union[str, Path], *, threads: Optional[int] = None,
              device: str = "cpu") -> Union[OnnxClassifier, OnnxStreamStep]:
    """An exported ONNX file as :class:`OnnxStreamStep` (stream models) or :class:`OnnxClassifier`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such ONNX file")
    session = open_session(path, threads=threads, device=device)
    manifest = read_manifest(path, session)
    return (OnnxStreamStep if "stream" in manifest else OnnxClassifier)(session, manifest)


def _numpy(x: Union[torch.Tensor, np.ndarray]) -> np.ndarray:
    """A contiguous CPU numpy array of ``x``: a view, without a copy, of a contiguous CPU tensor
    (the common case, checked first: a stream feeds about 60 state tensors per frame)."""
    if isinstance(x, np.ndarray):
        return np.ascontiguousarray(x)
    if x.device.type == "cpu" and not x.requires_grad and x.is_contiguous():
        return x.numpy()
    return x.detach().cpu().contiguous().numpy()
