"""Read Caffe's spatial parameters, which come as repeated values or as _h/_w pairs."""

from __future__ import annotations

from typing import Any

from converters.errors import CaffeModelError


def spatial(
    param: Any, name: str, default: int | None, where: str, pair: str | None = None
) -> tuple[int, int]:
    """Caffe's rule: ``<pair>_h``/``<pair>_w`` win; else ``name`` holds one value or one per axis.

    ``pair`` defaults to ``name`` (``pad`` -> ``pad_h``); kernels pair ``kernel_size`` with
    ``kernel_h``/``kernel_w``.
    """
    pair = pair or name
    if param.HasField(f"{pair}_h") or param.HasField(f"{pair}_w"):
        if not (param.HasField(f"{pair}_h") and param.HasField(f"{pair}_w")):
            raise CaffeModelError(f"{where}: {pair}_h and {pair}_w must be given together")
        return int(getattr(param, f"{pair}_h")), int(getattr(param, f"{pair}_w"))
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
