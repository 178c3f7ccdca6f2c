"""Multi-view testing: one score file per temporal clip index.

For clip i of n, every video is sampled with the deterministic rule of
ops.data.sampling (each segment at the fraction (i + 0.5) / n, or the i-th dense
window), cut into 1, 3 or 10 crops, and all views of a clip go through the model
in one batch. Raw logits (videos, views, K) are written to
``OUTPUT_DIR/scores_clip{i}of{n}.pkl``; ``videorec ensemble-pkl`` fuses them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from archs.checkpoint import extract_state_dict, load_state_dict_strict, read_checkpoint
from archs.registry import InputSpec, create_model
from ops.engine.config import DataSettings
from ops.data.loader import ViewSettings, build_dataset, dataset_config, resolve_spec
from ops.engine.distributed import DistInfo, init_distributed
from ops.common.errors import UserError
from ops.engine.inference import predict
from ops.evaluation.metrics import mean_average_precision, softmax, topk_accuracy
from ops.evaluation.scores import ScoreFile, write_scores
from ops.engine.trainer import builder_options


@dataclass
class TestSettings:
    data: DataSettings
    weights: str
    arch: Optional[str] = None
    test_segments: Optional[int] = None
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
    model_options: Dict[str, object] = field(default_factory=dict)


def model_from_checkpoint(path: str, arch: Optional[str], num_classes: Optional[int],
                          options: Dict[str, object]) -> tuple:
    """Rebuild the model a checkpoint was trained with (our checkpoints carry arch and
    options) or ``arch`` for a released one; strict loading. Returns (model, checkpoint)."""
    ckpt = read_checkpoint(path)
    saved = ckpt.get("settings", {})
    arch = arch or ckpt.get("arch")
    if not arch:
        raise UserError(f"{path}: the checkpoint does not say its model; pass --arch")
    num_classes = num_classes if num_classes is not None else ckpt.get("num_classes")
    if num_classes is None:
        raise UserError(f"{path}: the checkpoint does not say its class count; pass a dataset")
    trained = dict(saved.get("model_options", {}))
    if saved.get("data", {}).get("num_segments"):
        trained.setdefault("num_segments", saved["data"]["num_segments"])
    trained.update({k: v for k, v in options.items() if v is not None})
    model = create_model(arch, num_classes, **builder_options(arch, trained))
    load_state_dict_strict(model, extract_state_dict(ckpt), source=path)
    return model, ckpt


def trained_spec(model, ckpt: dict) -> InputSpec:
    """The input spec a checkpoint was trained with (crop, scale, sampling), else the model's;
    the segment count is the model's (``--test-segments``)."""
    saved = ckpt.get("settings", {}).get("input_spec")
    if not saved:
        return model.input_spec
    spec = InputSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()})
    return spec.replace(num_segments=model.input_spec.num_segments)


def run_test(settings: TestSettings) -> List[Dict[str, float]]:
    """Write one score file per clip index; returns the metrics printed for each."""
    info = init_distributed(settings.device)
    cfg = dataset_config(settings.data)
    model, ckpt = model_from_checkpoint(settings.weights, settings.arch, cfg.num_classes,
                                        {**settings.model_options, "num_segments": settings.test_segments})
    model.to(info.device)
    spec = resolve_spec(trained_spec(model, ckpt), settings.data)
    if settings.exits and not hasattr(model, "forward_exits"):
        raise UserError(f"{model.arch_name} has no per-frame exits (forward_exits); drop --exits")
    out_dir = Path(settings.output_dir)
    results = []
    for clip_index in settings.clip_indices:
        views = ViewSettings(settings.test_crops, settings.full_res, clip_index, settings.num_clips, settings.twice_sample)
        dataset = build_dataset(settings.data, spec, "test", "test", views, cfg=cfg)
        preds = predict(model, dataset, info, batch_size=settings.batch_size, workers=settings.data.workers,
                        amp=settings.amp, exits=settings.exits, desc=f"clip {clip_index}/{settings.num_clips}")
        metrics = view_metrics(preds.logits, preds.targets, cfg.multi_label)
        results.append(metrics)
        if info.is_main:
            ids = [dataset.records[i].path for i in preds.indices]
            scores = ScoreFile(ids, preds.targets, preds.logits, clip_index, settings.num_clips,
                               {**asdict(settings), "input_spec": spec.__dict__, "num_classes": cfg.num_classes,
                                "skipped": preds.bad}, preds.exit_logits)
            path = out_dir / f"scores_clip{clip_index}of{settings.num_clips}.pkl"
            write_scores(path, scores)
            skipped = f", {len(preds.bad)} unreadable skipped" if preds.bad else ""
            print(f"clip {clip_index} of {settings.num_clips}: {len(ids)} videos x {preds.logits.shape[1]} views{skipped}: "
                  + " ".join(f"{k} {v:.2f}" for k, v in metrics.items()) + f" -> {path}")
            for line in preds.bad:
                print(f"  skipped: {line}")
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
