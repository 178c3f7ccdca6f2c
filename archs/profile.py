"""Parameters and GFLOPs (GMACs) of registered models, measured on the meta device."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from archs.registry import InputSpec, count_params, create_model, measure_gmacs, view_shape


@dataclass
class Profile:
    name: str
    spec: InputSpec
    params: int
    gmacs: Optional[float]


def profile_model(name: str, num_classes: int, crop_size: Optional[int] = None, **options) -> Profile:
    """Build ``name`` without allocating weights and count one view's params and GMACs."""
    with torch.device("meta"):
        model = create_model(name, num_classes, **options)
        try:
            gmacs = measure_gmacs(model, view_shape(model.input_spec, crop_size))
        except (RuntimeError, NotImplementedError):  # an op without a meta kernel
            gmacs = None
    return Profile(name, model.input_spec, count_params(model), gmacs)
