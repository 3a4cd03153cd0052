"""Kernels for ``onnx.reference.ReferenceEvaluator`` where its own are missing or wrong.

onnxruntime refuses models below opset 7, so the legacy variants (opsets 3..6) can only run on
the reference evaluator, and it has to run them right. A probe over single-node models of every
operator zooforge writes, at opsets 3..6 (onnx 1.23.2), compared against the equivalent modern
model on onnxruntime, found the stock evaluator

* cannot run: Add/Sub/Mul/Div-1 and -6 with ``axis`` (legacy broadcasting), Pow-1 with
  ``broadcast``, Sum-1 and PRelu-1 with ``consumed_inputs``, BatchNormalization-1, Gemm-1,
  Concat-1 without ``axis``, Reshape-1 (``shape`` attribute), Dropout-1 and Dropout-6,
  Clip-1, Cast-1 (``to`` given as a string);
* runs but is wrong: Gemm-6 with ``broadcast=0`` (drops ``beta``), AveragePool-1 (counts the
  pads in the divisor; before opset 7 they are excluded), Softmax-1 (normalises one axis instead
  of the coerced 2-D block ``[axis:]``; Softmax-11 has the same semantics), LRN-1 and LRN-13
  (the window runs over the batch axis instead of the channels).

Each kernel here covers one such (operator, version) and nothing else; operators the evaluator
runs right (Relu-1 with ``consumed_inputs``, Conv-1, MaxPool-1, Split-2, Slice-1, ...) keep its
own kernels. The evaluator matches ``new_ops`` by class name == op_type for every version, so
:func:`kernels_for_opset` hands out, per opset, subclasses named after the op of exactly those
kernels whose version is the one active at that opset. Operator versions that are only active
below opset 3 (Split-1, Pad-1) are out of zooforge's range and not covered.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
from onnx import TensorProto, defs, helper
from onnx.reference.op_run import OpRun

__all__ = ["KERNELS", "kernels_for_opset", "lrn_reference"]


def _schema(op_type: str, version: int) -> defs.OpSchema:
    return defs.get_schema(op_type, version, "")


class _LegacyOp(OpRun):
    """Base: the attribute defaults come from the legacy schema, not the newest one."""

    op_domain = ""
    op_type: str = ""
    since_version: int = 0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.op_type and "op_schema" not in cls.__dict__:
            cls.op_schema = _schema(cls.op_type, cls.since_version)

    def _n_outputs(self) -> int:
        return len(self.onnx_node.output)


# --------------------------------------------------------------------------- broadcasting


def legacy_broadcast(a: np.ndarray, b: np.ndarray, broadcast: int, axis: int | None) -> np.ndarray:
    """Return ``b`` shaped so NumPy broadcasting applies the opset <= 6 rules onto ``a``.

    Without ``broadcast`` the shapes must match. With it, ``b`` has one element (any rank up to ``a``'s),
    or a contiguous run of ``a``'s dimensions: starting at ``axis`` when given, else the
    trailing ones (suffix matching).
    """
    if not broadcast:
        if a.shape != b.shape:
            raise ValueError(
                f"legacy elementwise op without broadcast needs equal shapes, got {a.shape} and {b.shape}"
            )
        return b
    if b.size == 1 and (b.ndim <= 1 or b.ndim <= a.ndim):  # the spec: one element, rank up to A's: (1, 1) too
        return b.reshape(())
    if axis is None:
        start = a.ndim - b.ndim
    else:
        start = axis + a.ndim if axis < 0 else axis
    if start < 0 or a.shape[start : start + b.ndim] != b.shape:
        raise ValueError(
            f"legacy broadcast cannot place shape {b.shape} onto {a.shape} at axis {start}"
        )
    return b.reshape(b.shape + (1,) * (a.ndim - start - b.ndim))


class _LegacyBinary(_LegacyOp):
    ufunc: Any = None

    def _run(self, a, b, broadcast=0, axis=None, **_):  # consumed_inputs is ignored
        b = legacy_broadcast(a, b, broadcast, axis)
        return (np.asarray(self.ufunc(a, b)).astype(a.dtype, copy=False),)


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if np.issubdtype(a.dtype, np.integer):
        return np.trunc(a / b).astype(a.dtype)
    return a / b


class Add_1(_LegacyBinary):
    op_type, since_version, ufunc = "Add", 1, staticmethod(np.add)


class Add_6(_LegacyBinary):
    op_type, since_version, ufunc = "Add", 6, staticmethod(np.add)


class Sub_1(_LegacyBinary):
    op_type, since_version, ufunc = "Sub", 1, staticmethod(np.subtract)


class Sub_6(_LegacyBinary):
    op_type, since_version, ufunc = "Sub", 6, staticmethod(np.subtract)


class Mul_1(_LegacyBinary):
    op_type, since_version, ufunc = "Mul", 1, staticmethod(np.multiply)


class Mul_6(_LegacyBinary):
    op_type, since_version, ufunc = "Mul", 6, staticmethod(np.multiply)


class Div_1(_LegacyBinary):
    op_type, since_version, ufunc = "Div", 1, staticmethod(_div)


class Div_6(_LegacyBinary):
    op_type, since_version, ufunc = "Div", 6, staticmethod(_div)


class Pow_1(_LegacyBinary):
    op_type, since_version, ufunc = "Pow", 1, staticmethod(np.power)


class Sum_1(_LegacyOp):
    """Sum-1: same-shape inputs, ``consumed_inputs`` ignored."""

    op_type, since_version = "Sum", 1

    def _run(self, *inputs, **_):
        out = inputs[0].copy()
        for x in inputs[1:]:
            out = out + x
        return (out.astype(inputs[0].dtype, copy=False),)


class PRelu_1(_LegacyOp):
    """PRelu-1: slope of shape (C,) applies per channel (axis 1), (1,) to everything."""

    op_type, since_version = "PRelu", 1

    def _run(self, x, slope, **_):
        if slope.ndim == 1 and slope.size > 1 and x.ndim >= 2 and slope.shape[0] == x.shape[1]:
            slope = slope.reshape((-1,) + (1,) * (x.ndim - 2))
        elif slope.size == 1:
            slope = slope.reshape(())
        return (np.where(x < 0, x * slope, x).astype(x.dtype, copy=False),)


# --------------------------------------------------------------------------- nn


class _BatchNormLegacy(_LegacyOp):
    def _run(self, x, scale, bias, mean, var, epsilon=1e-5, is_test=0, momentum=0.9, spatial=1, **_):
        if spatial:
            shape = (1, -1) + (1,) * (x.ndim - 2)
            stat_axes = (0, *range(2, x.ndim))
        else:  # per activation: parameters have the shape of one sample, C x D1 x ...
            shape = (1, *x.shape[1:])
            stat_axes = (0,)
        s, b = scale.reshape(shape), bias.reshape(shape)
        if is_test:
            m, v = mean.reshape(shape), var.reshape(shape)
            y = (x - m) / np.sqrt(v + epsilon) * s + b
            return (y.astype(x.dtype, copy=False),)
        # Training mode: normalise with the batch statistics and update the running ones.
        bm = x.mean(axis=stat_axes, keepdims=True)
        bv = x.var(axis=stat_axes, keepdims=True)
        y = ((x - bm) / np.sqrt(bv + epsilon) * s + b).astype(x.dtype, copy=False)
        bm_flat, bv_flat = bm.reshape(mean.shape), bv.reshape(var.shape)
        outs = (
            y,
            (mean * momentum + bm_flat * (1 - momentum)).astype(mean.dtype),
            (var * momentum + bv_flat * (1 - momentum)).astype(var.dtype),
            bm_flat.astype(mean.dtype),
            bv_flat.astype(var.dtype),
        )
        return outs[: self._n_outputs()]


class BatchNormalization_1(_BatchNormLegacy):
    op_type, since_version = "BatchNormalization", 1


class _BatchNormByOutputs(_BatchNormLegacy):
    """BatchNormalization-7/-9: test mode when the node has one output, training with five. onnx
    1.23's own kernels get both wrong: its BN-7 returns a tuple inside the result (the evaluator
    fails), and its BN-9 takes the schema's default ``momentum`` 0.9 as a request for training and
    normalises with the batch's statistics (0.09 off on unit-scale inputs, measured)."""

    def _run(self, x, scale, bias, mean, var, epsilon=1e-5, momentum=0.9, spatial=1, **_):
        return super()._run(x, scale, bias, mean, var, epsilon=epsilon, is_test=int(self._n_outputs() == 1),
                            momentum=momentum, spatial=spatial)


class BatchNormalization_7(_BatchNormByOutputs):
    op_type, since_version = "BatchNormalization", 7


class BatchNormalization_9(_BatchNormByOutputs):
    op_type, since_version = "BatchNormalization", 9


class _GemmLegacy(_LegacyOp):
    def _run(self, a, b, c, alpha=1.0, beta=1.0, transA=0, transB=0, broadcast=0, **_):
        a2 = a.T if transA else a
        b2 = b.T if transB else b
        y = alpha * (a2 @ b2)
        if broadcast:
            c = np.broadcast_to(c, y.shape)
        elif c.shape != y.shape:
            raise ValueError(f"Gemm without broadcast needs C of shape {y.shape}, got {c.shape}")
        return ((y + beta * c).astype(a.dtype, copy=False),)


class Gemm_1(_GemmLegacy):
    op_type, since_version = "Gemm", 1


class Gemm_6(_GemmLegacy):
    op_type, since_version = "Gemm", 6


class Concat_1(_LegacyOp):
    """Concat-1: ``axis`` optional, default 1."""

    op_type, since_version = "Concat", 1

    def _run(self, *inputs, axis=None, **_):
        return (np.concatenate(inputs, axis=1 if axis is None else axis),)


class Reshape_1(_LegacyOp):
    """Reshape-1: the target shape is an attribute; 0 copies the input dim, -1 is inferred."""

    op_type, since_version = "Reshape", 1

    def _run(self, data, shape=None, **_):
        if shape is None:
            raise ValueError("Reshape-1 needs its 'shape' attribute")
        target = [data.shape[i] if d == 0 else int(d) for i, d in enumerate(shape)]
        return (data.reshape(target),)


class _DropoutLegacy(_LegacyOp):
    """Inference: identity. ``is_test=0`` (training) is run as inference too, as every runtime
    that still loads these models does; the optional mask is all ones."""

    def _run(self, data, **_):
        outs = (data.copy(), np.ones_like(data))
        return outs[: self._n_outputs()]


class Dropout_1(_DropoutLegacy):
    op_type, since_version = "Dropout", 1


class Dropout_6(_DropoutLegacy):
    op_type, since_version = "Dropout", 6


class Clip_1(_LegacyOp):
    """Clip-1: ``min``/``max`` attributes, each optional (unbounded when absent)."""

    op_type, since_version = "Clip", 1

    def _run(self, x, min=None, max=None, **_):  # noqa: A002 - ONNX attribute names
        y = x
        if min is not None:
            y = np.maximum(y, np.asarray(min, dtype=x.dtype))
        if max is not None:
            y = np.minimum(y, np.asarray(max, dtype=x.dtype))
        return (np.asarray(y, dtype=x.dtype),)


class Cast_1(_LegacyOp):
    """Cast-1: ``to`` is a type name (``"FLOAT"``, ``"INT64"``...), not the enum value."""

    op_type, since_version = "Cast", 1

    def _run(self, x, to=None, **_):
        if isinstance(to, bytes):
            to = to.decode()
        if isinstance(to, str):
            try:
                to = TensorProto.DataType.Value(to.upper())
            except ValueError:
                raise ValueError(f"Cast-1: unknown target type {to!r}") from None
        dtype = helper.tensor_dtype_to_np_dtype(int(to))
        return (x.astype(dtype),)


# --------------------------------------------------------------------------- pooling


def _pool_pads(x: np.ndarray, kernel, strides, pads, auto_pad: str) -> list[int]:
    spatial = x.shape[2:]
    n = len(spatial)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        out = []
        for dim, k, s in zip(spatial, kernel, strides):
            total = max((-(-dim // s) - 1) * s + k - dim, 0)
            small, big = total // 2, total - total // 2
            out.append((big, small) if auto_pad == "SAME_LOWER" else (small, big))
        return [p[0] for p in out] + [p[1] for p in out]
    if auto_pad == "VALID":
        return [0] * (2 * n)
    return list(pads) if pads else [0] * (2 * n)


class AveragePool_1(_LegacyOp):
    """AveragePool-1: floor output size; padded cells do not count in the divisor."""

    op_type, since_version = "AveragePool", 1

    def _run(self, x, kernel_shape=None, strides=None, pads=None, auto_pad="NOTSET", **_):
        n = x.ndim - 2
        kernel = list(kernel_shape)
        strides = list(strides) if strides else [1] * n
        p = _pool_pads(x, kernel, strides, pads, auto_pad)
        width = [(0, 0), (0, 0)] + [(p[i], p[i + n]) for i in range(n)]
        xs = np.pad(x.astype(np.float64), width)
        ones = np.pad(np.ones(x.shape[2:]), width[2:])
        axes = tuple(range(2, x.ndim))
        win = np.lib.stride_tricks.sliding_window_view(xs, kernel, axis=axes)
        cnt = np.lib.stride_tricks.sliding_window_view(ones, kernel)
        sl = tuple(slice(None, None, s) for s in strides)
        total = win[(slice(None), slice(None), *sl)].sum(axis=tuple(range(-n, 0)))
        count = cnt[sl].sum(axis=tuple(range(-n, 0)))
        return ((total / count).astype(x.dtype),)


# --------------------------------------------------------------------------- softmax, LRN


class _SoftmaxCoerced(_LegacyOp):
    """Softmax-1/-11: the input is coerced to 2-D at ``axis`` ([:axis] x [axis:])."""

    def _run(self, x, axis=1, **_):
        axis = axis + x.ndim if axis < 0 else axis
        flat = x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1).astype(np.float64)
        flat = np.exp(flat - flat.max(axis=1, keepdims=True))
        flat /= flat.sum(axis=1, keepdims=True)
        return (flat.reshape(x.shape).astype(x.dtype),)


class Softmax_1(_SoftmaxCoerced):
    op_type, since_version = "Softmax", 1


class Softmax_11(_SoftmaxCoerced):
    op_type, since_version = "Softmax", 11


def lrn_reference(x: np.ndarray, size: int, alpha: float, beta: float, bias: float) -> np.ndarray:
    """LRN across channels (axis 1), as the spec defines it for LRN-1 and LRN-13.

    square_sum[n, c] = sum of x[n, i]^2 for i in [c - floor((size-1)/2), c + ceil((size-1)/2)]
    (clipped to the valid channels); y = x / (bias + alpha / size * square_sum) ** beta.
    """
    xd = x.astype(np.float64)
    before, after = (size - 1) // 2, size - 1 - (size - 1) // 2
    sq = np.pad(xd * xd, [(0, 0), (before, after)] + [(0, 0)] * (x.ndim - 2))
    csum = np.concatenate([np.zeros_like(sq[:, :1]), np.cumsum(sq, axis=1)], axis=1)
    channels = x.shape[1]
    square_sum = csum[:, size : size + channels] - csum[:, :channels]
    return (xd / (bias + alpha / size * square_sum) ** beta).astype(x.dtype)


class _LRNChannels(_LegacyOp):
    def _run(self, x, size=None, alpha=1e-4, beta=0.75, bias=1.0, **_):
        return (lrn_reference(x, int(size), float(alpha), float(beta), float(bias)),)


class LRN_1(_LRNChannels):
    op_type, since_version = "LRN", 1


class LRN_13(_LRNChannels):
    op_type, since_version = "LRN", 13


# --------------------------------------------------------------------------- selection

#: Every kernel, keyed by (op_type, since_version). A constant: nothing registers at runtime.
KERNELS: dict[tuple[str, int], type[_LegacyOp]] = {
    (cls.op_type, cls.since_version): cls
    for cls in (
        Add_1, Add_6, Sub_1, Sub_6, Mul_1, Mul_6, Div_1, Div_6, Pow_1, Sum_1, PRelu_1,
        BatchNormalization_1, BatchNormalization_7, BatchNormalization_9, Gemm_1, Gemm_6, Concat_1, Reshape_1, Dropout_1, Dropout_6,
        Clip_1, Cast_1, AveragePool_1, Softmax_1, Softmax_11, LRN_1, LRN_13,
    )
}


@lru_cache(maxsize=None)
def kernels_for_opset(opset: int) -> tuple[type[OpRun], ...]:
    """The ``new_ops`` for a model of this default-domain opset.

    For each operator whose active version at ``opset`` has a kernel here, a subclass named
    after the op (the evaluator looks ``new_ops`` up by ``op_type``). Memoised, not a registry.
    """
    out: list[type[OpRun]] = []
    for op_type in sorted({op for op, _ in KERNELS}):
        try:
            active = defs.get_schema(op_type, opset, "").since_version
        except defs.SchemaError:
            continue
        cls = KERNELS.get((op_type, active))
        if cls is not None:
            out.append(type(op_type, (cls,), {"__module__": __name__, "__doc__": cls.__doc__}))
    return tuple(out)
