"""Handlers for convolution, pooling, normalisation, fully connected, softmax and dropout."""

from __future__ import annotations

import numpy as np

from zooforge.converters.caffe2.executor.geometry import (
    LegacyPadding, Window, is_global, legacy_padding, pool_extent, resolve_window, window_geometry,
)
from zooforge.converters.errors import ExportError
from zooforge.converters.onnx.context import OpEmitter
from zooforge.converters.onnx.handlers.base import Handler


def _conv_attrs(e: OpEmitter, window: Window) -> dict[str, object]:
    return {
        "kernel_shape": list(window.kernel),
        "strides": list(window.stride),
        "pads": list(window.pads),
        "dilations": list(window.dilation) if window.dilation != (1, 1) else None,
        "group": int(e.args["group"]) if int(e.args.get("group", 1)) != 1 else None,
    }


class Conv(Handler):
    caffe2_type = "Conv"
    emits = ("Conv",)

    @classmethod
    def version_1(cls, e: OpEmitter) -> None:
        window, _ = resolve_window(e.args, e.in_shape(0)[2:4])  # legacy_pad resolved to explicit pads
        e.node("Conv", e.inputs, e.outputs[:1], **_conv_attrs(e, window))

    version_11 = version_1
    version_22 = version_1


class ConvTranspose(Handler):
    caffe2_type = "ConvTranspose"
    emits = ("ConvTranspose",)

    @classmethod
    def version_1(cls, e: OpEmitter) -> None:
        window = window_geometry(e.args)
        adj = [int(e.args.get("adj_h", e.args.get("adj", 0))), int(e.args.get("adj_w", e.args.get("adj", 0)))]
        e.node(
            "ConvTranspose", e.inputs, e.outputs[:1], **_conv_attrs(e, window),
            output_padding=adj if any(adj) else None,
        )

    version_11 = version_1
    version_22 = version_1


def _pool_plan(e: OpEmitter) -> tuple[Window, list[int]]:
    """The window and the exact ONNX pads (begin..., end...) that give the Caffe2 output size.

    The leading pads are the ones Caffe2 uses; the trailing ones are the least that make the last
    window fit (Caffe2's own trailing pad under ``CAFFE_LEGACY_POOLING`` may overshoot, which ONNX
    runtimes refuse when it reaches the kernel size). Exact at every opset.
    """
    x, y = e.in_shape(0), e.out_shape(0)
    window, _ = resolve_window(e.args, x[2:4])
    pads = list(window.pads)
    if legacy_padding(e.args) is LegacyPadding.CAFFE_LEGACY_POOLING:
        pads[2:] = pads[:2]
    for axis in range(2):
        covered = (y[2 + axis] - 1) * window.stride[axis] + window.kernel[axis]
        pads[axis + 2] += max(0, covered - (x[2 + axis] + pads[axis] + pads[axis + 2]))
    for axis in range(2):
        if max(pads[axis], pads[axis + 2]) >= window.kernel[axis]:
            raise ExportError(
                f"{e.label}: padding {pads} is not smaller than the kernel {list(window.kernel)}"
            )
    return window, pads


def _ceil_mode_exact(e: OpEmitter, window: Window) -> bool:
    """Whether ONNX's ``ceil_mode`` (opset 10+) gives this Caffe-rounded pooling's output size.

    ONNX rounds up and drops a last window that starts in the end padding, as Caffe does; with
    symmetric padding the sizes agree.
    """
    if legacy_padding(e.args) is not LegacyPadding.CAFFE_LEGACY_POOLING:
        return False
    pads = window.pads
    x, y = e.in_shape(0), e.out_shape(0)
    return all(
        pool_extent(x[2 + a], window.kernel[a], window.stride[a], pads[a], pads[a], True) == y[2 + a]
        for a in range(2)
    )


def _symmetric(window: Window) -> list[int]:
    """The leading pads repeated at the end (what ``ceil_mode`` pairs with)."""
    return list(window.pads[:2]) * 2


def _is_global(e: OpEmitter) -> bool:
    return is_global(e.args)


class MaxPool(Handler):
    caffe2_type = "MaxPool"
    emits = ("MaxPool", "GlobalMaxPool")

    @classmethod
    def version_1(cls, e: OpEmitter) -> None:
        e.unused_outputs_only(1)
        if _is_global(e):
            e.node("GlobalMaxPool", e.inputs, e.outputs[:1])
            return
        window, pads = _pool_plan(e)
        e.node("MaxPool", e.inputs, e.outputs[:1], kernel_shape=list(window.kernel),
               strides=list(window.stride), pads=pads)

    version_8 = version_1

    @classmethod
    def version_10(cls, e: OpEmitter) -> None:
        """Caffe's rounding as ``ceil_mode`` where it is exact; explicit end padding elsewhere."""
        e.unused_outputs_only(1)
        if _is_global(e):
            e.node("GlobalMaxPool", e.inputs, e.outputs[:1])
            return
        window, pads = _pool_plan(e)
        symmetric = _symmetric(window)
        if pads != symmetric and _ceil_mode_exact(e, window):
            e.node("MaxPool", e.inputs, e.outputs[:1], kernel_shape=list(window.kernel),
                   strides=list(window.stride), pads=symmetric, ceil_mode=1)
            return
        cls.version_1(e)

    version_11 = version_12 = version_22 = version_10


class AveragePool(Handler):
    """Caffe2's divisor: the whole kernel with ``count_include_pad``, else the cells in the image.

    ``legacy_pad`` changes only the output size. With the pads made explicit, every window lies in
    the padded input, so ONNX's ``count_include_pad`` also divides by the whole kernel.
    """

    caffe2_type = "AveragePool"
    emits = ("AveragePool", "GlobalAveragePool", "Pad")

    @classmethod
    def _emit(cls, e: OpEmitter, has_count_include_pad: bool, has_ceil_mode: bool = False) -> None:
        e.unused_outputs_only(1)
        if _is_global(e):
            e.node("GlobalAveragePool", e.inputs, e.outputs[:1])
            return
        window, pads = _pool_plan(e)
        attrs = {"kernel_shape": list(window.kernel), "strides": list(window.stride)}
        if not int(e.args.get("count_include_pad", 0)) or not any(pads):
            # Cells outside the image never count: ONNX's default divisor.
            symmetric = _symmetric(window)
            if has_ceil_mode and pads != symmetric and _ceil_mode_exact(e, window):
                e.node("AveragePool", e.inputs, e.outputs[:1], pads=symmetric, ceil_mode=1, **attrs)
                return
            e.node("AveragePool", e.inputs, e.outputs[:1], pads=pads, **attrs)
            return
        if has_count_include_pad:
            e.node("AveragePool", e.inputs, e.outputs[:1], pads=pads, count_include_pad=1, **attrs)
            return
        # Before count_include_pad: pad with zeros explicitly, then pool without padding.
        # Only below opset 7 (MIN_OPSET is 3), so always Pad-2 with its pads attribute.
        padded = e.temp("padded")
        e.node("Pad", [e.inputs[0]], [padded], pads=[0, 0, pads[0], pads[1], 0, 0, pads[2], pads[3]],
               mode="constant", value=0.0)
        e.node("AveragePool", [padded], e.outputs[:1], pads=[0, 0, 0, 0], **attrs)

    @classmethod
    def version_1(cls, e: OpEmitter) -> None:
        cls._emit(e, has_count_include_pad=False)

    version_2 = version_1  # Pad-2 (its pads attribute) is what _emit writes below opset 7

    @classmethod
    def version_7(cls, e: OpEmitter) -> None:
        cls._emit(e, has_count_include_pad=True)

    @classmethod
    def version_10(cls, e: OpEmitter) -> None:
        cls._emit(e, has_count_include_pad=True, has_ceil_mode=True)

    # Later AveragePool and Pad schemas: dilations, pads as input (handled in _pad), types.
    version_11 = version_13 = version_18 = version_19 = version_21 = version_10
    version_22 = version_23 = version_24 = version_25 = version_10


class LRN(Handler):
    """LRN with Caffe2's defaults (alpha 0, beta 0, bias 1). With alpha 0 the window sum drops out,
    y = x * bias^-beta, and with beta 0 the scale is raised to 0, y = x (= x * bias^-0): that is what
    is emitted then, as onnxruntime refuses an LRN with alpha 0 or with beta 0."""

    caffe2_type = "LRN"
    emits = ("LRN", "Mul")

    @classmethod
    def version_1(cls, e: OpEmitter) -> None:
        e.unused_outputs_only(1)
        alpha, beta, bias = float(e.args.get("alpha", 0)), float(e.args.get("beta", 0)), float(e.args.get("bias", 1.0))
        if alpha == 0 or beta == 0:
            factor = e.const("lrn_factor", np.asarray(np.float32(bias) ** np.float32(-beta), np.float32).reshape(1))
            e.node("Mul", [e.inputs[0], factor], e.outputs[:1], **({"broadcast": 1} if e.opset < 7 else {}))
            return
        e.node("LRN", e.inputs, e.outputs[:1], size=int(e.args["size"]), alpha=alpha, beta=beta, bias=bias)

    version_6 = version_7 = version_13 = version_14 = version_1  # (Mul changed at 6, 7, 13, 14)


class FC(Handler):
    """FC flattens from ``axis`` and multiplies by W^T: Flatten (when needed) + Gemm."""

    caffe2_type = "FC"
    emits = ("Flatten", "Gemm", "Reshape")

    @classmethod
    def _emit(cls, e: OpEmitter, legacy_broadcast: bool) -> None:
        x_shape = e.in_shape(0)
        axis = int(e.args.get("axis", 1)) % len(x_shape)
        source = e.inputs[0]
        if e.context.compat == "zoo" and len(x_shape) != 2 and axis == 1 and e.opset >= 5:
            # The zoo's graphs flatten with a Reshape to a literal [batch, features].
            source = e.temp("flat")
            batch = x_shape[0] if not e.context.dynamic_batch else -1
            e.reshape(e.inputs[0], source, [batch, int(np.prod(x_shape[1:]))])
        elif len(x_shape) != 2 or axis != 1:
            source = e.temp("flat")
            e.node("Flatten", [e.inputs[0]], [source], axis=axis)
        w_shape = e.in_shape(1)
        axis_w = int(e.args.get("axis_w", 1)) % len(w_shape)
        outputs = int(np.prod(w_shape[:axis_w]))
        weight = e.inputs[1] if len(w_shape) == 2 and axis_w == 1 else \
            e.shaped_input(1, (outputs, int(np.prod(w_shape[axis_w:]))))  # Caffe2's axis_w
        inputs = [source, weight, e.inputs[2]]  # Caffe2's FC always has its bias (checked before export)
        out = e.outputs[0] if axis == 1 else e.temp("gemm")
        e.node("Gemm", inputs, [out], transB=1, broadcast=1 if legacy_broadcast else None)
        if axis != 1:
            # The Gemm output's first dimension is batch * prod(x_shape[1:axis]), so Reshape's 0
            # (copy that dimension) would be wrong: infer the batch with -1 instead.
            e.reshape(out, e.outputs[0], [-1, *x_shape[1:axis], outputs])

    @classmethod
    def version_1(cls, e: OpEmitter) -> None:
        cls._emit(e, legacy_broadcast=True)

    version_5 = version_6 = version_1  # Reshape's shape input (handled in OpEmitter.reshape)

    @classmethod
    def version_7(cls, e: OpEmitter) -> None:
        cls._emit(e, legacy_broadcast=False)

    # Gemm: types and optional C; Flatten and Reshape: types, allowzero (unused).
    version_9 = version_11 = version_13 = version_14 = version_19 = version_21 = version_7
    version_23 = version_24 = version_25 = version_7


class SpatialBN(Handler):
    caffe2_type = "SpatialBN"
    emits = ("BatchNormalization",)

    @classmethod
    def _emit(cls, e: OpEmitter, **legacy: object) -> None:
        e.unused_outputs_only(1)
        e.node("BatchNormalization", e.inputs, e.outputs[:1], epsilon=float(e.args.get("epsilon", 1e-5)), **legacy)

    @classmethod
    def version_1(cls, e: OpEmitter) -> None:
        cls._emit(e, is_test=1, spatial=1, consumed_inputs=[0, 0, 0, 1, 1])

    @classmethod
    def version_6(cls, e: OpEmitter) -> None:
        cls._emit(e, is_test=1, spatial=1)

    @classmethod
    def version_7(cls, e: OpEmitter) -> None:
        cls._emit(e, spatial=1)

    @classmethod
    def version_9(cls, e: OpEmitter) -> None:
        cls._emit(e)

    version_14 = version_9
    version_15 = version_9


class Softmax(Handler):
    """Caffe2 flattens from ``axis`` into one row; ONNX did too until opset 13."""

    caffe2_type = "Softmax"
    emits = ("Softmax", "Flatten", "Reshape")

    @classmethod
    def version_1(cls, e: OpEmitter) -> None:
        axis = int(e.args.get("axis", 1))
        e.node("Softmax", e.inputs, e.outputs[:1], axis=axis if axis != 1 else None)

    version_5 = version_9 = version_11 = version_1

    @classmethod
    def version_13(cls, e: OpEmitter) -> None:
        shape = e.in_shape(0)
        axis = int(e.args.get("axis", 1)) % len(shape)
        if axis == len(shape) - 1:
            e.node("Softmax", e.inputs, e.outputs[:1], axis=axis)
            return
        flat, normed = e.temp("rows"), e.temp("softmax")
        e.node("Flatten", e.inputs, [flat], axis=axis)
        e.node("Softmax", [flat], [normed], axis=1)
        # Reshape's 0 would copy the rows' dim 0, which is the batch only when axis is 1; -1 infers it
        e.reshape(normed, e.outputs[0], [0 if axis == 1 else -1, *shape[1:]])

    # Flatten and Reshape gained types and allowzero (unused) after 13.
    version_14 = version_19 = version_21 = version_23 = version_24 = version_25 = version_13


class Dropout(Handler):
    """Inference-time dropout: the output equals the input; the ratio is kept for the record."""

    caffe2_type = "Dropout"
    emits = ("Dropout",)

    @classmethod
    def _ratio(cls, e: OpEmitter) -> float:
        return float(e.args.get("ratio", 0.5))

    @classmethod
    def version_1(cls, e: OpEmitter) -> None:
        e.unused_outputs_only(1)
        e.node("Dropout", e.inputs, e.outputs[:1], ratio=cls._ratio(e), is_test=1)

    version_6 = version_1

    @classmethod
    def version_7(cls, e: OpEmitter) -> None:
        e.unused_outputs_only(1)
        e.node("Dropout", e.inputs, cls._outputs(e), ratio=cls._ratio(e))

    version_10 = version_7

    @classmethod
    def _outputs(cls, e: OpEmitter) -> list[str]:
        """The zoo's graphs name Dropout's mask output too (from opset 7, where it is optional)."""
        return e.outputs[:1] + ([e.temp("mask")] if e.context.compat == "zoo" else [])

    @classmethod
    def version_12(cls, e: OpEmitter) -> None:
        e.unused_outputs_only(1)
        e.node("Dropout", [e.inputs[0], e.const("ratio", cls._ratio(e))], cls._outputs(e))

    version_13 = version_12
    version_22 = version_12


# -- the forks' layers (issue 13) ----------------------------------------------------------------

class ResizeNearest(Handler):
    """Nearest-neighbour upsampling (the YOLOv3 ports' Caffe ``Upsample``): output ``in * scale``,
    source index ``floor(out / scale)``. ONNX says it from opset 7 (Upsample-7's ``scales``
    attribute; an input from 9; Resize from 10, which needs ``asymmetric`` coordinates and
    ``floor`` rounding from 11 to mean the same)."""

    caffe2_type = "ResizeNearest"
    emits = ("Upsample", "Resize")

    @classmethod
    def _scales(cls, e: OpEmitter) -> list[float]:
        if len(e.inputs) > 1:
            raise ExportError(f"{e.label}: scales given as an input cannot be exported")
        return [1.0, 1.0, float(e.args.get("height_scale", 1.0)), float(e.args.get("width_scale", 1.0))]

    @classmethod
    def version_1(cls, e: OpEmitter) -> None:
        raise ExportError(f"{e.label} (nearest-neighbour upsampling, as of Caffe's Upsample layer) needs opset 7 "
                          f"or later: ONNX has no standard Upsample before opset 7 (asked: opset {e.opset})")

    @classmethod
    def version_7(cls, e: OpEmitter) -> None:
        e.node("Upsample", e.inputs[:1], e.outputs[:1], mode="nearest", scales=cls._scales(e))

    @classmethod
    def version_9(cls, e: OpEmitter) -> None:
        e.node("Upsample", [e.inputs[0], e.const("scales", cls._scales(e))], e.outputs[:1], mode="nearest")

    @classmethod
    def version_10(cls, e: OpEmitter) -> None:
        e.node("Resize", [e.inputs[0], e.const("scales", cls._scales(e))], e.outputs[:1], mode="nearest")

    @classmethod
    def version_11(cls, e: OpEmitter) -> None:
        roi = e.const("roi", [], np.float32)  # Resize-11 requires the (unused) roi input
        e.node("Resize", [e.inputs[0], roi, e.const("scales", cls._scales(e))], e.outputs[:1], mode="nearest",
               coordinate_transformation_mode="asymmetric", nearest_mode="floor")

    @classmethod
    def version_13(cls, e: OpEmitter) -> None:
        e.node("Resize", [e.inputs[0], "", e.const("scales", cls._scales(e))], e.outputs[:1], mode="nearest",
               coordinate_transformation_mode="asymmetric", nearest_mode="floor")

    version_18 = version_19 = version_13  # antialias, axes, keep_aspect_ratio_policy: defaults


HANDLERS = (Conv, ConvTranspose, MaxPool, AveragePool, LRN, FC, SpatialBN, Softmax, Dropout, ResizeNearest)
