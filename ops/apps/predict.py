"""One video in, top-k classes out (`videorec predict`)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

import torch

from dataset_configs import read_class_names
from ops.data.dataset import SamplingSettings
from ops.common.errors import UserError
from ops.data.sources import SourceError, open_source
from ops.engine.tester import model_from_checkpoint, trained_spec
from ops.data.transforms import ClipTransform


def predict_video(video: Path, weights: str, arch: Optional[str], num_classes: Optional[int],
                  classes: Optional[Path], top_k: int, template: str) -> List[Tuple[str, float]]:
    model, ckpt = model_from_checkpoint(weights, arch, num_classes, {})
    model.eval()
    spec = trained_spec(model, ckpt)
    names = read_class_names(classes) if classes else list(ckpt.get("class_names", []))
    try:
        source = open_source(video, template)
    except SourceError as exc:
        raise UserError(str(exc)) from None
    sampling = SamplingSettings(mode="test", num_segments=spec.num_segments, new_length=spec.frames_per_segment,
                                sampling=spec.sampling, dense_stride=spec.dense_stride)
    transform = ClipTransform(mode="test", crop_size=spec.crop_size, scale_size=spec.scale_size, mean=spec.mean,
                              std=spec.std, value_range=spec.value_range)
    try:
        frames = source.read(sampling.indices(source.num_frames, None))
    except SourceError as exc:
        raise UserError(str(exc)) from None
    views, _ = transform(frames, (0,))
    with torch.no_grad():
        probs = model(transform.normalize(views)).softmax(-1).mean(0)
    top = probs.topk(min(top_k, probs.numel()))
    return [(names[i] if i < len(names) else str(i), float(p)) for p, i in zip(top.values.tolist(), top.indices.tolist())]
