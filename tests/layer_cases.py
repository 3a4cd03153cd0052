"""The layer cases shared by the layer-by-layer tests and the real-Caffe2 conformance table.

Each case is a small V2 net (Input layers, then the layer under test with one of its important
options), with seeded weights from ``synthetic_weights`` (or hand-made blobs) written as a real
``.caffemodel``, an optional NumPy reference written from Caffe's documented formula, and the
reason OpenCV cannot serve as its oracle where it cannot. ``prepare`` materialises a case once
per session.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from zooforge.converters.api import ConvertOptions, convert_caffe_net
from zooforge.converters.builtin import synthetic_weights
from zooforge.converters.caffe.loader import load_caffe, parse_prototxt
from zooforge.converters.caffe.weights import WeightTable, write_caffemodel

SEED = 11
X = (1, 4, 9, 11)  # the default input: odd sizes, so that pooling's rounding matters

Feeds = dict[str, np.ndarray]
Reference = Callable[[Feeds, WeightTable], dict[str, np.ndarray]]


@dataclass(frozen=True)
class Case:
    id: str
    layers: str  # prototxt text after the Input layers
    outputs: tuple[str, ...]
    inputs: dict[str, tuple[int, ...]] = field(default_factory=lambda: {"data": X})
    weights: Callable[[WeightTable], WeightTable] | None = None  # adjust the synthetic table
    reference: Reference | None = None  # NumPy reference from Caffe's formula
    low: float = -2.0  # range of the input values
    high: float = 2.0
    opencv_skip: str = ""  # why OpenCV cannot serve as oracle here


def _case(id: str, layers: str, outputs: str | tuple[str, ...] = "y", **kwargs: Any) -> Case:
    return Case(id, layers, (outputs,) if isinstance(outputs, str) else outputs, **kwargs)


def _layer(type_: str, params: str = "", bottoms: tuple[str, ...] = ("data",), tops: tuple[str, ...] = ("y",),
           name: str = "layer") -> str:
    wiring = " ".join(f'bottom: "{b}"' for b in bottoms) + " " + " ".join(f'top: "{t}"' for t in tops)
    return f'layer {{ name: "{name}" type: "{type_}" {wiring} {params} }}\n'


# -- NumPy references (Caffe's formulas) ---------------------------------------------------------

def _unary(fn: Callable[[np.ndarray], np.ndarray]) -> Reference:
    return lambda feeds, table: {"y": fn(feeds["data"].astype(np.float64))}


def _softplus(x: np.ndarray) -> np.ndarray:
    # BNLL: x + log(1 + exp(-x)) for x > 0, log(1 + exp(x)) otherwise
    return np.where(x > 0, x + np.log1p(np.exp(-np.abs(x))), np.log1p(np.exp(np.minimum(x, 0))))


def _batch_norm_ref(feeds: Feeds, table: WeightTable) -> dict[str, np.ndarray]:
    mean, var, factor = (b.astype(np.float64) for b in table["layer"])
    scale = 0.0 if factor[0] == 0 else 1.0 / factor[0]
    shape = (1, -1, 1, 1)
    x = feeds["data"].astype(np.float64)
    return {"y": (x - (mean * scale).reshape(shape)) / np.sqrt((var * scale).reshape(shape) + 1e-5)}


def _broadcast(x: np.ndarray, v: np.ndarray, axis: int) -> np.ndarray:
    """``v`` (shape of x[axis:axis+v.ndim]) broadcast against ``x`` as Caffe's Scale/Bias do."""
    return v.reshape((1,) * axis + v.shape + (1,) * (x.ndim - axis - v.ndim))


def _scale_ref(axis: int, bias: bool, two_bottoms: bool = False) -> Reference:
    def ref(feeds: Feeds, table: WeightTable) -> dict[str, np.ndarray]:
        x = feeds["data"].astype(np.float64)
        blobs = [b.astype(np.float64) for b in table.get("layer", [])]
        factor = feeds["factor"].astype(np.float64) if two_bottoms else blobs.pop(0)
        y = x * _broadcast(x, factor, axis)
        if bias:
            y = y + _broadcast(x, blobs.pop(0), axis)
        return {"y": y}

    return ref


def _bias_ref(axis: int, two_bottoms: bool = False) -> Reference:
    def ref(feeds: Feeds, table: WeightTable) -> dict[str, np.ndarray]:
        x = feeds["data"].astype(np.float64)
        b = feeds["b"].astype(np.float64) if two_bottoms else table["layer"][0].astype(np.float64)
        return {"y": x + _broadcast(x, b, axis)}

    return ref


def _argmax_ref(axis: int | None) -> Reference:
    def ref(feeds: Feeds, table: WeightTable) -> dict[str, np.ndarray]:
        x = feeds["data"]
        if axis is None:  # Caffe: top shape (N, 1, top_k), argmax over each flattened item
            return {"y": x.reshape(x.shape[0], -1).argmax(axis=1).reshape(-1, 1, 1).astype(np.float64)}
        return {"y": np.expand_dims(x.argmax(axis=axis), axis).astype(np.float64)}

    return ref


def _lrn_across_ref(size: int, alpha: float, beta: float, k: float) -> Reference:
    """Caffe: y = x * (k + alpha / size * sum of x^2 over size channels centred on c)^-beta."""

    def ref(feeds: Feeds, table: WeightTable) -> dict[str, np.ndarray]:
        x = feeds["data"].astype(np.float64)
        half = (size - 1) // 2
        padded = np.pad(x * x, ((0, 0), (half, half), (0, 0), (0, 0)))
        total = sum(padded[:, i : i + x.shape[1]] for i in range(size))
        return {"y": x * (k + alpha / size * total) ** -beta}

    return ref


def _lrn_within_ref(size: int, alpha: float, beta: float) -> Reference:
    """Caffe: y = x * (1 + alpha / size^2 * sum of x^2 over a size x size window, zero padded)^-beta."""

    def ref(feeds: Feeds, table: WeightTable) -> dict[str, np.ndarray]:
        x = feeds["data"].astype(np.float64)
        half = (size - 1) // 2
        padded = np.pad(x * x, ((0, 0), (0, 0), (half, half), (half, half)))
        h, w = x.shape[2:]
        total = sum(padded[:, :, i : i + h, j : j + w] for i in range(size) for j in range(size))
        return {"y": x * (1 + alpha / size**2 * total) ** -beta}

    return ref


def _eltwise_ref(op: str, coeff: tuple[float, float] = (1.0, 1.0)) -> Reference:
    def ref(feeds: Feeds, table: WeightTable) -> dict[str, np.ndarray]:
        a, b = feeds["data"].astype(np.float64), feeds["other"].astype(np.float64)
        return {"y": {"SUM": coeff[0] * a + coeff[1] * b, "PROD": a * b, "MAX": np.maximum(a, b)}[op]}

    return ref


def _crop_ref(axis: int, offsets: tuple[int, ...]) -> Reference:
    def ref(feeds: Feeds, table: WeightTable) -> dict[str, np.ndarray]:
        x, like = feeds["data"], feeds["like"]
        offs = offsets * (x.ndim - axis) if len(offsets) == 1 else offsets
        index = tuple(
            slice(None) if d < axis else slice(offs[d - axis], offs[d - axis] + like.shape[d])
            for d in range(x.ndim)
        )
        return {"y": x[index]}

    return ref


def _reshaped(shape: tuple[int, ...]) -> Reference:
    return lambda feeds, table: {"y": feeds["data"].reshape(shape)}


def _prelu_ref(feeds: Feeds, table: WeightTable) -> dict[str, np.ndarray]:
    x = feeds["data"].astype(np.float64)
    slope = table["layer"][0].astype(np.float64)
    slope = slope.reshape(1, -1, 1, 1) if slope.size > 1 else slope.reshape(())
    return {"y": np.maximum(x, 0) + slope * np.minimum(x, 0)}


def _inner_product_ref(axis: int, transpose: bool) -> Reference:
    def ref(feeds: Feeds, table: WeightTable) -> dict[str, np.ndarray]:
        x = feeds["data"].astype(np.float64)
        w, b = (blob.astype(np.float64) for blob in table["layer"])
        rows = x.reshape(*x.shape[:axis], -1)
        return {"y": rows @ (w if transpose else w.T) + b}

    return ref


def _softmax_ref(axis: int, output: str = "y", source: Callable[[Feeds, WeightTable], np.ndarray] | None = None
                 ) -> Reference:
    def ref(feeds: Feeds, table: WeightTable) -> dict[str, np.ndarray]:
        x = source(feeds, table) if source else feeds["data"].astype(np.float64)
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        return {output: e / e.sum(axis=axis, keepdims=True)}

    return ref


def _ip_then(feeds: Feeds, table: WeightTable) -> np.ndarray:
    return _inner_product_ref(1, False)(feeds, {"layer": table["ip"]})["y"]


def _pool_ref(kind: str, k: int, s: int, p: int, ceil: bool = True) -> Reference:
    """Caffe's pooling loops (pooling_layer.cpp, Forward_cpu) transcribed (``ceil=False``: the
    ``round_mode: FLOOR`` of Caffe master)."""

    def ref(feeds: Feeds, table: WeightTable) -> dict[str, np.ndarray]:
        x = feeds["data"].astype(np.float64)
        n, c, h, w = x.shape
        rounding = math.ceil if ceil else math.floor
        ph = int(rounding((h + 2 * p - k) / s)) + 1
        pw = int(rounding((w + 2 * p - k) / s)) + 1
        if p and ceil:  # the last window must start inside the image
            ph -= (ph - 1) * s >= h + p
            pw -= (pw - 1) * s >= w + p
        y = np.zeros((n, c, ph, pw))
        for i in range(ph):
            for j in range(pw):
                hs, ws = i * s - p, j * s - p
                he, we = min(hs + k, h + p), min(ws + k, w + p)
                size = (he - hs) * (we - ws)  # average pooling counts padding up to h + p
                hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
                window = x[:, :, hs:he, ws:we]
                y[:, :, i, j] = window.max(axis=(2, 3)) if kind == "MAX" else window.sum(axis=(2, 3)) / size
        return {"y": y}

    return ref


# -- the cases -------------------------------------------------------------------------------------


# -- SSD's Normalize and PriorBox (issue 13): transcriptions of weiliu89/caffe (branch ssd) ------

def _normalize_ref(across: bool, eps: float = 1e-10) -> Reference:
    """normalize_layer.cpp Forward_cpu: per item, norm = sqrt(sum of x^2 + eps) over the whole item
    (across_spatial) or per position over the channels; then x / norm times scale (one or per channel)."""

    def ref(feeds: Feeds, table: WeightTable) -> dict[str, np.ndarray]:
        x = feeds["data"].astype(np.float64)
        scale = table["layer"][0].astype(np.float64).reshape(-1)
        out = np.empty_like(x)
        for n in range(x.shape[0]):
            item = x[n].reshape(x.shape[1], -1)  # (channels, spatial)
            if across:
                y = item / math.sqrt(float(np.sum(item * item)) + eps)
            else:
                norms = np.sqrt(np.sum(item * item, axis=0) + eps)
                y = item / norms[None, :]
            y = y * scale[0] if scale.size == 1 else y * scale[:, None]
            out[n] = y.reshape(x.shape[1:])
        return {"y": out}

    return ref


def _prior_box_ref(mins: tuple[float, ...], maxes: tuple[float, ...] = (), ratios: tuple[float, ...] = (),
                   flip: bool = True, clip: bool = False, variance: tuple[float, ...] = (),
                   img: tuple[int, int] | None = None, step: tuple[float, float] | None = None,
                   offset: float = 0.5) -> Reference:
    """prior_box_layer.cpp Forward_cpu, element by element: float centres and sizes (``int`` min
    and max sizes), each coordinate in double stored as float, clip, then the variance half."""
    f32 = np.float32

    def ref(feeds: Feeds, table: WeightTable) -> dict[str, np.ndarray]:
        layer_h, layer_w = feeds["data"].shape[2:]
        img_h, img_w = img or feeds["image"].shape[2:]
        step_h, step_w = (f32(step[0]), f32(step[1])) if step else (f32(f32(img_h) / f32(layer_h)),
                                                                    f32(f32(img_w) / f32(layer_w)))
        ars = [f32(1.0)]
        for ar in ratios:
            if all(abs(f32(ar) - known) >= 1e-6 for known in ars):
                ars.append(f32(ar))
                if flip:
                    ars.append(f32(1.0 / float(f32(ar))))
        data: list[float] = []

        def box(cx: np.float32, cy: np.float32, bw: float, bh: float) -> None:
            bw, bh = float(f32(bw)), float(f32(bh))
            data.extend([(float(cx) - bw / 2.0) / img_w, (float(cy) - bh / 2.0) / img_h,
                         (float(cx) + bw / 2.0) / img_w, (float(cy) + bh / 2.0) / img_h])

        for h in range(layer_h):
            for w in range(layer_w):
                cx = f32(f32(f32(w) + f32(offset)) * step_w)
                cy = f32(f32(f32(h) + f32(offset)) * step_h)
                for s, min_size in enumerate(mins):
                    side = int(f32(min_size))
                    box(cx, cy, side, side)
                    if maxes:
                        root = math.sqrt(side * int(f32(maxes[s])))
                        box(cx, cy, root, root)
                    for ar in ars:
                        if abs(float(ar) - 1.0) < 1e-6:
                            continue
                        box(cx, cy, side * float(np.sqrt(ar)), side / float(np.sqrt(ar)))
        corners = np.array(data, np.float32)
        if clip:
            corners = np.minimum(np.maximum(corners, f32(0)), f32(1))
        values = variance or (0.1,)
        var = np.array([values[i % len(values)] for i in range(corners.size)], np.float32)
        return {"y": np.stack([corners, var]).reshape(1, 2, -1).astype(np.float64)}

    return ref


def _conv(params: str, type_: str = "Convolution") -> str:
    return _layer(type_, f"convolution_param {{ {params} }}")


def _pool(params: str) -> str:
    return _layer("Pooling", f"pooling_param {{ {params} }}")


def _hand_batch_norm(table: WeightTable) -> WeightTable:
    rng = np.random.default_rng(5)
    mean = rng.uniform(-0.5, 0.5, 4).astype(np.float32)
    var = rng.uniform(0.5, 2.0, 4).astype(np.float32)
    # Caffe stores running sums; blob 2 is the moving-average factor they are divided by.
    return {"layer": [mean * 0.5, var * 0.5, np.array([0.5], np.float32)]}


TWO = {"data": X, "other": X}

CASES: list[Case] = [
    # Convolution
    _case("conv-plain", _conv("num_output: 5 kernel_size: 3 pad: 1")),
    _case("conv-no-bias", _conv("num_output: 5 kernel_size: 3 bias_term: false")),
    _case("conv-group2", _conv("num_output: 6 kernel_size: 3 group: 2 pad: 1")),
    _case("conv-dilation2", _conv("num_output: 3 kernel_size: 3 dilation: 2 pad: 1")),
    _case("conv-hw-asymmetric",
          _conv("num_output: 3 kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 0")),
    _case("conv-kernel-size-pair", _conv("num_output: 3 kernel_size: 3 kernel_size: 2 stride: 2")),
    # Deconvolution
    _case("deconv-stride2-pad1", _conv("num_output: 3 kernel_size: 4 stride: 2 pad: 1", "Deconvolution")),
    _case("deconv-group2", _conv("num_output: 6 kernel_size: 3 stride: 2 group: 2", "Deconvolution")),
    # Pooling. Caffe: out = ceil((H + 2p - k) / s) + 1, minus one if (out - 1) * s >= H + p (p > 0).
    # 10x11, k3 s2 p0: H: ceil(7/2)+1 = 5 (floor: 4); W: 8/2+1 = 5 both. The extra window is partial.
    *(_case(f"pool-{kind.lower()}-ceil-k3s2p0", _pool(f"pool: {kind} kernel_size: 3 stride: 2"),
            inputs={"data": (1, 4, 10, 11)}, reference=_pool_ref(kind, 3, 2, 0)) for kind in ("MAX", "AVE")),
    # 9x10, k3 s2 p1: H: (9+2-3)/2+1 = 5 both; W: ceil(9/2)+1 = 6 (floor: 5); the 6th window
    # starts at 10 - 1 = 9 < W + p, inside the image, so Caffe keeps it (AVE divides it by 3x2:
    # it counts the one padding column but not the column beyond).
    *(_case(f"pool-{kind.lower()}-ceil-k3s2p1", _pool(f"pool: {kind} kernel_size: 3 stride: 2 pad: 1"),
            inputs={"data": (1, 4, 9, 10)}, reference=_pool_ref(kind, 3, 2, 1)) for kind in ("MAX", "AVE")),
    # 7x9, k2 s2 p1: H: ceil(7/2)+1 = 5, but window 5 would start at 8 - 1 = 7 = H, in the end
    # padding: dropped, 4 (= floor). W: ceil(9/2)+1 = 6, window 6 starts at 10 - 1 = 9 = W: 5.
    *(_case(f"pool-{kind.lower()}-drop-k2s2p1", _pool(f"pool: {kind} kernel_size: 2 stride: 2 pad: 1"),
            inputs={"data": (1, 4, 7, 9)}, reference=_pool_ref(kind, 2, 2, 1)) for kind in ("MAX", "AVE")),
    # 9x9, k4 s2 p1: ceil(7/2)+1 = 5 (floor: 4); window 5 spans [7, 11), past 9 + 1: Caffe divides
    # it by 4x3, Caffe2's whole-kernel average by 4x4 (fixed by a per-cell factor).
    _case("pool-ave-cross-k4s2p1", _pool("pool: AVE kernel_size: 4 stride: 2 pad: 1"),
          inputs={"data": (1, 4, 9, 9)}, reference=_pool_ref("AVE", 4, 2, 1)),
    *(_case(f"pool-{kind.lower()}-floor-k3s2p1", _pool(f"pool: {kind} kernel_size: 3 stride: 2 pad: 1 round_mode: FLOOR"),
            inputs={"data": (1, 4, 9, 10)}, reference=_pool_ref(kind, 3, 2, 1, ceil=False),
            opencv_skip="OpenCV 4.14's caffe.proto lacks BVLC's round_mode (its field 13 is the forks' "
            "ceil_mode); reading this prototxt it fails 'kernel[i] > 0' in getKernelSize")
      for kind in ("MAX", "AVE")),
    # 10x9, kernel 3x2, s2: both axes round up (5x5, floor 4x4); Caffe2 would pad W's end by 2 =
    # kernel_w, which the historical frontend copies into ONNX: written with explicit end pads.
    *(_case(f"pool-{kind.lower()}-ceil-k3x2s2", _pool(f"pool: {kind} kernel_h: 3 kernel_w: 2 stride: 2"),
            inputs={"data": (1, 4, 10, 9)}) for kind in ("MAX", "AVE")),
    _case("pool-global-max", _pool("pool: MAX global_pooling: true"),
          reference=lambda f, t: {"y": f["data"].max(axis=(2, 3), keepdims=True)}),
    _case("pool-global-ave", _pool("pool: AVE global_pooling: true"),
          reference=lambda f, t: {"y": f["data"].astype(np.float64).mean(axis=(2, 3), keepdims=True)}),
    # LRN
    _case("lrn-across", _layer("LRN", "lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 }"),
          reference=_lrn_across_ref(3, 0.5, 0.75, 1.0)),
    _case("lrn-across-k2", _layer("LRN", "lrn_param { local_size: 5 alpha: 0.5 beta: 0.75 k: 2 }"),
          reference=_lrn_across_ref(5, 0.5, 0.75, 2.0),
          opencv_skip="OpenCV 4.14 ignores lrn_param.k and uses 1 (its output matches k = 1 to 2e-7)"),
    _case("lrn-within", _layer("LRN", "lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 norm_region: WITHIN_CHANNEL }"),
          reference=_lrn_within_ref(3, 0.5, 0.75)),
    # InnerProduct
    _case("ip-plain", _layer("InnerProduct", "inner_product_param { num_output: 7 }"),
          reference=_inner_product_ref(1, False)),
    _case("ip-transpose", _layer("InnerProduct", "inner_product_param { num_output: 7 transpose: true }"),
          reference=_inner_product_ref(1, True),
          opencv_skip="OpenCV 4.14 ignores inner_product_param.transpose: it reads the (inner, num_output) "
          "blob as (num_output, inner) (its output matches that misreading to 5e-7)"),
    _case("ip-axis2", _layer("InnerProduct", "inner_product_param { num_output: 7 axis: 2 }"),
          reference=_inner_product_ref(2, False)),
    # activations
    _case("relu", _layer("ReLU"), reference=_unary(lambda x: np.maximum(x, 0))),
    _case("relu-leaky", _layer("ReLU", "relu_param { negative_slope: 0.1 }"),
          reference=_unary(lambda x: np.where(x > 0, x, 0.1 * x))),
    _case("prelu-channels", _layer("PReLU"), reference=_prelu_ref),
    _case("prelu-shared", _layer("PReLU", "prelu_param { channel_shared: true }"), reference=_prelu_ref),
    _case("sigmoid", _layer("Sigmoid"), reference=_unary(lambda x: 1 / (1 + np.exp(-x)))),
    _case("tanh", _layer("TanH"), reference=_unary(np.tanh)),
    _case("elu-alpha0.5", _layer("ELU", "elu_param { alpha: 0.5 }"),
          reference=_unary(lambda x: np.where(x > 0, x, 0.5 * np.expm1(x)))),
    _case("absval", _layer("AbsVal"), reference=_unary(np.abs)),
    _case("power-2-scale0.5-shift1", _layer("Power", "power_param { power: 2 scale: 0.5 shift: 1 }"),
          reference=_unary(lambda x: (1 + 0.5 * x) ** 2)),
    _case("exp-base2-scale0.5-shift0.1", _layer("Exp", "exp_param { base: 2 scale: 0.5 shift: 0.1 }"),
          reference=_unary(lambda x: 2.0 ** (0.1 + 0.5 * x))),
    _case("exp-base-e", _layer("Exp"), reference=_unary(np.exp)),
    _case("log-base10-shift2", _layer("Log", "log_param { base: 10 shift: 2 }"),
          reference=_unary(lambda x: np.log10(2 + x)), low=0.05, high=3.0,
          opencv_skip="OpenCV 4.14 ignores log_param (base, scale, shift) and computes ln(x) "
          "(its output matches ln(x) to 1e-7)"),
    _case("log-default", _layer("Log"), reference=_unary(np.log), low=0.05, high=3.0),
    _case("bnll", _layer("BNLL"), reference=_unary(_softplus)),
    _case("dropout", _layer("Dropout", "dropout_param { dropout_ratio: 0.3 }"), reference=_unary(lambda x: x)),
    # Softmax
    _case("softmax-axis1-4d", _layer("Softmax"), reference=_softmax_ref(1)),
    _case("softmax-2d-after-ip",
          _layer("InnerProduct", "inner_product_param { num_output: 7 }", tops=("ip",), name="ip")
          + _layer("Softmax", bottoms=("ip",)),
          reference=_softmax_ref(1, source=_ip_then)),
    # Concat / Slice / Split
    _case("concat-axis1", _layer("Concat", bottoms=("data", "other")), inputs={"data": X, "other": (1, 3, 9, 11)},
          reference=lambda f, t: {"y": np.concatenate([f["data"], f["other"]], axis=1)}),
    _case("concat-axis2", _layer("Concat", "concat_param { axis: 2 }", bottoms=("data", "other")),
          inputs={"data": X, "other": (1, 4, 5, 11)},
          reference=lambda f, t: {"y": np.concatenate([f["data"], f["other"]], axis=2)}),
    _case("slice-points", _layer("Slice", "slice_param { axis: 1 slice_point: 1 slice_point: 3 }",
                                 tops=("a", "b", "c")), ("a", "b", "c"),
          reference=lambda f, t: dict(zip("abc", np.split(f["data"], [1, 3], axis=1)))),
    _case("slice-equal", _layer("Slice", "slice_param { axis: 1 }", tops=("a", "b")), ("a", "b"),
          reference=lambda f, t: dict(zip("ab", np.split(f["data"], 2, axis=1))),
          opencv_skip="OpenCV 4.14 cannot slice without slice_point: its Slice layer asserts "
          "'splits > 0' (slice_layer.cpp:414), not deriving the count from the tops"),
    _case("split-two-consumers",
          _layer("Split", tops=("s1", "s2"), name="split")
          + _layer("Power", "power_param { scale: 2 }", bottoms=("s1",), tops=("p",), name="double")
          + _layer("Eltwise", "eltwise_param { operation: PROD }", bottoms=("p", "s2"), name="prod"),
          reference=_unary(lambda x: 2 * x * x)),
    # Eltwise
    _case("eltwise-sum", _layer("Eltwise", bottoms=("data", "other")), inputs=TWO, reference=_eltwise_ref("SUM")),
    _case("eltwise-sum-coeff",
          _layer("Eltwise", "eltwise_param { operation: SUM coeff: 1 coeff: -0.5 }", bottoms=("data", "other")),
          inputs=TWO, reference=_eltwise_ref("SUM", (1.0, -0.5))),
    _case("eltwise-prod", _layer("Eltwise", "eltwise_param { operation: PROD }", bottoms=("data", "other")),
          inputs=TWO, reference=_eltwise_ref("PROD")),
    _case("eltwise-max", _layer("Eltwise", "eltwise_param { operation: MAX }", bottoms=("data", "other")),
          inputs=TWO, reference=_eltwise_ref("MAX")),
    # BatchNorm / Scale / Bias
    _case("batchnorm-factor0.5", _layer("BatchNorm"), weights=_hand_batch_norm, reference=_batch_norm_ref),
    _case("scale-bias", _layer("Scale", "scale_param { bias_term: true }"), reference=_scale_ref(1, True)),
    _case("scale-no-bias", _layer("Scale"), reference=_scale_ref(1, False)),
    # (zooforge treats the first dimension of every net input as the batch: second bottoms
    # start at axis 0 here so that their first dimension is 1)
    _case("scale-two-bottoms-axis0", _layer("Scale", "scale_param { axis: 0 }", bottoms=("data", "factor")),
          inputs={"data": X, "factor": (1, 4)}, reference=_scale_ref(0, False, two_bottoms=True)),
    _case("scale-axis2-num-axes1", _layer("Scale", "scale_param { axis: 2 num_axes: 1 }"),
          reference=_scale_ref(2, False)),
    _case("scale-axis1-num-axes2-bias", _layer("Scale", "scale_param { axis: 1 num_axes: 2 bias_term: true }"),
          reference=_scale_ref(1, True)),
    _case("bias", _layer("Bias"), reference=_bias_ref(1)),
    _case("bias-two-bottoms-axis0", _layer("Bias", "bias_param { axis: 0 }", bottoms=("data", "b")),
          inputs={"data": X, "b": (1, 4, 9)}, reference=_bias_ref(0, two_bottoms=True)),
    # Flatten / Reshape / Crop
    _case("flatten", _layer("Flatten"), reference=_reshaped((1, 4 * 9 * 11))),
    _case("flatten-axis2", _layer("Flatten", "flatten_param { axis: 2 }"), reference=_reshaped((1, 4, 99))),
    _case("reshape-zero-minus1", _layer("Reshape", "reshape_param { shape { dim: 0 dim: -1 dim: 11 } }"),
          reference=_reshaped((1, 36, 11))),
    _case("reshape-axis1-num-axes2",
          _layer("Reshape", "reshape_param { axis: 1 num_axes: 2 shape { dim: -1 } }"),
          reference=_reshaped((1, 36, 11))),
    _case("crop-axis2-offsets", _layer("Crop", "crop_param { axis: 2 offset: 1 offset: 3 }", bottoms=("data", "like")),
          inputs={"data": X, "like": (1, 4, 5, 6)}, reference=_crop_ref(2, (1, 3))),
    _case("crop-axis1-one-offset", _layer("Crop", "crop_param { axis: 1 offset: 1 }", bottoms=("data", "like")),
          inputs={"data": X, "like": (1, 2, 6, 7)}, reference=_crop_ref(1, (1,))),
    # ArgMax
    _case("argmax-axis1", _layer("ArgMax", "argmax_param { axis: 1 }"), reference=_argmax_ref(1)),
    _case("argmax-no-axis", _layer("ArgMax"), reference=_argmax_ref(None)),
]



# -- the forks' layers (issue 13): ceil_mode, Axpy, depthwise, ShuffleChannel, Upsample, Permute ----

def _depthwise_ref(k: int, s: int, p: int, multiplier: int = 1) -> Reference:
    """sp2823's ConvolutionDepthwise loops (conv_dw_layer.cpp), output channel o reading input
    channel o // multiplier (Convolution with group = channels computes the same)."""

    def ref(feeds: Feeds, table: WeightTable) -> dict[str, np.ndarray]:
        x = np.pad(feeds["data"].astype(np.float64), ((0, 0), (0, 0), (p, p), (p, p)))
        w, *bias = (b.astype(np.float64) for b in table["layer"])
        n, _, h, wd = x.shape
        oh, ow = (h - k) // s + 1, (wd - k) // s + 1
        y = np.zeros((n, w.shape[0], oh, ow))
        for o in range(w.shape[0]):
            for i in range(oh):
                for j in range(ow):
                    window = x[:, o // multiplier, i * s : i * s + k, j * s : j * s + k]
                    y[:, o, i, j] = (window * w[o, 0]).sum(axis=(1, 2))
        return {"y": y + bias[0].reshape(1, -1, 1, 1) if bias else y}

    return ref


def _axpy_ref(feeds: Feeds, table: WeightTable) -> dict[str, np.ndarray]:
    """SENet's axpy_layer.cpp: top = y, then top[n, c] += a[n, c] * x[n, c]."""
    a, x, y = (feeds[name].astype(np.float64) for name in ("a", "data", "other"))
    top = y.copy()
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            top[n, c] += a.reshape(x.shape[0], x.shape[1])[n, c] * x[n, c]
    return {"y": top}


def _shuffle_ref(group: int) -> Reference:
    """farmingyard/ShuffleNet's shuffle_channel_layer.cpp: output channel j * group + i is input
    channel i * (C / group) + j."""

    def ref(feeds: Feeds, table: WeightTable) -> dict[str, np.ndarray]:
        x = feeds["data"]
        columns = x.shape[1] // group
        y = np.empty_like(x)
        for i in range(group):
            for j in range(columns):
                y[:, j * group + i] = x[:, i * columns + j]
        return {"y": y}

    return ref


def _upsample_ref(scale: int) -> Reference:
    """The YOLOv3 ports' upsample_layer.cpp: output (h, w) copies input (h / scale, w / scale)."""

    def ref(feeds: Feeds, table: WeightTable) -> dict[str, np.ndarray]:
        x = feeds["data"]
        rows = np.arange(x.shape[2] * scale) // scale
        cols = np.arange(x.shape[3] * scale) // scale
        return {"y": x[:, :, rows][:, :, :, cols]}

    return ref


def _permute_ref(axes: tuple[int, ...], flatten: bool = False) -> Reference:
    def ref(feeds: Feeds, table: WeightTable) -> dict[str, np.ndarray]:
        y = feeds["data"].transpose(axes)
        return {"y": y.reshape(y.shape[0], -1) if flatten else y}

    return ref


_AXPY = {"a": (1, 4, 1, 1), "data": X, "other": X}
_AXPY_OPENCV = ("OpenCV 4.14's importer swaps Axpy's last two bottoms: it computes a * bottom[2] + bottom[1] "
                "(its output matches that to 0), where SENet's layer computes a * bottom[1] + bottom[2]")
_SIX = {"data": (1, 6, 5, 7)}

CASES += [
    # Pooling's ceil_mode (the forks' field 13; OpenCV reads it): floor where it is false.
    # 10x11, k3 s2 p0: H ceil 5, floor 4. 9x10, k3 s2 p1: W ceil 6, floor 5.
    *(_case(f"pool-{kind.lower()}-ceil-mode-{mode}-{geometry}",
            _pool(f"pool: {kind} kernel_size: 3 stride: 2 {pad} ceil_mode: {mode}"),
            inputs={"data": shape}, reference=_pool_ref(kind, 3, 2, int(pad[-1:] or 0), ceil=mode == "true"))
      for kind in ("MAX", "AVE")
      for mode, geometry, pad, shape in (("false", "k3s2p0", "", (1, 4, 10, 11)),
                                         ("false", "k3s2p1", "pad: 1", (1, 4, 9, 10)),
                                         ("true", "k3s2p1", "pad: 1", (1, 4, 9, 10)))),
    # SENet's Axpy: a * x + y, a per (item, channel) as (N, C, 1, 1) or (N, C)
    _case("axpy", _layer("Axpy", bottoms=("a", "data", "other")), inputs=_AXPY, reference=_axpy_ref,
          opencv_skip=_AXPY_OPENCV),
    _case("axpy-scale-2d", _layer("Axpy", bottoms=("a", "data", "other")), inputs={**_AXPY, "a": (1, 4)},
          reference=_axpy_ref, opencv_skip=_AXPY_OPENCV),
    # depthwise convolution: sp2823's ConvolutionDepthwise (group = channels implied or given; OpenCV
    # reads it as Convolution), and Convolution with group = channels, also with a channel multiplier
    _case("conv-depthwise-type-implied", _conv("kernel_size: 3 pad: 1", "ConvolutionDepthwise"),
          reference=_depthwise_ref(3, 1, 1),
          opencv_skip="OpenCV 4.14 reads ConvolutionDepthwise as Convolution, which needs num_output "
          "('Required argument \"num_output\" not found'); the case giving num_output has OpenCV as a check"),
    _case("conv-depthwise-type-given", _conv("num_output: 4 group: 4 kernel_size: 3 stride: 2 bias_term: false",
                                             "ConvolutionDepthwise"), reference=_depthwise_ref(3, 2, 0)),
    _case("conv-depthwise-group4", _conv("num_output: 4 group: 4 kernel_size: 3 pad: 1"),
          reference=_depthwise_ref(3, 1, 1)),
    _case("conv-depthwise-multiplier2", _conv("num_output: 8 group: 4 kernel_size: 3 stride: 2 pad: 1"),
          reference=_depthwise_ref(3, 2, 1, multiplier=2)),
    # ShuffleNet's ShuffleChannel (OpenCV reads shuffle_channel_param)
    *(_case(f"shuffle-channel-group{g}", _layer("ShuffleChannel", f"shuffle_channel_param {{ group: {g} }}"),
            inputs=_SIX, reference=_shuffle_ref(g)) for g in (2, 3)),
    # the YOLOv3 ports' Upsample (OpenCV 4.14 lacks it)
    _case("upsample-scale2", _layer("Upsample", "upsample_param { scale: 2 }"), reference=_upsample_ref(2)),
    _case("upsample-scale3", _layer("Upsample", "upsample_param { scale: 3 }"), inputs={"data": (1, 3, 4, 5)},
          reference=_upsample_ref(3)),
    _case("upsample-default-scale1", _layer("Upsample"), reference=_upsample_ref(1)),
    # SSD's Permute (axes left out follow in order)
    _case("permute-0231", _layer("Permute", "permute_param { order: 0 order: 2 order: 3 order: 1 }"),
          reference=_permute_ref((0, 2, 3, 1))),
    _case("permute-partial-02", _layer("Permute", "permute_param { order: 0 order: 2 }"),
          reference=_permute_ref((0, 2, 1, 3)),
          opencv_skip="OpenCV 4.14 wants every axis in permute_param.order (permute_layer.cpp:162: "
          "'(int)_numAxes == inputs[0].size()')"),
    _case("permute-then-flatten-axis1-end-1",
          _layer("Permute", "permute_param { order: 0 order: 2 order: 3 order: 1 }", tops=("p",), name="perm")
          + _layer("Flatten", "flatten_param { axis: 1 end_axis: -1 }", bottoms=("p",), name="flat"),
          reference=_permute_ref((0, 2, 3, 1), flatten=True)),
]

# -- SSD's Normalize and PriorBox (issue 13) ------------------------------------------------------

def _norm(params: str) -> str:
    return _layer("Normalize", f"norm_param {{ {params} }}")


_IMAGE = (1, 3, 300, 300)
_OPENCV_ACROSS_PER_CHANNEL = ("OpenCV's across_spatial Normalize takes only a shared scale "
                              "(it asserts one scale per C * H * W value)")
_MOBILENET_VAR = "variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2"


def _prior(params: str) -> str:
    return _layer("PriorBox", f"prior_box_param {{ {params} }}", bottoms=("data", "image"))


def _shared_scale_1d(table: WeightTable) -> WeightTable:
    return {"layer": [table["layer"][0].reshape(1)]}


SSD_CASES: list[Case] = [
    # Normalize: SSD's conv4_3_norm (per position over channels, one scale per channel), and the rest
    _case("normalize-spatial-per-channel", _norm("across_spatial: false channel_shared: false"),
          reference=_normalize_ref(False)),
    _case("normalize-across-shared", _norm("across_spatial: true channel_shared: true"),
          reference=_normalize_ref(True)),
    _case("normalize-spatial-shared", _norm("across_spatial: false channel_shared: true"),
          reference=_normalize_ref(False)),
    _case("normalize-across-per-channel", _norm("across_spatial: true channel_shared: false"),
          reference=_normalize_ref(True),
          opencv_skip=_OPENCV_ACROSS_PER_CHANNEL),
    _case("normalize-shared-blob-1d", _norm("across_spatial: false channel_shared: true"),
          weights=_shared_scale_1d, reference=_normalize_ref(False)),
    # eps inside the square root: 0.05 against sums of squares of about 4 * 0.01
    _case("normalize-spatial-eps0.05", _norm("across_spatial: false channel_shared: false eps: 0.05"),
          reference=_normalize_ref(False, 0.05), low=-0.2, high=0.2),
    _case("priorbox-mobilenet-conv11",
          _prior(f"min_size: 60.0 aspect_ratio: 2.0 flip: true clip: false {_MOBILENET_VAR} offset: 0.5"),
          inputs={"data": (1, 8, 19, 19), "image": _IMAGE},
          reference=_prior_box_ref((60.0,), ratios=(2.0,), variance=(0.1, 0.1, 0.2, 0.2))),
    _case("priorbox-mobilenet-conv13",
          _prior(f"min_size: 105.0 max_size: 150.0 aspect_ratio: 2.0 aspect_ratio: 3.0 flip: true clip: false "
                 f"{_MOBILENET_VAR} offset: 0.5"),
          inputs={"data": (1, 8, 10, 10), "image": _IMAGE},
          reference=_prior_box_ref((105.0,), (150.0,), (2.0, 3.0), variance=(0.1, 0.1, 0.2, 0.2))),
    # VGG SSD300's conv4_3 priors: step 8 on a 38 x 38 map
    _case("priorbox-vgg-conv4-step8",
          _prior(f"min_size: 30.0 max_size: 60.0 aspect_ratio: 2 flip: true clip: false {_MOBILENET_VAR} "
                 "step: 8 offset: 0.5"),
          inputs={"data": (1, 4, 38, 38), "image": _IMAGE},
          reference=_prior_box_ref((30.0,), (60.0,), (2.0,), variance=(0.1, 0.1, 0.2, 0.2), step=(8.0, 8.0))),
    _case("priorbox-clip-one-variance",
          _prior("min_size: 100 max_size: 200 aspect_ratio: 2 flip: true clip: true variance: 0.2"),
          inputs={"data": (1, 8, 5, 5), "image": _IMAGE},
          reference=_prior_box_ref((100.0,), (200.0,), (2.0,), clip=True, variance=(0.2,))),
    _case("priorbox-no-flip-step-hw-offset",
          _prior("min_size: 40 aspect_ratio: 2 aspect_ratio: 3 flip: false clip: false variance: 0.1 "
                 "step_h: 60 step_w: 50 offset: 0.3"),
          inputs={"data": (1, 8, 5, 6), "image": (1, 3, 300, 250)},
          reference=_prior_box_ref((40.0,), ratios=(2.0, 3.0), flip=False, variance=(0.1,), step=(60.0, 50.0),
                                   offset=0.3)),
    # 2 and 0.5 (flipped 2) and 1 are one ratio each: 3 priors per cell
    _case("priorbox-repeated-ratios",
          _prior("min_size: 50 aspect_ratio: 2 aspect_ratio: 0.5 aspect_ratio: 1 flip: true clip: false "
                 "variance: 0.1"),
          inputs={"data": (1, 8, 4, 7), "image": (1, 3, 120, 200)},
          reference=_prior_box_ref((50.0,), ratios=(2.0, 0.5, 1.0), variance=(0.1,))),
    _case("priorbox-img-hw",
          _prior("min_size: 32 aspect_ratio: 2 flip: true clip: false variance: 0.1 img_h: 320 img_w: 240"),
          inputs={"data": (1, 8, 5, 5), "image": _IMAGE},
          reference=_prior_box_ref((32.0,), ratios=(2.0,), variance=(0.1,), img=(320, 240)),
          opencv_skip="OpenCV ignores img_size/img_h/img_w (it always reads the image bottom's size)"),
    _case("priorbox-two-min-sizes",
          _prior("min_size: 30 min_size: 60 max_size: 60 max_size: 90 aspect_ratio: 2 flip: true clip: false "
                 "variance: 0.1"),
          inputs={"data": (1, 8, 5, 5), "image": _IMAGE},
          reference=_prior_box_ref((30.0, 60.0), (60.0, 90.0), (2.0,), variance=(0.1,)),
          opencv_skip="OpenCV's PriorBox takes one min_size and one max_size"),
    _case("priorbox-fractional-min-size",
          _prior("min_size: 45.7 aspect_ratio: 2 flip: true clip: false variance: 0.1"),
          inputs={"data": (1, 8, 5, 5), "image": _IMAGE},
          reference=_prior_box_ref((45.7,), ratios=(2.0,), variance=(0.1,)),
          opencv_skip="OpenCV keeps a fractional min_size (45.7); Caffe truncates it to int (45)"),
    _case("priorbox-default-variance",
          _prior("min_size: 60 aspect_ratio: 2 flip: true clip: false"),
          inputs={"data": (1, 8, 5, 5), "image": _IMAGE},
          reference=_prior_box_ref((60.0,), ratios=(2.0,)),
          opencv_skip="OpenCV requires variance (Caffe's default is 0.1)"),
]

CASES += SSD_CASES

assert len({case.id for case in CASES}) == len(CASES)

# Layer types whose cases need structured inputs (overlapping boxes, planted ties) that these
# uniform random feeds cannot give: tested, with OpenCV, real Caffe2 and onnxruntime, in the file named.
COVERED_ELSEWHERE = {
    "DetectionOutput": "tests/test_detection_output.py",  # the wt-detout block
}


def _prototxt(case: Case) -> str:
    head = "".join(
        f'layer {{ name: "{name}" type: "Input" top: "{name}" input_param {{ shape {{ '
        + " ".join(f"dim: {d}" for d in shape) + " } } }\n"
        for name, shape in case.inputs.items()
    )
    return f'name: "{case.id}"\n{head}{case.layers}'


def layer_types(case: Case) -> set[str]:
    return set(re.findall(r'type: "(\w+)"', case.layers))


@dataclass
class Prepared:
    case: Case
    prototxt: Path
    caffemodel: Path
    table: WeightTable
    feeds: Feeds
    numpy: dict[str, np.ndarray] | None
    _conversions: dict[int, Any] = field(default_factory=dict)

    def conversion(self, opset: int):
        if opset not in self._conversions:
            net = load_caffe(self.prototxt, self.caffemodel if self.table else None)
            self._conversions[opset] = convert_caffe_net(net, ConvertOptions(opset=opset))
        return self._conversions[opset]


# Kept per pytest session (keyed by its base temp folder), never across sessions: mutation testing
# runs each mutant in a fresh session forked from one that filled this, and must convert again.
PREPARED: dict[tuple[Path, str], Prepared] = {}


def prepare(case: Case, tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    key = (tmp_path_factory.getbasetemp(), case.id)
    if key in PREPARED:
        return PREPARED[key]
    folder = tmp_path_factory.mktemp(case.id)
    prototxt = folder / "net.prototxt"
    prototxt.write_text(_prototxt(case))
    table = synthetic_weights(parse_prototxt(prototxt), SEED)
    if case.weights:
        table = case.weights(table)
    caffemodel = folder / "net.caffemodel"
    write_caffemodel(table, caffemodel)
    rng = np.random.default_rng(zlib.crc32(case.id.encode()))
    feeds = {name: rng.uniform(case.low, case.high, shape).astype(np.float32) for name, shape in case.inputs.items()}
    numpy = case.reference(feeds, table) if case.reference else None
    PREPARED[key] = Prepared(case, prototxt, caffemodel, table, feeds, numpy)
    return PREPARED[key]
