"""Handlers for activations and arithmetic.

Caffe2's binary operators broadcast the second input onto a run of the first's dims starting at
``axis`` (``broadcast=1``), or NumPy-style (``broadcast=0``). ONNX said the first with
``broadcast``/``axis`` attributes until opset 7 and uses NumPy's rule since, for which a legacy
operand is reshaped to line up with the trailing dims.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np

from zooforge.converters.errors import ExportError
from zooforge.converters.onnx.context import OpEmitter
from zooforge.converters.onnx.handlers.base import Handler


class _Unary(Handler):
    """A one-to-one activation; ``attr_args`` maps ONNX attribute -> Caffe2 argument (floats)."""

    onnx_type: ClassVar[str] = ""
    attr_args: ClassVar[Mapping[str, str]] = {}

    @classmethod
    def emit(cls, e: OpEmitter) -> None:
        attrs = {key: float(e.args[arg]) for key, arg in cls.attr_args.items() if arg in e.args}
        e.node(cls.onnx_type, e.inputs[:1], e.outputs[:1], **attrs)


def _derive(family: type[Handler], caffe2_type: str, onnx_type: str, methods: Mapping[int, str],
            **settings: object) -> type[Handler]:
    """The handler of one operator of ``family``; ``methods`` maps opset -> the family's method for it.

    The methods are the family's own (not closures made here), so one definition serves every member.
    """
    namespace: dict[str, object] = {"caffe2_type": caffe2_type, "onnx_type": onnx_type, **settings}
    namespace.setdefault("emits", (onnx_type,))
    for version, method in methods.items():
        namespace[f"version_{version}"] = vars(family)[method]
    return type(caffe2_type, (family,), namespace)


def _unary(caffe2_type: str, onnx_type: str, since: tuple[int, ...], **attr_args: str) -> type[Handler]:
    return _derive(_Unary, caffe2_type, onnx_type, dict.fromkeys(since, "emit"), attr_args=attr_args)


Relu = _unary("Relu", "Relu", (1, 6, 13, 14))
LeakyRelu = _unary("LeakyRelu", "LeakyRelu", (1, 6, 16), alpha="alpha")
Sigmoid = _unary("Sigmoid", "Sigmoid", (1, 6, 13))
Tanh = _unary("Tanh", "Tanh", (1, 6, 13))
Elu = _unary("Elu", "Elu", (1, 6, 22), alpha="alpha")
Abs = _unary("Abs", "Abs", (1, 6, 13))
Exp = _unary("Exp", "Exp", (1, 6, 13))
Log = _unary("Log", "Log", (1, 6, 13))
Softplus = _unary("Softplus", "Softplus", (1, 22))
Copy = _unary("Copy", "Identity", (1, 13, 14, 16, 19, 21, 23, 24, 25))


def _aligned(e: OpEmitter, index: int) -> str:
    """Input ``index`` reshaped so NumPy broadcasting matches Caffe2's ``axis`` broadcasting."""
    a, b = e.in_shape(0), e.in_shape(index)
    if not int(e.args.get("broadcast", 0)) or len(b) == 0 or len(b) == len(a):
        return e.inputs[index]
    axis = int(e.args.get("axis", -1))
    axis = len(a) - len(b) if axis < 0 else axis
    trailing = len(a) - axis - len(b)
    if trailing == 0:
        return e.inputs[index]
    return e.shaped_input(index, (*b, *([1] * trailing)))


def _legacy_operand(e: OpEmitter) -> tuple[str, dict[str, object]]:
    """Input 1 and the ``broadcast``/``axis`` attributes that express the op before opset 7."""
    a, b = e.in_shape(0), e.in_shape(1)
    if int(e.args.get("broadcast", 0)):
        attrs: dict[str, object] = {"broadcast": 1}
        if "axis" in e.args and len(b):
            attrs["axis"] = int(e.args["axis"])
        return e.inputs[1], attrs
    if tuple(a) == tuple(b):
        return e.inputs[1], {}
    # Caffe2's NumPy-style broadcasting (broadcast=0): legacy ONNX can say it only when the
    # second input's non-1 dims are one run of the first's dims.
    if tuple(e.out_shape(0)) != tuple(a):
        raise ExportError(f"{e.label}: broadcasting that enlarges the first input needs opset 7 or later")
    padded = (1,) * (len(a) - len(b)) + tuple(b)
    kept = [i for i, d in enumerate(padded) if d != 1]
    if not kept:
        return e.shaped_input(1, (1,)), {"broadcast": 1}
    first, last = kept[0], kept[-1] + 1
    if padded[first:last] != tuple(a[first:last]):
        raise ExportError(
            f"{e.label}: shape {list(b)} broadcasts onto {list(a)} in a way ONNX before opset 7 cannot express"
        )
    return e.shaped_input(1, tuple(a[first:last])), {"broadcast": 1, "axis": first}


class _Binary(Handler):
    """Arithmetic on two inputs: legacy ``broadcast``/``axis`` before opset 7, NumPy broadcasting from 7."""

    onnx_type: ClassVar[str] = ""

    @classmethod
    def legacy(cls, e: OpEmitter) -> None:
        operand, attrs = _legacy_operand(e)
        e.node(cls.onnx_type, [e.inputs[0], operand], e.outputs[:1], **attrs)

    @classmethod
    def numpy_style(cls, e: OpEmitter) -> None:
        e.node(cls.onnx_type, [e.inputs[0], _aligned(e, 1)], e.outputs[:1])


def _binary(caffe2_type: str, onnx_type: str, since: tuple[int, ...]) -> type[Handler]:
    methods = {version: "legacy" if version < 7 else "numpy_style" for version in since}
    return _derive(_Binary, caffe2_type, onnx_type, methods, emits=(onnx_type, "Reshape"))


# 5, 19, 21, 23-25 are Reshape's changes (the alignment reshape is versioned in OpEmitter.reshape).
_BINARY_SINCE = (1, 5, 6, 7, 13, 14, 19, 21, 23, 24, 25)
Add = _binary("Add", "Add", _BINARY_SINCE)
Sub = _binary("Sub", "Sub", _BINARY_SINCE)
Mul = _binary("Mul", "Mul", _BINARY_SINCE)
Div = _binary("Div", "Div", _BINARY_SINCE)


class _Variadic(Handler):
    """An operator of any number of inputs, one output."""

    onnx_type: ClassVar[str] = ""

    @classmethod
    def emit(cls, e: OpEmitter) -> None:
        e.node(cls.onnx_type, e.inputs, e.outputs[:1])


def _variadic(caffe2_type: str, onnx_type: str, since: tuple[int, ...]) -> type[Handler]:
    return _derive(_Variadic, caffe2_type, onnx_type, dict.fromkeys(since, "emit"))


Sum = _variadic("Sum", "Sum", (1, 6, 8, 13))
Max = _variadic("Max", "Max", (1, 6, 8, 12, 13))


class PRelu(Handler):
    """Caffe2's slope is per channel (axis 1); ONNX broadcasts it NumPy-style from opset 7."""

    caffe2_type = "PRelu"
    emits = ("PRelu", "Reshape")

    @classmethod
    def version_1(cls, e: OpEmitter) -> None:
        e.node("PRelu", e.inputs[:2], e.outputs[:1])

    version_5 = version_6 = version_1

    @classmethod
    def version_7(cls, e: OpEmitter) -> None:
        rank, count = len(e.in_shape(0)), int(np.prod(e.in_shape(1)))
        slope = e.shaped_input(1, (count, *([1] * (rank - 2)))) if count > 1 else e.inputs[1]
        e.node("PRelu", [e.inputs[0], slope], e.outputs[:1])

    # PRelu and Reshape (slope alignment) changed only types after 7.
    version_9 = version_13 = version_14 = version_16 = version_19 = version_21 = version_7
    version_23 = version_24 = version_25 = version_7


class Scale(Handler):
    """Multiplication by a constant factor."""

    caffe2_type = "Scale"
    emits = ("Mul",)

    @classmethod
    def version_1(cls, e: OpEmitter) -> None:
        factor = e.const("factor", float(e.args.get("scale", 1.0)))
        e.node("Mul", [e.inputs[0], factor], e.outputs[:1], broadcast=1)

    version_6 = version_1

    @classmethod
    def version_7(cls, e: OpEmitter) -> None:
        e.node("Mul", [e.inputs[0], e.const("factor", float(e.args.get("scale", 1.0)))], e.outputs[:1])

    version_13 = version_7
    version_14 = version_7


class Sqr(Handler):
    caffe2_type = "Sqr"
    emits = ("Mul",)

    @classmethod
    def version_1(cls, e: OpEmitter) -> None:
        e.node("Mul", [e.inputs[0], e.inputs[0]], e.outputs[:1])

    version_6 = version_1
    version_7 = version_1
    version_13 = version_1
    version_14 = version_1


class Pow(Handler):
    """Caffe2's Pow raises to an ``exponent`` argument or input; ONNX always takes an input."""

    caffe2_type = "Pow"
    emits = ("Pow", "Reshape")

    @classmethod
    def version_1(cls, e: OpEmitter) -> None:
        if len(e.inputs) > 1:
            operand, attrs = _legacy_operand(e)
            e.node("Pow", [e.inputs[0], operand], e.outputs[:1], **attrs)
            return
        exponent = e.const("exponent", float(e.args["exponent"]))
        e.node("Pow", [e.inputs[0], exponent], e.outputs[:1], broadcast=1)

    version_5 = version_1  # Reshape's shape input (handled in OpEmitter.reshape)

    @classmethod
    def version_7(cls, e: OpEmitter) -> None:
        if len(e.inputs) > 1:
            e.node("Pow", [e.inputs[0], _aligned(e, 1)], e.outputs[:1])
            return
        e.node("Pow", [e.inputs[0], e.const("exponent", float(e.args["exponent"]))], e.outputs[:1])

    # Pow: types; Reshape (operand alignment): types, allowzero (unused).
    version_12 = version_13 = version_14 = version_15 = version_19 = version_21 = version_7
    version_23 = version_24 = version_25 = version_7



# -- SSD's Normalize (zooforge issue 13): Sqrt and ReduceSum ------------------------------------

Sqrt = _unary("Sqrt", "Sqrt", (1, 6, 13))


class ReduceSum(Handler):
    """Caffe2's ReduceSum (``axes``, default every axis; ``keepdims``, default 1): the axes an
    attribute until opset 13, an int64 input from 13 (always written out, canonical)."""

    caffe2_type = "ReduceSum"
    emits = ("ReduceSum",)

    @classmethod
    def _axes(cls, e: OpEmitter) -> list[int]:
        rank = len(e.in_shape(0))
        given = [int(a) for a in e.args.get("axes", [])]
        return sorted({a % rank for a in given}) if given else list(range(rank))

    @classmethod
    def version_1(cls, e: OpEmitter) -> None:
        e.node("ReduceSum", e.inputs[:1], e.outputs[:1], axes=cls._axes(e), keepdims=int(e.args.get("keepdims", 1)))

    version_11 = version_1

    @classmethod
    def version_13(cls, e: OpEmitter) -> None:
        axes = e.const("axes", cls._axes(e), np.int64)
        e.node("ReduceSum", [e.inputs[0], axes], e.outputs[:1], keepdims=int(e.args.get("keepdims", 1)))

class Clip(Handler):
    """Caffe2's Clip: ``min``/``max`` (float's lowest and largest when absent) as attributes until
    ONNX opset 11, as optional inputs from 11."""

    caffe2_type = "Clip"
    emits = ("Clip",)

    @staticmethod
    def _limits(e: OpEmitter) -> tuple[float, float]:
        limits = np.finfo(np.float32)
        return float(e.args.get("min", limits.min)), float(e.args.get("max", limits.max))

    @classmethod
    def version_1(cls, e: OpEmitter) -> None:
        low, high = cls._limits(e)
        e.node("Clip", e.inputs[:1], e.outputs[:1], min=low, max=high)

    version_6 = version_1

    @classmethod
    def version_11(cls, e: OpEmitter) -> None:
        low, high = cls._limits(e)
        e.node("Clip", [e.inputs[0], e.const("min", low), e.const("max", high)], e.outputs[:1])

    version_12 = version_13 = version_11


HANDLERS = (
    Relu, LeakyRelu, Sigmoid, Tanh, Elu, Abs, Exp, Log, Softplus, Copy, Add, Sub, Mul, Div, Sum,
    Max, PRelu, Scale, Sqr, Pow,
    Sqrt, ReduceSum,  # SSD's Normalize (issue 13)
    Clip,  # DetectionOutput's clip (issue 13)
)
