"""One video in, top-k classes out (`videorec predict`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import torch

from dataset_configs import read_class_names
from ops.common.errors import UserError
from ops.common.options import GivenOptions
from ops.data.dataset import SamplingSettings
from ops.data.sources import SourceError, open_source
from ops.data.transforms import ClipTransform
from ops.engine.checkpoints import load_model
from ops.engine.distributed import pick_device


@dataclass
class PredictSettings:
    """What `videorec predict` was asked; model, classes and input spec come from the checkpoint."""

    video: Path
    weights: str
    arch: Optional[str] = None
    num_classes: Optional[int] = None
    classes: Optional[Path] = None
    top_k: int = 5
    frame_template: str = "img_{:05d}.jpg"
    model_options: GivenOptions = field(default_factory=GivenOptions)
    device: str = "auto"


def predict_video(s: PredictSettings, say: Callable[[str], None] = print) -> List[Tuple[str, float]]:
    """(class name, probability) of the ``top_k`` classes of one centre-crop clip of ``s.video``."""
    loaded = load_model(s.weights, arch=s.arch, num_classes=s.num_classes, options=s.model_options,
                        classes_fix="drop --num-classes (the checkpoint says its class count)")
    for note in loaded.notes:
        say(note)
    device = pick_device(0, s.device)
    model = loaded.model.to(device).eval()
    spec = loaded.spec
    names = read_class_names(s.classes) if s.classes else loaded.class_names
    try:
        source = open_source(s.video, s.frame_template)
        sampling = SamplingSettings(mode="test", num_segments=spec.num_segments, new_length=spec.frames_per_segment,
                                    sampling=spec.sampling, dense_stride=spec.dense_stride)
        frames = source.read(sampling.indices(source.num_frames, None))
    except SourceError as exc:
        raise UserError(str(exc)) from None
    transform = ClipTransform(mode="test", crop_size=spec.crop_size, scale_size=spec.scale_size, mean=spec.mean,
                              std=spec.std, value_range=spec.value_range, channel_order=spec.channel_order)
    views, _ = transform(frames, (0,))
    with torch.no_grad():
        probs = model(transform.normalize(views.to(device))).float().softmax(-1).mean(0)
    top = probs.topk(min(s.top_k, probs.numel()))
    return [(names[i] if i < len(names) else str(i), float(p)) for p, i in zip(top.values.tolist(), top.indices.tolist())]
