"""Element-wise, arithmetic and shape operators."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np

from zooforge.converters.caffe2 import schema
from zooforge.converters.caffe2.executor.operator import (DYNAMIC, MANY, Operator, Shape, require_test_mode,
                                                          same_shape)
from zooforge.converters.errors import NetDefError

_INT64 = 10  # caffe2.TensorProto.INT64
_CAST_TYPES = {1: np.float32, 2: np.int32, 10: np.int64, 13: np.float64}  # caffe2.TensorProto codes (12 is FLOAT16)


# Kernels shared by a family take the element function first and are bound with ``partial``
# (module-level functions, not closures made at import, so that mutation testing reaches them).

def _unary_kernel(fn: Callable[[np.ndarray, Mapping[str, Any]], np.ndarray], inputs: Sequence[np.ndarray],
                  args: Mapping[str, Any], n: int) -> list[np.ndarray]:
    return [np.asarray(fn(inputs[0], args), dtype=np.float32)]


def _unary(fn: Callable[[np.ndarray, Mapping[str, Any]], np.ndarray]) -> Operator:
    return Operator(partial(_unary_kernel, fn), same_shape)


def _relu(x: np.ndarray, args: Mapping[str, Any]) -> np.ndarray:
    return np.maximum(x, 0)


def _leaky_relu(x: np.ndarray, args: Mapping[str, Any]) -> np.ndarray:
    return np.where(x > 0, x, x * float(args.get("alpha", 0.01)))


def _scale(x: np.ndarray, args: Mapping[str, Any]) -> np.ndarray:
    return x * np.float32(args.get("scale", 1.0))


def _sqr(x: np.ndarray, args: Mapping[str, Any]) -> np.ndarray:
    return x * x


def _elementwise(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray, Mapping[str, Any]], np.ndarray]:
    """An element function without arguments (a NumPy ufunc) as a unary kernel's function."""
    return partial(_ignore_args, fn)


def _ignore_args(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, args: Mapping[str, Any]) -> np.ndarray:
    return fn(x)


def _copy(inputs: Sequence[np.ndarray], args: Mapping[str, Any], n: int) -> list[np.ndarray]:
    return [inputs[0].copy()]


def _softplus(x: np.ndarray, args: Mapping[str, Any]) -> np.ndarray:
    return np.logaddexp(0.0, x.astype(np.float64))


def _elu(x: np.ndarray, args: Mapping[str, Any]) -> np.ndarray:
    alpha = float(args.get("alpha", 1.0))
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0).astype(np.float64)))


def _sigmoid(x: np.ndarray, args: Mapping[str, Any]) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x.astype(np.float64)))


# -- broadcasting arithmetic --------------------------------------------------------------------

def _legacy_broadcast(a: Shape, b: Shape, args: Mapping[str, Any]) -> Shape:
    """Caffe2's legacy rule (``broadcast=1``): ``b`` matches a run of ``a``'s dims from ``axis``.

    Returns the shape ``b`` takes to broadcast NumPy-style onto ``a``.
    """
    if len(b) == 0 or (len(b) == 1 and b[0] == 1):
        return (1,) * len(a)
    axis = int(args.get("axis", -1))
    if axis < 0:
        axis = len(a) - len(b)
    if tuple(a[axis : axis + len(b)]) != tuple(b):
        raise NetDefError(f"shape {list(b)} cannot broadcast onto {list(a)} at axis {axis}")
    return (1,) * axis + tuple(b) + (1,) * (len(a) - axis - len(b))


def binary_shapes(a: Shape, b: Shape, args: Mapping[str, Any]) -> tuple[Shape, Shape]:
    """(the output shape, the shape ``b`` is viewed as) under Caffe2's two broadcasting rules:
    ``broadcast=1`` is the legacy axis rule, otherwise NumPy's multidirectional rule applies."""
    if int(args.get("broadcast", 0)):
        return tuple(a), _legacy_broadcast(a, b, args)
    try:
        return tuple(np.broadcast_shapes(tuple(a), tuple(b))), tuple(b)
    except ValueError:
        raise NetDefError(f"shapes {list(a)} and {list(b)} do not broadcast (NumPy's rule, broadcast=0)") from None


def _binary_kernel(fn: Callable[[np.ndarray, np.ndarray], np.ndarray], inputs: Sequence[np.ndarray],
                   args: Mapping[str, Any], n: int) -> list[np.ndarray]:
    a, b = inputs
    _, view = binary_shapes(a.shape, b.shape, args)
    return [np.asarray(fn(a, b.reshape(view)), dtype=np.float32)]


def _binary_shapes(shapes: Sequence[Shape], args: Mapping[str, Any], n: int) -> list[Shape]:
    return [binary_shapes(shapes[0], shapes[1], args)[0]]


def _binary(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Operator:
    return Operator(partial(_binary_kernel, fn), _binary_shapes, (2, 2))


def _pow(inputs: Sequence[np.ndarray], args: Mapping[str, Any], n: int) -> list[np.ndarray]:
    x = inputs[0].astype(np.float64)
    if len(inputs) == 1:
        return [np.power(x, float(args["exponent"])).astype(np.float32)]
    exponent = inputs[1].reshape(_pow_view(inputs[0].shape, inputs[1].shape, args))
    return [np.power(x, exponent.astype(np.float64)).astype(np.float32)]


def _pow_view(a: Shape, b: Shape, args: Mapping[str, Any]) -> Shape:
    """Caffe2's Pow takes an exponent tensor of ``a``'s shape, or the legacy broadcast rule."""
    if int(args.get("broadcast", 0)):
        return _legacy_broadcast(a, b, args)
    if tuple(a) != tuple(b):
        raise NetDefError(f"Pow exponent shape {list(b)} differs from {list(a)} and broadcast is not set")
    return tuple(b)


def _pow_shapes(shapes: Sequence[Shape], args: Mapping[str, Any], n: int) -> list[Shape]:
    if len(shapes) == 1:
        if "exponent" not in args:
            raise NetDefError("Pow needs an 'exponent' argument or a second input")
    else:
        if "exponent" in args:
            raise NetDefError("Pow has both an 'exponent' argument and an exponent input")
        _pow_view(shapes[0], shapes[1], args)
    return [tuple(shapes[0])]


def _variadic_kernel(fn: Callable[[np.ndarray, np.ndarray], np.ndarray], inputs: Sequence[np.ndarray],
                     args: Mapping[str, Any], n: int) -> list[np.ndarray]:
    result = inputs[0]
    for other in inputs[1:]:
        result = fn(result, other)
    return [np.asarray(result, dtype=np.float32)]


def _variadic_shapes(shapes: Sequence[Shape], args: Mapping[str, Any], n: int) -> list[Shape]:
    if any(tuple(s) != tuple(shapes[0]) for s in shapes):
        raise NetDefError(f"inputs must share one shape, found {[list(s) for s in shapes]}")
    return [tuple(shapes[0])]


def _variadic(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Operator:
    return Operator(partial(_variadic_kernel, fn), _variadic_shapes, (1, MANY))


def _prelu(inputs: Sequence[np.ndarray], args: Mapping[str, Any], n: int) -> list[np.ndarray]:
    x, slope = inputs
    if slope.size != 1:
        slope = slope.reshape((1, -1) + (1,) * (x.ndim - 2))
    return [np.where(x > 0, x, x * slope).astype(np.float32)]


def _prelu_shapes(shapes: Sequence[Shape], args: Mapping[str, Any], n: int) -> list[Shape]:
    x, slope = shapes
    if int(np.prod(slope)) not in (1, x[1]):
        raise NetDefError(f"PRelu slope shape {list(slope)} fits neither 1 nor {x[1]} channels")
    return [tuple(x)]


# -- shape operators ----------------------------------------------------------------------------

def _flat_shape(shape: Shape, axis: int) -> Shape:
    return (int(np.prod(shape[:axis], dtype=np.int64)), int(np.prod(shape[axis:], dtype=np.int64)))


def _flatten(inputs: Sequence[np.ndarray], args: Mapping[str, Any], n: int) -> list[np.ndarray]:
    return [inputs[0].reshape(_flat_shape(inputs[0].shape, int(args.get("axis", 1))))]


def _flatten_shapes(shapes: Sequence[Shape], args: Mapping[str, Any], n: int) -> list[Shape]:
    return [_flat_shape(tuple(shapes[0]), int(args.get("axis", 1)))]


def reshape_target(shape: Shape, spec: Sequence[int]) -> Shape:
    """Resolve a reshape spec where 0 copies a dim and -1 is inferred (Caffe2's and ONNX's rule)."""
    out = [int(shape[i]) if d == 0 else int(d) for i, d in enumerate(spec)]
    total = int(np.prod(shape, dtype=np.int64))
    if out.count(-1) > 1:
        raise NetDefError(f"reshape spec {list(spec)} has more than one -1")
    if -1 in out:
        known = int(np.prod([d for d in out if d != -1], dtype=np.int64))
        if known == 0 or total % known:
            raise NetDefError(f"cannot reshape {list(shape)} to {list(spec)}")
        out[out.index(-1)] = total // known
    if int(np.prod(out, dtype=np.int64)) != total:
        raise NetDefError(f"cannot reshape {list(shape)} ({total} values) to {list(spec)}")
    return tuple(out)


def _reshape_spec(args: Mapping[str, Any]) -> list[int]:
    if "shape" not in args:
        raise NetDefError("Reshape needs a 'shape' argument (a shape input is not supported)")
    return [int(d) for d in args["shape"]]


def _reshape(inputs: Sequence[np.ndarray], args: Mapping[str, Any], n: int) -> list[np.ndarray]:
    """The reshaped tensor and, as Caffe2's second output, the old shape (int64)."""
    x = inputs[0]
    return [x.reshape(reshape_target(x.shape, _reshape_spec(args))), np.asarray(x.shape, dtype=np.int64)]


def _reshape_shapes(shapes: Sequence[Shape], args: Mapping[str, Any], n: int) -> list[Shape]:
    return [reshape_target(tuple(shapes[0]), _reshape_spec(args)), (len(shapes[0]),)]


def _transpose_axes(rank: int, args: Mapping[str, Any]) -> list[int]:
    return [int(a) for a in args.get("axes", list(range(rank))[::-1])]


def _transpose(inputs: Sequence[np.ndarray], args: Mapping[str, Any], n: int) -> list[np.ndarray]:
    x = inputs[0]
    return [np.ascontiguousarray(x.transpose(_transpose_axes(x.ndim, args)))]


def _transpose_shapes(shapes: Sequence[Shape], args: Mapping[str, Any], n: int) -> list[Shape]:
    x = shapes[0]
    return [tuple(x[a] for a in _transpose_axes(len(x), args))]


def slice_bounds(shape: Shape, args: Mapping[str, Any]) -> list[slice]:
    """Caffe2's Slice: a negative end counts from one past the last element (-1 = to the end)."""
    starts, ends = list(args["starts"]), list(args["ends"])
    if len(starts) != len(ends) or len(starts) > len(shape):
        raise NetDefError(f"Slice starts {starts} and ends {ends} do not fit shape {list(shape)}")
    bounds = []
    for dim, start, end in zip(shape, starts, ends):
        start = start + dim + 1 if start < 0 else start
        end = end + dim + 1 if end < 0 else end
        if not 0 <= start <= end <= dim:
            raise NetDefError(f"Slice [{start}, {end}) lies outside a dimension of {dim}")
        bounds.append(slice(start, end))
    return bounds


def _one_axis(shape: Shape, bounds: list[slice]) -> None:
    cut = [i for i, (dim, b) in enumerate(zip(shape, bounds)) if (b.start, b.stop) != (0, dim)]
    if len(cut) > 1:
        raise NetDefError(f"Slice cuts axes {cut}: Caffe2's Slice cuts only one axis (chain one Slice per axis)")


def _slice(inputs: Sequence[np.ndarray], args: Mapping[str, Any], n: int) -> list[np.ndarray]:
    bounds = slice_bounds(inputs[0].shape, args)
    _one_axis(inputs[0].shape, bounds)
    return [np.ascontiguousarray(inputs[0][tuple(bounds)])]


def _slice_shapes(shapes: Sequence[Shape], args: Mapping[str, Any], n: int) -> list[Shape]:
    shape = tuple(shapes[0])
    bounds = slice_bounds(shape, args)
    _one_axis(shape, bounds)
    return [tuple(b.stop - b.start for b in bounds) + shape[len(bounds):]]


def concat_axis(args: Mapping[str, Any], rank: int) -> int:
    """Caffe2's Concat axis: ``axis``, or from ``order`` (NCHW: 1, NHWC: last), never both."""
    if "axis" in args and "order" in args:
        raise NetDefError("Concat has both 'axis' and 'order' (Caffe2 refuses that)")
    if int(args.get("add_axis", 0)):
        raise NetDefError("Concat with add_axis is not supported")
    if "order" in args:
        order = args["order"]
        if order not in ("NCHW", "NHWC"):
            raise NetDefError(f"Concat order {order!r} is neither NCHW nor NHWC")
        return 1 if order == "NCHW" else rank - 1
    return int(args.get("axis", 1)) % rank


def _concat(inputs: Sequence[np.ndarray], args: Mapping[str, Any], n: int) -> list[np.ndarray]:
    axis = concat_axis(args, inputs[0].ndim)
    return [np.concatenate(inputs, axis=axis), np.asarray([x.shape[axis] for x in inputs], dtype=np.int32)]


def _concat_shapes(shapes: Sequence[Shape], args: Mapping[str, Any], n: int) -> list[Shape]:
    axis = concat_axis(args, len(shapes[0]))
    first = list(shapes[0])
    for shape in shapes[1:]:
        if len(shape) != len(first) or any(
            a != b for i, (a, b) in enumerate(zip(shape, first)) if i != axis
        ):
            raise NetDefError(f"Concat inputs {[list(s) for s in shapes]} differ off axis {axis}")
    sizes = [int(s[axis]) for s in shapes]
    first[axis] = DYNAMIC if DYNAMIC in sizes else sum(sizes)
    return [tuple(first), (len(shapes),)]


def _split_sizes(shape: Shape, args: Mapping[str, Any], n: int) -> list[int]:
    axis = int(args.get("axis", 1))
    if "split" in args:
        sizes = [int(s) for s in args["split"]]
    else:
        if shape[axis] % n:
            raise NetDefError(f"cannot split a dimension of {shape[axis]} into {n} equal parts")
        sizes = [shape[axis] // n] * n
    if len(sizes) != n or sum(sizes) != shape[axis]:
        raise NetDefError(f"split sizes {sizes} do not cover a dimension of {shape[axis]} in {n} outputs")
    return sizes


def _split(inputs: Sequence[np.ndarray], args: Mapping[str, Any], n: int) -> list[np.ndarray]:
    x = inputs[0]
    axis = int(args.get("axis", 1))
    cuts = np.cumsum(_split_sizes(x.shape, args, n))[:-1]
    return [np.ascontiguousarray(part) for part in np.split(x, cuts, axis=axis)]


def _split_shapes(shapes: Sequence[Shape], args: Mapping[str, Any], n: int) -> list[Shape]:
    shape = tuple(shapes[0])
    axis = int(args.get("axis", 1))
    return [shape[:axis] + (size,) + shape[axis + 1 :] for size in _split_sizes(shape, args, n)]


def _argmax(inputs: Sequence[np.ndarray], args: Mapping[str, Any], n: int) -> list[np.ndarray]:
    axis = int(args.get("axis", -1))
    keep = bool(int(args.get("keepdims", 1)))
    return [np.argmax(inputs[0], axis=axis, keepdims=keep).astype(np.int64)]


def _argmax_shapes(shapes: Sequence[Shape], args: Mapping[str, Any], n: int) -> list[Shape]:
    shape = list(shapes[0])
    axis = int(args.get("axis", -1)) % len(shape)
    if int(args.get("keepdims", 1)):
        shape[axis] = 1
    else:
        del shape[axis]
    return [tuple(shape)]


def cast_code(args: Mapping[str, Any]) -> int:
    """Cast's ``to`` as a caffe2.TensorProto code: an int, or a type name in any case ("int32"),
    as Caffe2's GetCastDataType reads it (default FLOAT)."""
    to = args.get("to", 1)
    if not isinstance(to, str):
        return int(to)
    try:
        return schema.TensorProto.DataType.Value(to.upper())
    except ValueError:
        raise NetDefError(f"Cast to {to!r}: not a Caffe2 data type") from None


def _cast_type(args: Mapping[str, Any]) -> Any:
    to = cast_code(args)
    if to not in _CAST_TYPES:
        raise NetDefError(f"Cast to data type {to} is not supported")
    return _CAST_TYPES[to]


def _cast(inputs: Sequence[np.ndarray], args: Mapping[str, Any], n: int) -> list[np.ndarray]:
    return [inputs[0].astype(_cast_type(args))]


def _cast_shapes(shapes: Sequence[Shape], args: Mapping[str, Any], n: int) -> list[Shape]:
    _cast_type(args)
    return [tuple(shapes[0])]


def _dropout(inputs: Sequence[np.ndarray], args: Mapping[str, Any], n: int) -> list[np.ndarray]:
    """Test-mode Dropout copies its input; like real Caffe2 it leaves the mask output unwritten."""
    require_test_mode("Dropout", args)
    return [inputs[0]]


def _dropout_shapes(shapes: Sequence[Shape], args: Mapping[str, Any], n: int) -> list[Shape]:
    require_test_mode("Dropout", args)
    return [tuple(shapes[0])]



# -- SSD's Normalize (zooforge issue 13): ReduceSum and Sqrt ------------------------------------

def _reduce_axes(shape: Shape, args: Mapping[str, Any]) -> tuple[int, ...]:
    """Caffe2's ReduceOp axes: each in ``[-rank, rank)``, negative counting from the end, no
    repeats; none given means every axis."""
    rank = len(shape)
    given = [int(a) for a in args.get("axes", [])]
    if any(not -rank <= a < rank for a in given):
        raise NetDefError(f"ReduceSum axes {given} are out of range for a {rank}-D input")
    axes = tuple(sorted({a % rank for a in given})) if given else tuple(range(rank))
    if len(axes) != len(given) and given:
        raise NetDefError(f"ReduceSum axes {given} repeat an axis")
    return axes


def _clip(x: np.ndarray, args: Mapping[str, Any]) -> np.ndarray:
    """Caffe2's Clip (clip_op.cc): ``min``/``max`` default to float's lowest and largest values."""
    limits = np.finfo(np.float32)
    low, high = float(args.get("min", limits.min)), float(args.get("max", limits.max))
    return np.clip(x, np.float32(low), np.float32(high)).astype(x.dtype, copy=False)


def _reduce_sum(inputs: Sequence[np.ndarray], args: Mapping[str, Any], n: int) -> list[np.ndarray]:
    x = inputs[0]
    axes = _reduce_axes(x.shape, args)
    keep = bool(int(args.get("keepdims", 1)))
    return [np.asarray(x.astype(np.float64).sum(axis=axes, keepdims=keep), dtype=x.dtype)]


def _reduce_sum_shapes(shapes: Sequence[Shape], args: Mapping[str, Any], n: int) -> list[Shape]:
    shape = tuple(shapes[0])
    axes = _reduce_axes(shape, args)
    if int(args.get("keepdims", 1)):
        return [tuple(1 if i in axes else d for i, d in enumerate(shape))]
    return [tuple(d for i, d in enumerate(shape) if i not in axes)]

OPERATORS: dict[str, Operator] = {
    "Relu": _unary(_relu),
    "LeakyRelu": _unary(_leaky_relu),
    "PRelu": Operator(_prelu, _prelu_shapes, (2, 2)),
    "Sigmoid": _unary(_sigmoid),
    "Tanh": _unary(_elementwise(np.tanh)),
    "Elu": _unary(_elu),
    "Abs": _unary(_elementwise(np.abs)),
    "Exp": _unary(_elementwise(np.exp)),
    "Log": _unary(_elementwise(np.log)),
    "Softplus": _unary(_softplus),
    "Sqr": _unary(_sqr),
    "Pow": Operator(_pow, _pow_shapes, (1, 2)),
    "Scale": _unary(_scale),
    "Copy": Operator(_copy, same_shape),
    "Dropout": Operator(_dropout, _dropout_shapes, outputs=(1, 2)),
    "Add": _binary(np.add),
    "Sub": _binary(np.subtract),
    "Mul": _binary(np.multiply),
    "Div": _binary(np.divide),
    "Sum": _variadic(np.add),
    "Max": _variadic(np.maximum),
    "Flatten": Operator(_flatten, _flatten_shapes),
    "Reshape": Operator(_reshape, _reshape_shapes, outputs=(2, 2)),  # Caffe2: the result and the old shape
    "Transpose": Operator(_transpose, _transpose_shapes),
    "Slice": Operator(_slice, _slice_shapes),
    "Concat": Operator(_concat, _concat_shapes, (1, MANY), (2, 2), dynamic=True),  # Caffe2: the result and split_info
    "Split": Operator(_split, _split_shapes, outputs=(1, MANY)),
    "ArgMax": Operator(_argmax, _argmax_shapes),
    # SSD's Normalize (issue 13)
    "ReduceSum": Operator(_reduce_sum, _reduce_sum_shapes),
    "Clip": _unary(_clip),  # DetectionOutput's clip (OpenCV's field; the res10 face detector sets it)
    "Sqrt": _unary(_elementwise(np.sqrt)),
    "Cast": Operator(_cast, _cast_shapes, dynamic=True),
}
