"""The videorec model zoo: one file per family, one registry.

Importing this package registers every family.
"""
from archs.registry import (InputSpec, ModelOptionError, UnknownModelError, check_options, count_params,
                            create_model, get_entry, list_aliases, list_models, measure_gmacs, model_options,
                            register_model, resolve_name, training_loss, view_shape)

# Families register their models at import; keep one line per family file.
from archs import tsn  # noqa: E402,F401
from archs import adafocus  # noqa: E402,F401
from archs import mvfnet  # noqa: E402,F401
from archs import movinet  # noqa: E402,F401
from archs import tdn  # noqa: E402,F401
from archs import msn  # noqa: E402,F401
from archs import x3d, vov3d  # noqa: E402,F401
