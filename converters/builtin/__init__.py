"""Built-in models: zooforge's own net definitions with seeded synthetic weights."""

from zooforge.converters.builtin.models import (
    BUILTIN_MODELS,
    BuiltinModel,
    UnknownBuiltinModelError,
    builtin_model,
    load_builtin,
)
from zooforge.converters.builtin.synthetic import WeightScale, skeleton_net, synthetic_weights

__all__ = [
    "BUILTIN_MODELS",
    "BuiltinModel",
    "UnknownBuiltinModelError",
    "WeightScale",
    "builtin_model",
    "load_builtin",
    "skeleton_net",
    "synthetic_weights",
]
