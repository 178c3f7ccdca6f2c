"""`videorec export`: a zoo model as ONNX, TorchScript or a torch.export program, checked.

A clip model is exported as ``clip (N, C, T, H, W) -> logits (N, K)``; the batch and (for
3D models, whose frame count is free) the frame count can be left dynamic. A stream model
(``movinet_*_stream``) is exported as ONE frame step with its state explicit::

    inputs:  frame (N, 3, 1, H, W), state.<key> ...      (the keys of ``model.init_state``)
    outputs: logits (N, K),         next_state.<key> ...

so any runtime streams a video by feeding each step's ``next_state`` back as the next ``state``.

Every file travels with its manifest (:func:`build_manifest`): arch, classes, the input spec
(normalisation, size, frames), the inputs and outputs (names, shapes, dtypes, dynamic axes)
and, for stream models, each state tensor with its initial value. It is written beside the
file (``FILE.json``) and inside it (ONNX metadata_props, TorchScript / torch.export extra files).

ONNX files are traced with torch's TorchScript-based exporter (opset 20; no onnxscript needed),
with two operators ONNX lacks given here (torchvision's deformable convolution as ``DeformConv``,
``cummax`` unrolled), then simplified (:func:`simplify_onnx`).

The exporter checks its own output: it runs the written file (ONNX Runtime, ``torch.jit.load``,
``torch.export.load``) on a seeded sample (and, with a dynamic axis, on a second shape; a
stream on a few frames, feeding its state back) and compares with the PyTorch model. Beyond
``atol`` the file is removed and :class:`CheckFailed` raised; it is written under a temporary
name and renamed only after the check passes.
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from archs.registry import InputSpec, create_model, get_entry
from ops.apps.runtime import MANIFEST_KEY, manifest_path, open_session
from ops.apps.stream import StateAsTuple, is_stream
from ops.common.errors import UserError
from ops.common.fileio import check_output_dir, write_text_atomic
from ops.common.options import GivenOptions
from ops.engine.checkpoints import load_model

FORMATS = ("onnx", "torchscript", "exported-program")
# families whose models take any frame count (3D convolutions, global pooling over time);
# 2D segment models fold a fixed segment count into the batch
FRAME_FREE_FAMILIES = ("x3d", "vov3d", "movinet")
ONNX_OPSET = 20
STREAM_CHECK_FRAMES = 3  # frames fed through a stream step by the self-check

Runner = Callable[[Sequence[torch.Tensor]], List[torch.Tensor]]


class CheckFailed(UserError):
    """The exported file's outputs differ from PyTorch's beyond the tolerance."""


@dataclass
class ExportSettings:
    """What to export and how.

    batch_size / num_frames / size: the sample input (N, 3, T, size, size); ``num_frames``
    defaults to the model's frames (a stream step always takes one), ``size`` to its crop.
    dynamic_batch / dynamic_frames: leave those axes free in the file.
    """

    output: str
    format: str = "onnx"
    weights: Optional[str] = None  # recorded in the manifest
    batch_size: int = 1
    num_frames: Optional[int] = None
    size: Optional[int] = None
    dynamic_batch: bool = False
    dynamic_frames: bool = False
    atol: float = 1e-4
    seed: int = 0


@dataclass
class ExportResult:
    path: Path
    manifest: Path
    max_abs_diff: float


def build_model(arch: Optional[str], weights: Optional[str], num_classes: Optional[int], options: GivenOptions,
                say: Callable[[str], None] = print) -> nn.Module:
    """A model in eval mode: ``weights`` (a checkpoint path or a catalog name) rebuilt as they were
    trained (their arch, options and classes; ``model.input_spec`` the spec they were trained
    with; each flag that overrides them is said), or ``arch`` with random weights
    (``num_classes``, default 400)."""
    if weights is not None:
        loaded = load_model(weights, arch=arch, num_classes=num_classes, options=options)
        for note in loaded.notes:
            say(note)
        model = loaded.model
        model.input_spec = loaded.spec
        model.class_names = loaded.class_names  # recorded in the manifest
    elif arch is not None:
        model = create_model(options.check(arch), num_classes or 400, **options.values)
    else:
        raise UserError("name a model or pass --weights CKPT")
    return model.eval()


def frames_are_free(model: nn.Module) -> bool:
    return get_entry(model.arch_name).family in FRAME_FREE_FAMILIES


def sample_inputs(model: nn.Module, settings: ExportSettings) -> Tuple[List[str], List[torch.Tensor], List[str]]:
    """(input names, seeded sample tensors, output names) of the exported graph."""
    spec = model.input_spec
    size = settings.size or spec.crop_size
    gen = torch.Generator().manual_seed(settings.seed)
    # a dynamic batch is traced at 2 or more: tracers specialise an axis of size 1
    batch = max(settings.batch_size, 2) if settings.dynamic_batch else settings.batch_size
    if is_stream(model):
        frame = torch.rand(batch, 3, 1, size, size, generator=gen)
        state = model.init_state(batch, size)
        return (["frame", *(f"state.{k}" for k in state)], [frame, *state.values()],
                ["logits", *(f"next_state.{k}" for k in state)])
    frames = settings.num_frames or spec.num_frames
    return ["clip"], [torch.rand(batch, 3, frames, size, size, generator=gen)], ["logits"]


def check_settings(model: nn.Module, settings: ExportSettings) -> None:
    """Refuse what the model cannot do (one line naming what applies)."""
    if settings.format not in FORMATS:
        raise UserError(f"--format {settings.format!r}: choose one of {', '.join(FORMATS)}")
    stream = is_stream(model)
    if settings.dynamic_frames and (stream or not frames_are_free(model)):
        what = "a stream step takes one frame" if stream else "a 2D segment model has a fixed segment count " \
            "(set it with -m num_segments=N)"
        raise UserError(f"--dynamic-frames does not apply to {model.arch_name}: {what}")
    if settings.num_frames is not None and (stream or not frames_are_free(model)):
        what = "a stream step takes one frame" if stream else "set its segments with -m num_segments=N"
        raise UserError(f"--frames does not apply to {model.arch_name}: {what}")
    if settings.batch_size < 1 or settings.atol <= 0:
        raise UserError("--batch-size must be >= 1 and --atol > 0")
    if settings.format == "exported-program" and Path(settings.output).suffix != ".pt2":
        raise UserError(f"-o {settings.output}: torch.export programs are read back only from .pt2 files; "
                        "name it FILE.pt2")


def dynamic_axes(names: Sequence[str], outputs: Sequence[str], stream: bool,
                 settings: ExportSettings) -> Dict[str, Dict[int, str]]:
    """ONNX ``dynamic_axes``: dim 0 of every tensor for a dynamic batch (a stream's state too),
    dim 2 of the clip for dynamic frames."""
    axes: Dict[str, Dict[int, str]] = {}
    if settings.dynamic_batch:
        for name in [*names, *outputs]:
            axes[name] = {0: "batch"}
    if settings.dynamic_frames and not stream:
        axes.setdefault("clip", {})[2] = "frames"
    return axes


def exported_spec(model: nn.Module, sample: torch.Tensor, stream: bool) -> InputSpec:
    """The model's input spec at the exported frame size (the test scale follows the crop) and,
    for a 3D clip model, the exported frame count."""
    spec = model.input_spec
    size = int(sample.shape[-1])
    spec = spec.replace(crop_size=size, scale_size=round(size * spec.scale_size / spec.crop_size))
    if not stream and frames_are_free(model):
        spec = spec.replace(num_segments=int(sample.shape[2]) // spec.frames_per_segment)
    return spec


def build_manifest(model: nn.Module, settings: ExportSettings, names: Sequence[str],
                   inputs: Sequence[torch.Tensor], outputs: Sequence[str],
                   sample_outputs: Sequence[torch.Tensor]) -> dict:
    """Everything a runtime needs to feed the file: see the module docstring."""
    stream = is_stream(model)
    axes = dynamic_axes(names, outputs, stream, settings)

    def describe(name: str, tensor: torch.Tensor) -> dict:
        shape = [axes.get(name, {}).get(i, d) for i, d in enumerate(tensor.shape)]
        return {"name": name, "shape": shape, "dtype": str(tensor.dtype).replace("torch.", "")}

    manifest = {
        "format": settings.format,
        "arch": model.arch_name,
        "num_classes": int(sample_outputs[0].shape[-1]),
        "class_names": list(getattr(model, "class_names", [])),
        "model_options": dict(getattr(model, "model_options", {})),
        "weights": settings.weights,
        "input_spec": exported_spec(model, inputs[0], stream).__dict__,
        "inputs": [describe(n, t) for n, t in zip(names, inputs)],
        "outputs": [describe(n, t) for n, t in zip(outputs, sample_outputs)],
    }
    if stream:
        initial = model.init_state(1, int(inputs[0].shape[-1]))
        manifest["stream"] = {
            "frame_input": names[0],
            "logits_output": outputs[0],
            "state": [{"key": key, "input": n_in, "output": n_out, "shape": entry["shape"], "dtype": entry["dtype"],
                       "initial": "zeros" if not initial[key].any() else initial[key][0].tolist()}
                      for key, n_in, n_out, entry in zip(initial, names[1:], outputs[1:], manifest["inputs"][1:])],
            "usage": "feed each step's next_state.<key> back as state.<key>; start from 'initial' "
                     "(broadcast over the batch)",
        }
    return manifest


def _deform_conv2d_symbolic(g, x, weight, offset, mask, bias, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
                            weight_groups, offset_groups, use_mask):
    """``torchvision::deform_conv2d`` (MSN's deformable convolutions) as ONNX ``DeformConv`` (opset 19):
    the same offset layout ((dy, dx) per kernel tap and offset group)."""
    from torch.onnx import symbolic_helper

    def const(value, name: str) -> int:
        return symbolic_helper._get_const(value, "i", name)

    inputs = [x, weight, offset, bias] + ([mask] if const(use_mask, "use_mask") else [])
    ph, pw = const(pad_h, "pad_h"), const(pad_w, "pad_w")
    return g.op("DeformConv", *inputs, strides_i=[const(stride_h, "stride_h"), const(stride_w, "stride_w")],
                pads_i=[ph, pw, ph, pw], dilations_i=[const(dil_h, "dil_h"), const(dil_w, "dil_w")],
                group_i=const(weight_groups, "weight_groups"), offset_group_i=const(offset_groups, "offset_groups"))


def _cummax_symbolic(g, x, dim):
    """``aten::cummax`` (AdaFocusV2's running max over segments), which ONNX lacks, unrolled over
    its axis (static in the trace): values[i] = max(values[i-1], x[i]); indices[i] = i where
    x[i] >= values[i-1] (the latest maximum, as torch), else indices[i-1]."""
    from torch.onnx import symbolic_helper

    axis = symbolic_helper._get_const(dim, "i", "dim")
    sizes = symbolic_helper._get_tensor_sizes(x)
    axis = axis % len(sizes)

    def const(value) -> object:
        return g.op("Constant", value_t=torch.tensor(value))

    values, indices = [], []
    for i in range(sizes[axis]):
        item = g.op("Slice", x, const([i]), const([i + 1]), const([axis]))
        here = g.op("Expand", const(i), g.op("Shape", item))
        if i == 0:
            values.append(item)
            indices.append(here)
            continue
        newer = g.op("GreaterOrEqual", item, values[-1])
        values.append(g.op("Max", values[-1], item))
        indices.append(g.op("Where", newer, here, indices[-1]))
    return g.op("Concat", *values, axis_i=axis), g.op("Concat", *indices, axis_i=axis)


def _write_onnx(module: nn.Module, inputs: Sequence[torch.Tensor], path: Path, names: Sequence[str],
                outputs: Sequence[str], axes: Dict[str, Dict[int, str]], manifest: dict) -> None:
    import onnx

    torch.onnx.register_custom_op_symbolic("torchvision::deform_conv2d", _deform_conv2d_symbolic, 19)
    torch.onnx.register_custom_op_symbolic("aten::cummax", _cummax_symbolic, 12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter is deprecated upstream; tracer warnings
        torch.onnx.export(module, tuple(inputs), str(path), dynamo=False, opset_version=ONNX_OPSET,
                          input_names=list(names), output_names=list(outputs), dynamic_axes=axes or None,
                          do_constant_folding=True)
    graph = simplify_onnx(path)
    entry = graph.metadata_props.add()
    entry.key, entry.value = MANIFEST_KEY, json.dumps(manifest)
    onnx.save(graph, str(path))


def simplify_onnx(path: Path):
    """The graph at ``path`` as ONNX Runtime's basic optimisations leave it (standard ONNX only, for
    any runtime: constants folded, including the shape arithmetic the trace recorded, redundant
    nodes removed), with every transpose that moves only size-1 axes made a reshape (a stream
    step's (N, C, 1, H, W) <-> (N, 1, C, H, W) swaps: a copy each, about 0.8 ms of MoViNet-A0's
    5 ms frame on one thread). Returns the ``onnx.ModelProto``."""
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(path)
    ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    graph = onnx.load(str(path))
    shapes = _static_shapes(graph)
    nodes = []
    for node in graph.graph.node:
        shape = shapes.get(node.input[0]) if node.op_type == "Transpose" else None
        perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
        if shape is not None and perm is not None and \
                [a for a in perm if shape[a] != 1] == [a for a in range(len(shape)) if shape[a] != 1]:
            target = onnx.numpy_helper.from_array(np.array([shape[a] for a in perm], np.int64), f"{node.output[0]}.shape")
            graph.graph.initializer.append(target)
            node = onnx.helper.make_node("Reshape", [node.input[0], target.name], list(node.output), name=node.name)
        nodes.append(node)
    del graph.graph.node[:]
    graph.graph.node.extend(nodes)
    return graph


def _static_shapes(graph) -> Dict[str, List[int]]:
    """Tensor name -> shape, for the tensors whose every dimension ONNX shape inference knows."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(graph)
    shapes = {}
    for info in [*inferred.graph.input, *inferred.graph.value_info]:
        dims = info.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[info.name] = [d.dim_value for d in dims]
    return shapes


def _write_torchscript(module: nn.Module, inputs: Sequence[torch.Tensor], path: Path, manifest: dict) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings: shapes fixed by the trace, as intended
        traced = torch.jit.freeze(torch.jit.trace(module, tuple(inputs), check_trace=False))
        torch.jit.save(traced, str(path), _extra_files={MANIFEST_KEY: json.dumps(manifest)})


def _write_program(module: nn.Module, inputs: Sequence[torch.Tensor], path: Path,
                   axes: Dict[str, Dict[int, str]], names: Sequence[str], manifest: dict) -> None:
    dims = {label: torch.export.Dim(label, min=1) for per in axes.values() for label in per.values()}
    shapes = tuple({i: dims[label] for i, label in axes.get(name, {}).items()} or None for name in names)
    try:
        program = torch.export.export(module, tuple(inputs), dynamic_shapes=shapes if axes else None)
    except Exception as exc:  # torch.export raises many types (UserError, GuardOnDataDependent ...)
        first = str(exc).strip().splitlines()[0][:200]
        raise UserError(f"{manifest['arch']}: torch.export cannot export it with these settings ({first}); "
                        "try --format onnx, or without --dynamic-batch/--dynamic-frames") from None
    torch.export.save(program, str(path), extra_files={MANIFEST_KEY: json.dumps(manifest)})


def load_runner(path: Path, fmt: str) -> Runner:
    """A function running the exported file on a list of input tensors (outputs as a list)."""
    if fmt == "onnx":
        session = open_session(path, threads=1)
        names = [i.name for i in session.get_inputs()]
        return lambda xs: [torch.from_numpy(o) for o in session.run(None, {n: x.numpy() for n, x in zip(names, xs)})]
    module = torch.jit.load(str(path)) if fmt == "torchscript" else torch.export.load(str(path)).module()

    def run(xs: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        out = module(*xs)
        return list(out) if isinstance(out, (tuple, list)) else [out]

    return run


def compare(module: nn.Module, runner: Runner, inputs: Sequence[torch.Tensor],
            stream: bool) -> Tuple[float, float, float]:
    """(max |Δlogit|, max |Δ| of every other output, max |logit|) between PyTorch and the exported file.

    A stream step is run for :data:`STREAM_CHECK_FRAMES` frames, each side feeding its own
    state back, so the state wiring is checked too."""
    worst_logit, worst_other, largest = 0.0, 0.0, 0.0
    ours, theirs = list(inputs), list(inputs)
    gen = torch.Generator().manual_seed(1)
    for _ in range(STREAM_CHECK_FRAMES if stream else 1):
        with torch.no_grad():
            expected = module(*ours)
        expected = list(expected) if isinstance(expected, (tuple, list)) else [expected]
        got = runner(theirs)
        worst_logit = max(worst_logit, (expected[0] - got[0]).abs().max().item())
        largest = max(largest, expected[0].abs().max().item())
        for e, g in zip(expected[1:], got[1:]):
            worst_other = max(worst_other, (e - g).abs().max().item())
        frame = torch.rand(inputs[0].shape, generator=gen)
        ours, theirs = [frame, *expected[1:]], [frame, *got[1:]]
    return worst_logit, worst_other, largest


def second_shape(inputs: Sequence[torch.Tensor], settings: ExportSettings) -> Optional[List[torch.Tensor]]:
    """Inputs of another shape along the dynamic axes (to check they really are free), or None;
    a stream's state tensors are the first stream's, repeated over the larger batch."""
    if not (settings.dynamic_batch or settings.dynamic_frames):
        return None
    gen = torch.Generator().manual_seed(settings.seed + 1)
    batch = inputs[0].shape[0] + 1 if settings.dynamic_batch else inputs[0].shape[0]
    out = []
    for i, x in enumerate(inputs):
        shape = [batch, *x.shape[1:]]
        if i == 0 and settings.dynamic_frames:
            shape[2] = x.shape[2] + 2
        out.append(torch.rand(shape, generator=gen) if i == 0 else x[:1].expand(shape).clone())
    return out


def export_model(model: nn.Module, settings: ExportSettings, log: Callable[[str], None] = print) -> ExportResult:
    """Export ``model`` (eval mode) to ``settings.output`` and check it; see the module docstring."""
    check_settings(model, settings)
    out = Path(settings.output)
    check_output_dir(out.parent, "export folder")
    if out.is_dir():
        raise UserError(f"-o {out} is a folder; give a file name")
    stream = is_stream(model)
    module = StateAsTuple(model, list(model.init_state(1))).eval() if stream else model
    names, inputs, outputs = sample_inputs(model, settings)
    with torch.no_grad():
        sample_out = module(*inputs)
    sample_out = list(sample_out) if isinstance(sample_out, (tuple, list)) else [sample_out]
    manifest = build_manifest(model, settings, names, inputs, outputs, sample_out)
    axes = dynamic_axes(names, outputs, stream, settings)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp-{os.getpid()}{out.suffix}")
    try:
        if settings.format == "exported-program":  # traced with autograd on: the eval-mode BatchNorm folding
            _write_program(module, inputs, tmp, axes, names, manifest)  # of MoViNet reads data torch.export fakes
        else:
            with torch.no_grad():
                if settings.format == "onnx":
                    _write_onnx(module, inputs, tmp, names, outputs, axes, manifest)
                else:
                    _write_torchscript(module, inputs, tmp, manifest)
        runner = load_runner(tmp, settings.format)
        diff, other, largest = compare(module, runner, inputs, stream)
        more = second_shape(inputs, settings)
        if more is not None:
            try:
                diff2, other2, largest2 = compare(module, runner, more, stream)
            except Exception as exc:  # the runtime refuses the shape: the axis is not really free
                first = str(exc).strip().splitlines()[0][:160]
                raise CheckFailed(f"{model.arch_name}: the exported {settings.format} file does not take a second "
                                  f"{'batch' if settings.dynamic_batch else 'frame count'} ({first}); export without "
                                  "--dynamic-batch/--dynamic-frames") from None
            diff, other, largest = max(diff, diff2), max(other, other2), max(largest, largest2)
        what = f"max |Δlogit| {diff:.3g} (logits up to {largest:.3g})" + (f", max |Δstate| {other:.3g}" if stream else "")
        if not diff <= settings.atol or (stream and not other <= settings.atol):
            raise CheckFailed(f"{model.arch_name} as {settings.format}: {what} exceeds --atol {settings.atol:g}; "
                              f"{out} not written")
        log(f"check ({settings.format} vs PyTorch): {what} <= atol {settings.atol:g}")
        manifest["check"] = {"max_abs_logit_diff": diff, "atol": settings.atol}
        side = manifest_path(out)
        write_text_atomic(side, json.dumps(manifest, indent=2) + "\n")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return ExportResult(out, side, diff)
