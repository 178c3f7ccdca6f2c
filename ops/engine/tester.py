"""Multi-view testing: one score file per temporal clip index.

For clip i of n, every video is sampled with the deterministic rule of
ops.data.sampling (each segment at the fraction (i + 0.5) / n, or the i-th dense
window), cut into 1, 3 or 10 crops, and all views of a clip go through the model
in one batch. Raw logits (videos, views, K) are written to
``OUTPUT_DIR/scores_clip{i}of{n}.pkl``; ``videorec ensemble-pkl`` fuses them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np

from archs.registry import InputSpec
from ops.common.errors import UserError
from ops.common.fileio import check_output_dir
from ops.common.options import GivenOptions
from ops.data.loader import ViewSettings, build_dataset, dataset_config, resolve_spec
from ops.data.dataset import report_missing
from ops.engine.checkpoints import load_model, override_note
from ops.engine.config import DataSettings
from ops.engine.distributed import init_distributed
from ops.engine.inference import predict
from ops.evaluation.metrics import mean_average_precision, softmax, topk_accuracy
from ops.evaluation.protocols import MergedProtocol, fields_for_data, fields_for_tester, flag_text
from ops.evaluation.scores import ScoreFile, write_scores


@dataclass
class TestSettings:
    """A test run. The model, its options, class names and input spec come from the checkpoint
    (a path, or a name of the weights catalog); ``arch`` and ``model_options`` (``-m``,
    ``--test-segments``) are for files that do not say them, or override what they say.
    ``protocol``: the merged test protocol the views come from (printed and recorded in the
    score files), see :func:`protocol_settings`."""

    data: DataSettings
    weights: str
    arch: Optional[str] = None
    model_options: GivenOptions = field(default_factory=GivenOptions)
    test_crops: int = 1
    full_res: bool = False
    twice_sample: bool = False
    clip_indices: Sequence[int] = (0,)
    num_clips: int = 1
    batch_size: int = 4
    output_dir: str = "runs/test"
    exits: bool = False
    amp: bool = False
    device: str = "auto"
    protocol: Optional[MergedProtocol] = None


def protocol_settings(data: DataSettings, merged: MergedProtocol, model_options: GivenOptions) -> Dict[str, object]:
    """The :class:`TestSettings` fields of a merged protocol: its views (every clip index), its
    data settings (crop, short side, sampling) and its segment count as the model option
    ``num_segments`` unless ``model_options`` give it."""
    p = merged.protocol
    options = GivenOptions(dict(model_options.values), dict(model_options.flags))
    if p.test_segments is not None and "num_segments" not in options.values:
        options.values["num_segments"] = p.test_segments
        options.flags["num_segments"] = f"{merged.origin['test_segments']} test_segments={p.test_segments}"
    return {"data": replace(data, **fields_for_data(p)), "model_options": options, "protocol": merged,
            **fields_for_tester(p)}


def spec_notes(trained: InputSpec, data: DataSettings, origin: Optional[Mapping[str, str]] = None) -> List[str]:
    """One line per data setting that changes the checkpoint's input spec; ``origin`` says where
    each came from (a protocol's origins; default: a flag)."""
    def label(key: str, value: object) -> str:
        source = (origin or {}).get(key, "flag")
        return flag_text(key, value) if source == "flag" else f"{source} {key}={value}"

    notes = [override_note(label(key, value), getattr(trained, key))
             for key, value in (("crop_size", data.crop_size), ("scale_size", data.scale_size))
             if value is not None and value != getattr(trained, key)]
    if data.dense_sample and trained.sampling != "dense":
        notes.append(override_note(label("dense_sample", True), f"{trained.sampling} sampling"))
    return notes


def run_test(settings: TestSettings, say: Callable[[str], None] = print) -> List[Dict[str, float]]:
    """Write one score file per clip index; returns the metrics printed for each."""
    out_dir = check_output_dir(Path(settings.output_dir), "score folder")
    info = init_distributed(settings.device)
    cfg = dataset_config(settings.data)
    loaded = load_model(settings.weights, arch=settings.arch, num_classes=cfg.num_classes,
                        options=settings.model_options, classes_from=f"dataset {cfg.name}",
                        classes_fix="test it on the dataset it was trained on")
    model = loaded.model.to(info.device)
    if settings.exits and not hasattr(model, "forward_exits"):
        raise UserError(f"{model.arch_name} has no per-frame exits (forward_exits); drop --exits")
    spec = resolve_spec(loaded.spec, settings.data)
    protocol = settings.protocol
    if info.is_main:
        if protocol is not None:
            say(f"protocol: {protocol.describe()}")
        for note in [*(protocol.notes if protocol else ()), *loaded.notes,
                     *spec_notes(loaded.spec, settings.data, protocol.origin if protocol else None)]:
            say(note)
    views = ViewSettings(settings.test_crops, settings.full_res, settings.clip_indices[0], settings.num_clips,
                         settings.twice_sample)
    dataset = build_dataset(settings.data, spec, "test", "test", views, cfg=cfg)  # the list read and checked once
    if info.is_main:
        message = report_missing(dataset.missing, out_dir, "test")
        if message:
            say(message)
    results = []
    for clip_index in settings.clip_indices:
        dataset.sampling = replace(dataset.sampling, clip_index=clip_index)  # only the temporal position changes
        preds = predict(model, dataset, info, batch_size=settings.batch_size, workers=settings.data.workers,
                        amp=settings.amp, exits=settings.exits, desc=f"clip {clip_index}/{settings.num_clips}")
        metrics = view_metrics(preds.logits, preds.targets, cfg.multi_label)
        results.append(metrics)
        if info.is_main:
            ids = [dataset.records[i].path for i in preds.indices]
            scores = ScoreFile(ids, preds.targets, preds.logits, clip_index, settings.num_clips,
                               {**asdict(settings), "arch": model.arch_name, "model_options": dict(model.model_options),
                                "protocol": protocol.as_record() if protocol else None, "weights_file": loaded.path,
                                "input_spec": asdict(spec), "num_classes": cfg.num_classes,
                                "skipped": preds.bad, "missing": [str(m) for m in dataset.missing]},
                               preds.exit_logits)
            path = out_dir / f"scores_clip{clip_index}of{settings.num_clips}.pkl"
            write_scores(path, scores)
            skipped = f", {len(preds.bad)} unreadable skipped" if preds.bad else ""
            say(f"clip {clip_index} of {settings.num_clips}: {len(ids)} videos x {preds.logits.shape[1]} views{skipped}: "
                + " ".join(f"{k} {v:.2f}" for k, v in metrics.items()) + f" -> {path}")
            for line in preds.bad:
                say(f"  skipped: {line}")
    return results


def view_metrics(logits: np.ndarray, targets: np.ndarray, multi_label: bool) -> Dict[str, float]:
    """View-level metrics (every view scored on its own) and the crops fused by softmax mean."""
    fused = softmax(logits).mean(1)
    if multi_label:
        return {"view_mAP": float(np.mean([mean_average_precision(logits[:, v], targets) for v in range(logits.shape[1])])),
                "mAP": mean_average_precision(fused, targets)}
    v = logits.shape[1]
    per_view = topk_accuracy(logits.reshape(-1, logits.shape[-1]), np.repeat(targets, v), (1, 5))
    fused_acc = topk_accuracy(fused, targets, (1, 5))
    return {"view_top1": per_view[1], "view_top5": per_view[5], "top1": fused_acc[1], "top5": fused_acc[5]}
