"""Window geometry shared by the convolution and pooling operators, as real Caffe2 computes it.

Caffe2 spells kernel, stride, pad and dilation several ways (``kernel``, ``kernel_h``/``kernel_w``,
``kernels``; ``pad``, ``pad_t``/``pad_l``/``pad_b``/``pad_r``, ``pads``; ...). ``window_geometry``
reads them all into the declared ``Window``; ``resolve_window`` then applies Caffe2's
``ComputeSizeAndPad`` (``conv_pool_op_base.h``): the ``legacy_pad`` strategy (``NOTSET``,
``VALID``, ``SAME`` or ``CAFFE_LEGACY_POOLING``) and ``global_pooling`` decide the output size and
the padding actually used. Only 2-D (NCHW) windows are supported.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from zooforge.converters.errors import NetDefError


class LegacyPadding(IntEnum):
    """caffe2_legacy.proto's ``LegacyPadding``."""

    NOTSET = 0
    VALID = 1
    SAME = 2
    CAFFE_LEGACY_POOLING = 3


CAFFE_LEGACY_POOLING = int(LegacyPadding.CAFFE_LEGACY_POOLING)
_SIDES = ("pad_t", "pad_l", "pad_b", "pad_r")
_PAD_KEYS = ("pad", "pads", *_SIDES)


@dataclass(frozen=True)
class Window:
    kernel: tuple[int, int]
    stride: tuple[int, int]
    pads: tuple[int, int, int, int]  # top, left, bottom, right (ONNX's begin..., end... order)
    dilation: tuple[int, int]


def pool_extent(size: int, kernel: int, stride: int, pad_begin: int, pad_end: int, caffe_ceil: bool) -> int:
    """Pooled length along one axis.

    Caffe rounds up and then drops a last window that would start in the end padding; every other
    framework rounds down.
    """
    span = size + pad_begin + pad_end - kernel
    if not caffe_ceil:
        return span // stride + 1
    out = int(math.ceil(span / stride)) + 1
    if (pad_begin or pad_end) and (out - 1) * stride >= size + pad_begin:
        out -= 1
    return out


def window_geometry(args: Mapping[str, Any]) -> Window:
    """The window as the arguments declare it (before any legacy padding strategy).

    Real Caffe2 needs the kernel size as an argument (it does not take it from the weights).
    """
    kernel = _pair(args, "kernel", "kernel_h", "kernel_w", "kernels", None)
    if kernel is None:
        raise NetDefError("operator has no kernel size argument (Caffe2 needs kernel, kernel_h/kernel_w or kernels)")
    stride = _pair(args, "stride", "stride_h", "stride_w", "strides", (1, 1))
    dilation = _pair(args, "dilation", "dilation_h", "dilation_w", "dilations", (1, 1))
    if "pads" in args:
        pads = tuple(int(p) for p in args["pads"])
        if len(pads) != 4:
            raise NetDefError(f"'pads' must hold 4 values for a 2-D window, found {list(pads)}")
    elif all(key in args for key in _SIDES):  # as in real Caffe2, an incomplete set of sides is ignored
        pads = tuple(int(args[key]) for key in _SIDES)
    else:
        pad = int(args.get("pad", 0))
        pads = (pad, pad, pad, pad)
    if min(kernel) <= 0 or min(stride) <= 0 or min(dilation) <= 0 or min(pads) < 0:
        raise NetDefError(
            f"kernel {list(kernel)}, stride {list(stride)} and dilation {list(dilation)} must be positive "
            f"and pads {list(pads)} not negative"
        )
    return Window(kernel, stride, pads, dilation)  # type: ignore[arg-type]


def legacy_padding(args: Mapping[str, Any]) -> LegacyPadding:
    value = int(args.get("legacy_pad", 0))
    try:
        mode = LegacyPadding(value)
    except ValueError:
        raise NetDefError(f"unknown legacy_pad {value}; Caffe2 knows 0 (NOTSET) to 3 (CAFFE_LEGACY_POOLING)") from None
    if mode in (LegacyPadding.VALID, LegacyPadding.SAME) and any(key in args for key in _PAD_KEYS):
        raise NetDefError(f"legacy_pad {mode.name} cannot be combined with explicit padding (Caffe2 refuses it)")
    return mode


def is_global(args: Mapping[str, Any]) -> bool:
    return bool(int(args.get("global_pooling", 0)))


def resolve_window(args: Mapping[str, Any], size: tuple[int, int]) -> tuple[Window, tuple[int, int]]:
    """The window real Caffe2 uses on an input of spatial ``size``, and the output size.

    ``CAFFE_LEGACY_POOLING`` reads only the leading pads (it is symmetric), rounds up as Caffe does
    and extends the trailing pads so that the last window fits; ``VALID`` and ``SAME`` compute the
    pads; ``NOTSET`` uses the declared pads and rounds down.
    """
    if is_global(args):
        return Window((int(size[0]), int(size[1])), (1, 1), (0, 0, 0, 0), (1, 1)), (1, 1)
    mode = legacy_padding(args)
    declared = window_geometry(args)
    pads = list(declared.pads)
    out = []
    for axis in range(2):
        n, k, s, d = int(size[axis]), declared.kernel[axis], declared.stride[axis], declared.dilation[axis]
        span = d * (k - 1) + 1
        head, tail = pads[axis], pads[axis + 2]
        if mode is LegacyPadding.VALID:
            head = tail = 0
        elif mode is LegacyPadding.SAME:
            if d != 1:
                raise NetDefError("legacy_pad SAME does not support dilation (Caffe2 refuses it)")
            needed = max(((n + s - 1) // s - 1) * s + k - n, 0)
            head, tail = needed // 2, needed - needed // 2
        if mode is LegacyPadding.CAFFE_LEGACY_POOLING:
            extent = pool_extent(n, k, s, head, head, caffe_ceil=True)
            tail = head + s * (extent - ((n + 2 * head - k) // s + 1))
        elif n + head + tail < span:
            raise NetDefError(f"a window of {span} does not fit an input of {n} padded by {head}+{tail}")
        else:
            extent = (n + head + tail - span) // s + 1
        pads[axis], pads[axis + 2] = head, tail
        out.append(extent)
    return Window(declared.kernel, declared.stride, tuple(pads), declared.dilation), tuple(out)  # type: ignore[arg-type]


def _pair(args: Mapping[str, Any], scalar: str, first: str, second: str, listed: str, default: Any) -> Any:
    if listed in args:
        values = tuple(int(v) for v in args[listed])
        if len(values) != 2:
            raise NetDefError(f"'{listed}' must hold 2 values for a 2-D window, found {list(values)}")
        return values
    if scalar in args:  # as in real Caffe2: the scalar first, a pair only when both halves are given
        return (int(args[scalar]), int(args[scalar]))
    if first in args and second in args:
        return (int(args[first]), int(args[second]))
    if (first in args or second in args) and default is None:  # Caffe2 ignores a lone stride or dilation half
        raise NetDefError(f"'{first}' and '{second}' must be given together")
    return default
