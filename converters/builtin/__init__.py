"""Built-in models: zooforge's own net definitions with seeded synthetic weights."""

from zooforge.converters.builtin.models import (
    BUILTIN_MODELS,
    BuiltinModel,
    UnknownBuiltinModelError,
    builtin_model,
    builtin_settings,
    load_builtin,
    load_synthetic,
    synthetic_scale,
    synthetic_settings,
)
from zooforge.converters.builtin.synthetic import WeightScale, skeleton_net, synthetic_weights

__all__ = [
    "BUILTIN_MODELS",
    "BuiltinModel",
    "UnknownBuiltinModelError",
    "WeightScale",
    "builtin_model",
    "builtin_settings",
    "load_builtin",
    "load_synthetic",
    "synthetic_scale",
    "synthetic_settings",
    "skeleton_net",
    "synthetic_weights",
]
