"""Neural-network operators: convolution, pooling, normalisation, fully connected, softmax."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from zooforge.converters.caffe2.executor.geometry import (
    LegacyPadding, Window, is_global, legacy_padding, resolve_window, window_geometry,
)
from zooforge.converters.caffe2.executor.operator import Operator, Shape, require_test_mode, same_shape
from zooforge.converters.errors import NetDefError


def _check_order(args: Mapping[str, Any]) -> None:
    if args.get("order", "NCHW") != "NCHW":
        raise NetDefError(f"only NCHW order is supported, found {args['order']!r}")


def _spatial(shape: Sequence[int]) -> tuple[int, int]:
    if len(shape) != 4:
        raise NetDefError(f"expected a 4-D NCHW tensor, found shape {list(shape)}")
    return int(shape[2]), int(shape[3])


def _windows(x: np.ndarray, window: Window, out: tuple[int, int], fill: float) -> np.ndarray:
    """Views of shape (N, C, OH, OW, KH, KW) over ``x`` padded with ``fill``."""
    kh, kw = window.kernel
    dh, dw = window.dilation
    sh, sw = window.stride
    top, left = window.pads[0], window.pads[1]
    need_h = (out[0] - 1) * sh + dh * (kh - 1) + 1
    need_w = (out[1] - 1) * sw + dw * (kw - 1) + 1
    bottom = max(0, need_h - x.shape[2] - top)
    right = max(0, need_w - x.shape[3] - left)
    if top or left or bottom or right:
        x = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=fill)
    span = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
    view = sliding_window_view(x, span, axis=(2, 3))
    return view[:, :, : need_h - span[0] + 1 : sh, : need_w - span[1] + 1 : sw, ::dh, ::dw]


# -- convolution --------------------------------------------------------------------------------

def _conv_window(args: Mapping[str, Any], x: Sequence[int], w: Sequence[int]) -> tuple[Window, tuple[int, int]]:
    _check_order(args)
    window, out = resolve_window(args, _spatial(x))
    if len(w) != 4 or window.kernel != (int(w[2]), int(w[3])):
        raise NetDefError(f"kernel {list(window.kernel)} does not match the weight shape {list(w)}")
    if out[0] <= 0 or out[1] <= 0:
        raise NetDefError(f"Conv output would be empty for input {list(x)}")
    return window, out


def _conv_shapes(shapes: Sequence[Shape], args: Mapping[str, Any], n: int) -> list[Shape]:
    x, w = shapes[0], shapes[1]
    group = int(args.get("group", 1))
    if len(w) != 4 or group < 1 or w[1] * group != x[1] or w[0] % group:
        raise NetDefError(
            f"Conv weight shape {list(w)} does not fit input {list(x)} with group {group}"
        )
    if len(shapes) > 2 and tuple(shapes[2]) != (w[0],):
        raise NetDefError(f"Conv bias shape {list(shapes[2])} is not [{w[0]}], one value per output")
    _, (oh, ow) = _conv_window(args, x, w)
    return [(x[0], w[0], oh, ow)]


def _conv(inputs: Sequence[np.ndarray], args: Mapping[str, Any], n: int) -> list[np.ndarray]:
    x, w = inputs[0], inputs[1]
    group = int(args.get("group", 1))
    window, out = _conv_window(args, x.shape, w.shape)
    cols = _windows(x, window, out, 0.0)  # N, C, OH, OW, KH, KW
    m_per_group = w.shape[0] // group
    c_per_group = w.shape[1]
    pieces = []
    for g in range(group):
        xg = cols[:, g * c_per_group : (g + 1) * c_per_group]
        wg = w[g * m_per_group : (g + 1) * m_per_group]
        pieces.append(np.tensordot(xg, wg, axes=([1, 4, 5], [1, 2, 3])))  # N, OH, OW, Mg
    y = np.concatenate(pieces, axis=3).transpose(0, 3, 1, 2)
    if len(inputs) > 2:
        y = y + inputs[2].reshape(1, -1, 1, 1)
    return [np.ascontiguousarray(y, dtype=np.float32)]


def _deconv_geometry(args: Mapping[str, Any], x: Sequence[int], w: Sequence[int]) -> tuple[Window, tuple[int, int]]:
    _check_order(args)
    if legacy_padding(args) is not LegacyPadding.NOTSET:
        raise NetDefError("ConvTranspose with a legacy_pad strategy is not supported")
    window = window_geometry(args)
    if len(w) != 4 or window.kernel != (int(w[2]), int(w[3])):
        raise NetDefError(f"kernel {list(window.kernel)} does not match the weight shape {list(w)}")
    adj = (int(args.get("adj_h", args.get("adj", 0))), int(args.get("adj_w", args.get("adj", 0))))
    out = tuple(
        window.stride[i] * (x[2 + i] - 1) + window.dilation[i] * (window.kernel[i] - 1) + 1
        - window.pads[i] - window.pads[i + 2] + adj[i]
        for i in range(2)
    )
    return window, out  # type: ignore[return-value]


def _deconv_group(x: Sequence[int], w: Sequence[int], args: Mapping[str, Any]) -> int:
    """The group count, once the weight (C, M / group, KH, KW) is known to fit the input."""
    group = int(args.get("group", 1))
    if len(w) != 4 or w[0] != x[1] or group < 1 or x[1] % group:
        raise NetDefError(f"ConvTranspose weight shape {list(w)} does not fit input {list(x)}")
    return group


def _deconv_shapes(shapes: Sequence[Shape], args: Mapping[str, Any], n: int) -> list[Shape]:
    x, w = shapes[0], shapes[1]
    group = _deconv_group(x, w, args)
    _, out = _deconv_geometry(args, x, w)
    if len(shapes) > 2 and tuple(shapes[2]) != (w[1] * group,):  # Caffe2: "bias must be 1D tensor" of M
        raise NetDefError(f"ConvTranspose bias shape {list(shapes[2])} is not [{w[1] * group}], one value per output")
    return [(x[0], w[1] * group, out[0], out[1])]


def _deconv(inputs: Sequence[np.ndarray], args: Mapping[str, Any], n: int) -> list[np.ndarray]:
    x, w = inputs[0], inputs[1]
    group = _deconv_group(x.shape, w.shape, args)
    window, out = _deconv_geometry(args, x.shape, w.shape)
    (kh, kw), (sh, sw), (dh, dw) = window.kernel, window.stride, window.dilation
    batch, channels, height, width = x.shape
    c_per_group, m_per_group = channels // group, w.shape[1]
    full_h = sh * (height - 1) + dh * (kh - 1) + 1
    full_w = sw * (width - 1) + dw * (kw - 1) + 1
    adj_h = out[0] - (full_h - window.pads[0] - window.pads[2])
    adj_w = out[1] - (full_w - window.pads[1] - window.pads[3])
    y = np.zeros((batch, m_per_group * group, full_h + adj_h, full_w + adj_w), dtype=np.float32)
    for g in range(group):
        xg = x[:, g * c_per_group : (g + 1) * c_per_group]
        wg = w[g * c_per_group : (g + 1) * c_per_group]
        cols = np.tensordot(xg, wg, axes=([1], [0]))  # N, H, W, Mg, KH, KW
        target = y[:, g * m_per_group : (g + 1) * m_per_group]
        for i in range(kh):
            for j in range(kw):
                target[
                    :, :, i * dh : i * dh + sh * (height - 1) + 1 : sh, j * dw : j * dw + sw * (width - 1) + 1 : sw
                ] += cols[:, :, :, :, i, j].transpose(0, 3, 1, 2)
    y = y[:, :, window.pads[0] : window.pads[0] + out[0], window.pads[1] : window.pads[1] + out[1]]
    if len(inputs) > 2:
        y = y + inputs[2].reshape(1, -1, 1, 1)
    return [np.ascontiguousarray(y, dtype=np.float32)]


# -- pooling ------------------------------------------------------------------------------------

def _pool_window(args: Mapping[str, Any], x: Sequence[int]) -> tuple[Window, tuple[int, int]]:
    """Real Caffe2's pooling window: no dilation, declared pads smaller than the kernel."""
    _check_order(args)
    if not is_global(args):
        declared = window_geometry(args)
        if declared.dilation != (1, 1):
            raise NetDefError("Caffe2's pooling does not support dilation")
        kernel = declared.kernel * 2
        if any(pad >= k for pad, k in zip(declared.pads, kernel)):
            raise NetDefError(f"pads {list(declared.pads)} must be smaller than the kernel {list(declared.kernel)}")
    window, out = resolve_window(args, _spatial(x))
    if out[0] <= 0 or out[1] <= 0:
        raise NetDefError(f"pooling output would be empty for input {list(x)}")
    return window, out


def _pool_shapes(shapes: Sequence[Shape], args: Mapping[str, Any], n: int) -> list[Shape]:
    x = shapes[0]
    _, out = _pool_window(args, x)
    return [(x[0], x[1], out[0], out[1])]


def _require_float(x: np.ndarray, op_type: str) -> None:
    if not np.issubdtype(x.dtype, np.floating):  # Caffe2's CPU pooling is registered for float only
        raise NetDefError(f"{op_type} needs a float tensor, found {x.dtype}")


def _max_pool(inputs: Sequence[np.ndarray], args: Mapping[str, Any], n: int) -> list[np.ndarray]:
    x = inputs[0]
    _require_float(x, "MaxPool")
    window, out = _pool_window(args, x.shape)
    cols = _windows(x, window, out, -np.inf)
    return [np.ascontiguousarray(cols.max(axis=(4, 5)), dtype=np.float32)]


def _in_image(size: int, kernel: int, stride: int, pad_begin: int, out: int) -> np.ndarray:
    """How many cells of each window along one axis lie inside the image."""
    starts = np.arange(out) * stride - pad_begin
    return (np.minimum(starts + kernel, size) - np.maximum(starts, 0)).astype(np.float64)


def _avg_pool(inputs: Sequence[np.ndarray], args: Mapping[str, Any], n: int) -> list[np.ndarray]:
    """Caffe2's average: ``count_include_pad`` divides by the kernel area, else by the cells inside
    the image. ``legacy_pad`` changes only the output size, never the divisor."""
    x = inputs[0]
    _require_float(x, "AveragePool")
    window, out = _pool_window(args, x.shape)
    sums = _windows(x, window, out, 0.0).sum(axis=(4, 5), dtype=np.float64)
    if int(args.get("count_include_pad", 0)) and not is_global(args):
        y = sums / float(window.kernel[0] * window.kernel[1])
    else:
        div_h = _in_image(x.shape[2], window.kernel[0], window.stride[0], window.pads[0], out[0])
        div_w = _in_image(x.shape[3], window.kernel[1], window.stride[1], window.pads[1], out[1])
        y = sums / (div_h[:, None] * div_w[None, :])
    return [np.ascontiguousarray(y, dtype=np.float32)]


# -- normalisation ------------------------------------------------------------------------------

def _lrn(inputs: Sequence[np.ndarray], args: Mapping[str, Any], n: int) -> list[np.ndarray]:
    _check_order(args)
    x = inputs[0].astype(np.float64)
    size = int(args["size"])
    alpha, beta, bias = float(args.get("alpha", 0)), float(args.get("beta", 0)), float(args.get("bias", 1))
    before = (size - 1) // 2
    squared = np.pad(x * x, ((0, 0), (before, size - 1 - before), (0, 0), (0, 0)))
    window_sum = sliding_window_view(squared, size, axis=1).sum(axis=-1)
    scale = bias + alpha / size * window_sum
    outputs = [(x * scale ** -beta).astype(np.float32)]
    if n > 1:
        outputs.append(scale.astype(np.float32))
    return outputs


def _spatial_bn_shapes(shapes: Sequence[Shape], args: Mapping[str, Any], n: int) -> list[Shape]:
    channels = shapes[0][1]
    for index, shape in enumerate(shapes[1:5], start=1):
        if tuple(shape) != (channels,):
            raise NetDefError(f"SpatialBN input {index} has shape {list(shape)}, expected [{channels}]")
    require_test_mode("SpatialBN", args)
    return [tuple(shapes[0])]


def _spatial_bn(inputs: Sequence[np.ndarray], args: Mapping[str, Any], n: int) -> list[np.ndarray]:
    require_test_mode("SpatialBN", args)
    x, scale, bias, mean, var = inputs
    eps = float(args.get("epsilon", 1e-5))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    inv = scale.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps)
    y = (x - mean.reshape(shape)) * inv.reshape(shape) + bias.reshape(shape)
    return [y.astype(np.float32)]


# -- fully connected and softmax ----------------------------------------------------------------

def _fc_dims(x: Sequence[int], w: Sequence[int], args: Mapping[str, Any]) -> tuple[int, int, int]:
    """Caffe2's FC: X flattened at ``axis`` to (M, K), W at ``axis_w`` to (N, K)."""
    for key, shape in (("axis", x), ("axis_w", w)):  # Caffe2's canonical_axis_index: -rank <= axis < rank
        if not -len(shape) <= int(args.get(key, 1)) < len(shape):
            raise NetDefError(f"FC {key} {int(args.get(key, 1))} is out of range for shape {list(shape)}")
    axis = int(args.get("axis", 1)) % len(x)  # in range: checked just above
    axis_w = int(args.get("axis_w", 1)) % len(w)
    m, k = int(np.prod(x[:axis], dtype=np.int64)), int(np.prod(x[axis:], dtype=np.int64))
    n, k_w = int(np.prod(w[:axis_w], dtype=np.int64)), int(np.prod(w[axis_w:], dtype=np.int64))
    if k != k_w:
        raise NetDefError(f"FC weight shape {list(w)} does not fit input {list(x)} (axis {axis}, axis_w {axis_w})")
    return m, k, n


def _fc_shapes(shapes: Sequence[Shape], args: Mapping[str, Any], n: int) -> list[Shape]:
    x, w, b = shapes[0], shapes[1], shapes[2]
    _, _, outputs = _fc_dims(x, w, args)
    if tuple(b) != (outputs,):  # Caffe2 enforces b.dim() == 1 and b.numel() == N
        raise NetDefError(f"FC bias shape {list(b)} is not [{outputs}], one value per output")
    axis = int(args.get("axis", 1)) % len(x)
    return [tuple(x[:axis]) + (outputs,)]


def _fc(inputs: Sequence[np.ndarray], args: Mapping[str, Any], n: int) -> list[np.ndarray]:
    x, w, b = inputs
    m, k, outputs = _fc_dims(x.shape, w.shape, args)
    y = x.reshape(m, k) @ w.reshape(outputs, k).T + b.reshape(-1)
    axis = int(args.get("axis", 1)) % x.ndim
    return [y.reshape(x.shape[:axis] + (outputs,)).astype(np.float32)]


def _softmax(inputs: Sequence[np.ndarray], args: Mapping[str, Any], n: int) -> list[np.ndarray]:
    """Caffe2's Softmax: the dims from ``axis`` on are flattened into one row."""
    x = inputs[0]
    axis = int(args.get("axis", 1)) % x.ndim
    rows = x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1).astype(np.float64)
    rows = np.exp(rows - rows.max(axis=1, keepdims=True))
    rows /= rows.sum(axis=1, keepdims=True)
    return [rows.reshape(x.shape).astype(np.float32)]


# -- the forks' layers (issue 13): ChannelShuffle (ShuffleNet), ResizeNearest (the YOLOv3 ports' Upsample) --

def _shuffle_group(shape: Sequence[int], args: Mapping[str, Any]) -> int:
    """Caffe2's ChannelShuffle: ``group`` (default 1) divides the channels (axis 1, NCHW)."""
    _check_order(args)
    group = int(args.get("group", 1))
    if len(shape) < 2 or group < 1 or shape[1] % group:
        raise NetDefError(f"ChannelShuffle group {group} does not divide the channels of shape {list(shape)}")
    return group


def _channel_shuffle_shapes(shapes: Sequence[Shape], args: Mapping[str, Any], n: int) -> list[Shape]:
    _shuffle_group(shapes[0], args)
    return [tuple(shapes[0])]


def _channel_shuffle(inputs: Sequence[np.ndarray], args: Mapping[str, Any], n: int) -> list[np.ndarray]:
    """Channel ``g * (C / group) + k`` moves to ``k * group + g``: (N, group, C/group, rest) with the
    two middle axes swapped (real Caffe2's channel_shuffle_op, ShuffleNet's ShuffleChannel)."""
    x = inputs[0]
    group = _shuffle_group(x.shape, args)
    n_, c = x.shape[:2]
    moved = x.reshape(n_, group, c // group, -1).transpose(0, 2, 1, 3)
    return [np.ascontiguousarray(moved.reshape(x.shape))]


def _resize_scales(args: Mapping[str, Any]) -> tuple[np.float32, np.float32]:
    _check_order(args)
    scales = (np.float32(args.get("height_scale", 1.0)), np.float32(args.get("width_scale", 1.0)))
    if min(scales) <= 0:
        raise NetDefError(f"ResizeNearest scales {[float(s) for s in scales]} must be positive")
    return scales


def _resize_nearest_shapes(shapes: Sequence[Shape], args: Mapping[str, Any], n: int) -> list[Shape]:
    x = shapes[0]
    height, width = _spatial(x)
    hs, ws = _resize_scales(args)
    out = (int(np.float32(height) * hs), int(np.float32(width) * ws))
    if min(out) < 1:
        raise NetDefError(f"ResizeNearest output would be empty for input {list(x)}")
    return [(x[0], x[1], *out)]


def _resize_nearest(inputs: Sequence[np.ndarray], args: Mapping[str, Any], n: int) -> list[np.ndarray]:
    """Real Caffe2: output size ``int(in * scale)``, source index ``min(int(out / scale), in - 1)``."""
    x = inputs[0]
    (_, _, oh, ow), = _resize_nearest_shapes([x.shape], args, n)
    hs, ws = _resize_scales(args)
    rows = np.minimum((np.arange(oh, dtype=np.float32) / hs).astype(np.int64), x.shape[2] - 1)
    cols = np.minimum((np.arange(ow, dtype=np.float32) / ws).astype(np.int64), x.shape[3] - 1)
    return [np.ascontiguousarray(x[:, :, rows][:, :, :, cols])]


OPERATORS: dict[str, Operator] = {
    "Conv": Operator(_conv, _conv_shapes, (2, 3)),
    "ConvTranspose": Operator(_deconv, _deconv_shapes, (2, 3)),
    "MaxPool": Operator(_max_pool, _pool_shapes),
    "AveragePool": Operator(_avg_pool, _pool_shapes),
    "LRN": Operator(_lrn, same_shape, outputs=(1, 2)),
    "SpatialBN": Operator(_spatial_bn, _spatial_bn_shapes, (5, 5)),  # test mode: X, scale, bias, mean, var
    "FC": Operator(_fc, _fc_shapes, (3, 3)),  # Caffe2's FC always has a bias
    "Softmax": Operator(_softmax, same_shape),
    # the forks' layers (issue 13)
    "ChannelShuffle": Operator(_channel_shuffle, _channel_shuffle_shapes),
    "ResizeNearest": Operator(_resize_nearest, _resize_nearest_shapes),  # real Caffe2 also takes a scales input
}
