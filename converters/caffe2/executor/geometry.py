"""Window geometry shared by the convolution and pooling operators.

Caffe2 spells kernel, stride, pad and dilation several ways (``kernel``, ``kernel_h``/``kernel_w``,
``kernels``; ``pad``, ``pad_t``/``pad_l``/``pad_b``/``pad_r``, ``pads``; ...). ``window_geometry``
reads them all into one ``Window``. Only 2-D (NCHW) windows are supported.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from converters.errors import NetDefError

CAFFE_LEGACY_POOLING = 3  # caffe2 LegacyPadding::CAFFE_LEGACY_POOLING


@dataclass(frozen=True)
class Window:
    kernel: tuple[int, int]
    stride: tuple[int, int]
    pads: tuple[int, int, int, int]  # top, left, bottom, right (ONNX's begin..., end... order)
    dilation: tuple[int, int]

    def pool_output(self, size: tuple[int, int], caffe_ceil: bool) -> tuple[int, int]:
        """Output extent of a pooling window; ``caffe_ceil`` applies Caffe's rounding rule."""
        return tuple(  # type: ignore[return-value]
            pool_extent(size[i], self.kernel[i], self.stride[i], self.pads[i], self.pads[i + 2], caffe_ceil)
            for i in range(2)
        )

    def conv_output(self, size: tuple[int, int]) -> tuple[int, int]:
        out = []
        for i in range(2):
            span = self.dilation[i] * (self.kernel[i] - 1) + 1
            extent = (size[i] + self.pads[i] + self.pads[i + 2] - span) // self.stride[i] + 1
            out.append(extent)
        return tuple(out)  # type: ignore[return-value]


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


def window_geometry(args: Mapping[str, Any], kernel_from: tuple[int, int] | None = None) -> Window:
    kernel = _pair(args, "kernel", "kernel_h", "kernel_w", "kernels", None)
    if kernel is None:
        if kernel_from is None:
            raise NetDefError("operator has no kernel size argument")
        kernel = kernel_from
    stride = _pair(args, "stride", "stride_h", "stride_w", "strides", (1, 1))
    dilation = _pair(args, "dilation", "dilation_h", "dilation_w", "dilations", (1, 1))
    if "pads" in args:
        pads = tuple(int(p) for p in args["pads"])
        if len(pads) != 4:
            raise NetDefError(f"'pads' must hold 4 values for a 2-D window, found {list(pads)}")
    elif any(key in args for key in ("pad_t", "pad_l", "pad_b", "pad_r")):
        pads = tuple(int(args.get(key, 0)) for key in ("pad_t", "pad_l", "pad_b", "pad_r"))
    else:
        pad = int(args.get("pad", 0))
        pads = (pad, pad, pad, pad)
    return Window(kernel, stride, pads, dilation)  # type: ignore[arg-type]


def _pair(args: Mapping[str, Any], scalar: str, first: str, second: str, listed: str, default: Any) -> Any:
    if listed in args:
        values = tuple(int(v) for v in args[listed])
        if len(values) != 2:
            raise NetDefError(f"'{listed}' must hold 2 values for a 2-D window, found {list(values)}")
        return values
    if first in args or second in args:
        return (int(args[first]), int(args[second]))
    if scalar in args:
        return (int(args[scalar]), int(args[scalar]))
    return default
