"""Read Caffe's spatial parameters, which come as repeated values or as _h/_w pairs."""

from __future__ import annotations

from typing import Any

from zooforge.converters.errors import CaffeModelError


def spatial(
    param: Any, name: str, default: int | None, where: str, pair: str | None = None, minimum: int = 0
) -> tuple[int, int]:
    """Caffe's rule: ``<pair>_h``/``<pair>_w`` win; else ``name`` holds one value or one per axis.

    ``pair`` defaults to ``name`` (``pad`` -> ``pad_h``); kernels pair ``kernel_size`` with
    ``kernel_h``/``kernel_w``. Values below ``minimum`` are refused, as Caffe's CHECKs do
    (kernel, stride and dilation at least 1, pad at least 0).
    """
    values = _spatial(param, name, default, where, pair or name)
    if min(values) < minimum:
        raise CaffeModelError(f"{where}: {name} {list(values)} must be at least {minimum}")
    return values


def _spatial(param: Any, name: str, default: int | None, where: str, pair: str) -> tuple[int, int]:
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
