"""Read Caffe's spatial parameters, which come as repeated values or as _h/_w pairs."""

from __future__ import annotations

from typing import Any

from converters.errors import CaffeModelError


def spatial(param: Any, name: str, default: int | None, where: str) -> tuple[int, int]:
    """Caffe's rule: ``name_h``/``name_w`` win; else ``name`` holds one value or one per axis."""
    if param.HasField(f"{name}_h") or param.HasField(f"{name}_w"):
        if not (param.HasField(f"{name}_h") and param.HasField(f"{name}_w")):
            raise CaffeModelError(f"{where}: {name}_h and {name}_w must be given together")
        return int(getattr(param, f"{name}_h")), int(getattr(param, f"{name}_w"))
    values = getattr(param, name)
    if _repeated(values):
        values = [int(v) for v in values]
    else:
        values = [int(values)] if param.HasField(name) else []
    if not values:
        if default is None:
            raise CaffeModelError(f"{where}: {name} is required")
        return default, default
    if len(values) == 1:
        return values[0], values[0]
    if len(values) == 2:
        return values[0], values[1]
    raise CaffeModelError(f"{where}: only 2-D {name} is supported, found {values}")


def _repeated(value: Any) -> bool:
    return hasattr(value, "__len__") and not isinstance(value, (str, bytes))
