"""Translate a ``CaffeNet`` into a Caffe2 NetDef pair, layer by layer.

Each Caffe layer type has one translator function in ``TRANSLATORS``. Translators append Caffe2
operators through ``Translation.add``, which infers output shapes at once with the executor's shape
rules, so a weight of the wrong shape is reported against the Caffe layer that holds it. Names
follow the Caffe2 model zoo: blobs keep their Caffe names, weights are ``<layer>_w``/``<layer>_b``,
and helper blobs made inside one layer start with an underscore.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np

from zooforge.converters.caffe.net import CaffeLayer, CaffeNet
from zooforge.converters.caffe.params import spatial
from zooforge.converters.caffe2 import schema
from zooforge.converters.caffe2.executor.geometry import CAFFE_LEGACY_POOLING, pool_extent
from zooforge.converters.caffe2.executor.run import describe_operator, infer_shapes
from zooforge.converters.caffe2.netdef import DETECTION_ROWS_ARG, SYNTHETIC_ARG, Caffe2Model, make_arg, make_op
from zooforge.converters.errors import CaffeModelError, UnsupportedLayerError, ZooforgeError
from zooforge.versioning.names import fresh_name

Shape = tuple[int, ...]
_FLOAT = 1  # caffe2.TensorProto.FLOAT


class Translation:
    """The NetDef under construction, with every blob's shape known."""

    def __init__(self, net: CaffeNet) -> None:
        self.predict = schema.NetDef(name=net.name)
        self.weights: dict[str, np.ndarray] = {}
        self.shapes: dict[str, Shape] = dict(net.inputs)
        self.layer: CaffeLayer | None = None
        self._used_blobs = 0
        self._op_names: set[str] = set()  # unique: the historical frontend makes them ONNX node names
        self.origins: dict[str, str] = {}  # operator name -> the Caffe layer it comes from
        self._held_op_names: set[str] = set()  # kept from fresh names for a later ``add(op_name=...)``
        # Caffe allows any blob name ("_<layer>_<suffix>" too): helper blobs must not take one.
        self._taken: set[str] = {*net.inputs, *(b for layer in net.layers for b in (*layer.bottoms, *layer.tops))}

    @property
    def where(self) -> str:
        layer = self.layer
        return f"layer '{layer.name}' ({layer.type})" if layer else "net"

    def shape(self, blob: str) -> Shape:
        return self.shapes[blob]

    def add(self, op_type: str, inputs: Sequence[str], outputs: Sequence[str], *, op_name: str | None = None,
            **args: Any) -> str:
        """Append an operator named after the current layer (``<layer>_2``, ... for the layer's
        further operators, or ``op_name`` if given and free); return its first output."""
        if op_name is not None and (op_name in self._op_names) != (op_name in self._held_op_names):
            raise CaffeModelError(f"{self.where}: operator name '{op_name}' is taken")
        name = op_name if op_name is not None else fresh_name(self.layer.name, self._op_names) if self.layer else ""
        self._op_names.add(name)
        self._held_op_names.discard(name)
        op = make_op(op_type, inputs, outputs, name=name, **args)
        try:
            shapes = infer_shapes(_single_op_net(op), {name: self.shapes[name] for name in inputs})
        except ZooforgeError as exc:
            raise CaffeModelError(f"{self.where}: {_strip_operator_prefix(str(exc), op)}") from None
        self.shapes.update({name: shapes[name] for name in outputs})
        self.predict.op.append(op)
        if self.layer:
            self.origins[name] = self.where
        return outputs[0]

    def hold_op_name(self, name: str) -> None:
        """Keep ``name`` from the layer's automatic operator names, for a later ``add(op_name=name)``."""
        if name in self._op_names:
            raise CaffeModelError(f"{self.where}: operator name '{name}' is taken")
        self._op_names.add(name)
        self._held_op_names.add(name)

    def weight(self, suffix: str, array: np.ndarray) -> str:
        name = f"{self.layer.name}_{suffix}"
        if name in self.weights or name in self.shapes:
            raise CaffeModelError(f"{self.where}: weight name '{name}' clashes with another blob")
        self.weights[name] = np.ascontiguousarray(array, dtype=np.float32)
        self.shapes[name] = self.weights[name].shape
        return name

    def temp(self, suffix: str) -> str:
        """A name for a blob private to the current layer: ``_<layer>_<suffix>``, with ``_2``, ...
        added if a blob of the Caffe net or an earlier blob of the NetDef has it already."""
        self._taken.update(self.shapes)
        return fresh_name(f"_{self.layer.name}_{suffix}", self._taken)

    def blob(self, index: int, shape: Shape) -> np.ndarray:
        """Weight blob ``index`` of the current layer, of exactly ``shape`` as Caffe requires (or
        its legacy 4-D form ``num, channels, height, width``, as V1 weights files store it)."""
        blobs = self.layer.blobs
        if index >= len(blobs):
            raise CaffeModelError(
                f"{self.where} needs weight blob {index}, but the weights file gives it {len(blobs)}"
            )
        self._used_blobs = max(self._used_blobs, index + 1)
        array = blobs[index]
        legacy = (1,) * (4 - len(shape)) + tuple(shape) if len(shape) <= 4 else None
        if tuple(array.shape) not in (tuple(shape), legacy):
            raise CaffeModelError(
                f"{self.where}: weight blob {index} has shape {list(array.shape)}, "
                f"expected {list(shape)}"
            )
        return array.reshape(shape)

    def begin_layer(self, layer: CaffeLayer) -> None:
        self.layer = layer
        self._used_blobs = 0

    def end_layer(self) -> None:
        """Caffe refuses a weights file whose layer holds more blobs than the layer takes."""
        given = len(self.layer.blobs)
        if given > self._used_blobs:
            raise CaffeModelError(
                f"{self.where}: the weights file gives {given} weight blobs, the layer takes {self._used_blobs}"
            )

    def axis(self, value: int, rank: int, name: str = "axis") -> int:
        """Caffe's CanonicalAxisIndex: ``-rank <= value < rank``, negative counting from the end."""
        if not -rank <= value < rank:
            raise CaffeModelError(
                f"{self.where}: {name} {value} is out of range for a {rank}-D input ({-rank} to {rank - 1})"
            )
        return value % rank


def _single_op_net(op: Any) -> Any:
    net = schema.NetDef()
    net.op.append(op)
    return net


def _strip_operator_prefix(message: str, op: Any) -> str:
    """The executor's sentence without its ``operator 0 (<type> '<name>' -> [<outputs>]): `` head
    (the layer's name and type say where), cut whole: a layer's name may itself hold ``": "``."""
    return message.removeprefix(f"{describe_operator(op, 0)}: ")


# Caffe's blob counts per layer type (its Exact/Min/MaxNum{Bottom,Top}Blobs, checked when Caffe
# sets the net up): (bottoms, tops) as (least, most). Pooling may add a mask top only for MAX.
_MANY = 1 << 30
_ONE = (1, 1)
_BLOB_COUNTS: Mapping[str, tuple[tuple[int, int], tuple[int, int]]] = {
    **dict.fromkeys(("Convolution", "Deconvolution"), ((1, _MANY), (1, _MANY))),
    "Pooling": (_ONE, (1, 2)),
    **dict.fromkeys(("LRN", "InnerProduct", "ReLU", "PReLU", "Sigmoid", "TanH", "AbsVal", "BNLL", "ELU", "Power",
                     "Exp", "Log", "Dropout", "Softmax", "BatchNorm", "Flatten", "Reshape", "ArgMax"), (_ONE, _ONE)),
    "Concat": ((1, _MANY), _ONE),
    **dict.fromkeys(("Slice", "Split"), (_ONE, (1, _MANY))),
    "Eltwise": ((2, _MANY), _ONE),
    **dict.fromkeys(("Scale", "Bias"), ((1, 2), _ONE)),
    "Crop": ((2, 2), _ONE),
    # the forks' layers (issue 13); Upsample takes SegNet's mask bottom too, refused by its translator
    "Axpy": ((3, 3), _ONE),
    **dict.fromkeys(("ConvolutionDepthwise", "ShuffleChannel", "Permute"), (_ONE, _ONE)),
    "Upsample": ((1, 2), _ONE),
    # SSD (issue 13)
    "Normalize": (_ONE, _ONE),
    "PriorBox": ((2, 2), _ONE),
    # SSD's DetectionOutput (zooforge issue 13, the wt-detout block)
    "DetectionOutput": ((3, 3), _ONE),
}


def check_blob_counts(t: Translation, layer: CaffeLayer) -> None:
    """Refuse what Caffe refuses: a translator reads only the bottoms and tops Caffe allows."""
    bottoms, tops = _BLOB_COUNTS[layer.type]
    if layer.type == "Pooling" and layer.param.pooling_param.pool != 0:
        tops = _ONE
    for kind, blobs, (low, high) in (("bottom", layer.bottoms, bottoms), ("top", layer.tops, tops)):
        if not low <= len(blobs) <= high:
            expected = f"{low}" if low == high else f"at least {low}" if high == _MANY else f"{low} to {high}"
            raise CaffeModelError(f"{t.where} takes {expected} {kind} blob(s), as Caffe requires, found {len(blobs)}")
    if layer.type in ("Convolution", "Deconvolution") and len(layer.bottoms) > 1:
        if len(layer.tops) != len(layer.bottoms):
            raise CaffeModelError(f"{t.where} has {len(layer.bottoms)} bottoms and {len(layer.tops)} tops; "
                                  "Caffe requires one top per bottom")
        raise UnsupportedLayerError(f"{t.where}: {len(layer.bottoms)} bottom/top pairs sharing one set of weights "
                                    "cannot be converted (one pair per layer can)")
    if layer.type == "Pooling" and len(layer.tops) > 1:
        raise UnsupportedLayerError(f"{t.where}: the mask top '{layer.tops[1]}' of MAX pooling cannot be converted")


def translate(net: CaffeNet) -> Caffe2Model:
    """Translate every layer; the result's weights are the init net."""
    t = Translation(net)
    for layer in net.layers:
        translator = TRANSLATORS.get(layer.type)
        if translator is None:
            raise UnsupportedLayerError(
                f"layer '{layer.name}' has type '{layer.type}', which zooforge cannot convert; "
                f"supported types: {', '.join(sorted(TRANSLATORS))}"
            )
        t.begin_layer(layer)
        check_blob_counts(t, layer)
        translator(t, layer)
        t.end_layer()
    t.layer = None
    t.predict.external_input.extend(list(net.inputs) + list(t.weights))
    t.predict.external_output.extend(net.outputs)
    if net.synthetic_weights:
        t.predict.arg.append(make_arg(SYNTHETIC_ARG, 1))
    detections = [top for layer in net.layers if layer.type == "DetectionOutput" for top in layer.tops
                  if top in net.outputs]
    if detections:
        t.predict.arg.append(make_arg(DETECTION_ROWS_ARG, detections))
    return Caffe2Model(t.predict, t.weights, dict(net.inputs), origins=t.origins)


# -- layer translators --------------------------------------------------------------------------

def _window_args(kernel: Shape, stride: Shape, pad: Shape, dilation: Shape = (1, 1)) -> dict[str, Any]:
    """Caffe2's classic spelling, as caffe_translator wrote it: ``kernel``, ``stride`` and ``pad``
    always present (one value when square, ``_h``/``_w`` or ``pad_t/l/b/r`` otherwise); the
    historical onnx-caffe2 frontend reads them unconditionally. Dilation only when not 1."""
    args: dict[str, Any] = {}
    for key, value in (("kernel", kernel), ("stride", stride), ("pad", pad), ("dilation", dilation)):
        if key == "dilation" and value == (1, 1):
            continue
        if value[0] == value[1]:
            args[key] = value[0]
        elif key == "pad":
            args.update(pad_t=value[0], pad_b=value[0], pad_l=value[1], pad_r=value[1])
        else:
            args[f"{key}_h"], args[f"{key}_w"] = value
    return args


def _conv_common(t: Translation, layer: CaffeLayer, transposed: bool, depthwise: bool = False) -> None:
    """Convolution or its transpose; ``depthwise``: one output channel per input channel whatever
    ``num_output`` and ``group`` say (sp2823's ConvolutionDepthwise, which checks neither)."""
    p = layer.param.convolution_param
    where = t.where
    if p.axis != 1:
        raise UnsupportedLayerError(f"{where}: only axis 1 (NCHW) convolutions are supported")
    kernel = spatial(p, "kernel_size", None, where, pair="kernel", minimum=1)
    stride = spatial(p, "stride", 1, where, minimum=1)
    pad = spatial(p, "pad", 0, where)
    dilation = _dilation(p, where)
    x = layer.bottoms[0]
    channels = t.shape(x)[1]
    num_output, group = _depthwise_shape(t, p, channels) if depthwise else (p.num_output, p.group)
    if num_output < 1:
        raise CaffeModelError(f"{where}: num_output must be at least 1, found {num_output}")
    if group < 1 or channels % group or num_output % group:
        raise CaffeModelError(
            f"{where}: group {group} does not divide {channels} input and {num_output} output channels"
        )
    if transposed:
        w_shape = (channels, num_output // group, *kernel)
    else:
        w_shape = (num_output, channels // group, *kernel)
    inputs = [x, t.weight("w", t.blob(0, w_shape))]
    if p.bias_term:
        inputs.append(t.weight("b", t.blob(1, (num_output,))))
    args = _window_args(kernel, stride, pad, dilation)
    if group != 1:
        args["group"] = group
    t.add("ConvTranspose" if transposed else "Conv", inputs, [layer.tops[0]], order="NCHW", **args)


def _dilation(p: Any, where: str) -> tuple[int, int]:
    values = [int(v) for v in p.dilation] or [1]
    if len(values) > 2:
        raise UnsupportedLayerError(f"{where}: only 2-D dilation is supported, found {values}")
    if min(values) < 1:
        raise CaffeModelError(f"{where}: dilation {values} must be at least 1")
    return (values[0], values[-1])


def _convolution(t: Translation, layer: CaffeLayer) -> None:
    _conv_common(t, layer, transposed=False)


def _deconvolution(t: Translation, layer: CaffeLayer) -> None:
    _conv_common(t, layer, transposed=True)


def _depthwise_shape(t: Translation, p: Any, channels: int) -> tuple[int, int]:
    """ConvolutionDepthwise's (num_output, group): both the input's channel count. The fork ignores
    the two fields; a value that says otherwise is refused rather than silently overridden."""
    for name in ("num_output", "group"):
        if p.HasField(name) and getattr(p, name) != channels:
            raise CaffeModelError(
                f"{t.where}: {name} {getattr(p, name)} differs from the input's {channels} channels; a "
                "ConvolutionDepthwise layer makes one output channel per input channel (group = channels)"
            )
    return channels, channels


def _convolution_depthwise(t: Translation, layer: CaffeLayer) -> None:
    _conv_common(t, layer, transposed=False, depthwise=True)


def _pooling(t: Translation, layer: CaffeLayer) -> None:
    p = layer.param.pooling_param
    where = t.where
    methods = {0: "MaxPool", 1: "AveragePool"}
    if p.pool not in methods:
        raise UnsupportedLayerError(f"{where}: STOCHASTIC pooling cannot be converted")
    x, top = layer.bottoms[0], layer.tops[0]
    if len(t.shape(x)) != 4:  # Caffe's PoolingLayer::Reshape checks the same
        raise CaffeModelError(f"{where}: pooling takes a 4-axis (num, channels, height, width) input; "
                              f"'{x}' has shape {list(t.shape(x))}")
    if p.global_pooling:
        # Real Caffe2 wants a kernel even here (it refuses a kernel-less op named "...Pool...").
        height, width = t.shape(x)[2:4]
        t.add(methods[p.pool], [x], [top], order="NCHW", global_pooling=1,
              **_window_args((height, width), (1, 1), (0, 0)))
        return
    kernel = spatial(p, "kernel_size", None, where, pair="kernel", minimum=1)
    stride, pad = spatial(p, "stride", 1, where, minimum=1), spatial(p, "pad", 0, where)
    if pad[0] >= kernel[0] or pad[1] >= kernel[1]:
        raise CaffeModelError(f"{where}: pad {list(pad)} must be smaller than the kernel {list(kernel)}")
    ceil = _ceil_rounding(t, p)
    args = _caffe_pool_args(t.shape(x)[2:4], kernel, stride, pad) if ceil else _window_args(kernel, stride, pad)
    if p.pool == 0:
        t.add("MaxPool", [x], [top], order="NCHW", **args)
        return
    _average_pool(t, x, top, kernel, stride, pad, ceil, args)


def _ceil_rounding(t: Translation, p: Any) -> bool:
    """Caffe's ceil rounding unless BVLC master's ``round_mode: FLOOR`` or the forks' ``ceil_mode: false``
    asks for floor (the two spellings must agree where both are given)."""
    ceil_by_round_mode = p.round_mode == 0  # CEIL
    if p.HasField("round_mode") and p.HasField("ceil_mode") and p.ceil_mode != ceil_by_round_mode:
        raise CaffeModelError(f"{t.where}: round_mode {'CEIL' if ceil_by_round_mode else 'FLOOR'} (BVLC) and "
                              f"ceil_mode {str(p.ceil_mode).lower()} (the forks') contradict each other")
    return ceil_by_round_mode and p.ceil_mode


def _caffe_pool_args(size: Shape, kernel: Shape, stride: Shape, pad: Shape) -> dict[str, Any]:
    """Caffe's ceil rounding: ``legacy_pad=3`` (CAFFE_LEGACY_POOLING), as caffe_translator wrote it.

    Under it real Caffe2 pads the end by ``pad + stride * (ceil size - floor size)``, which can
    reach the kernel size; the historical frontend copies that pad into ONNX, whose runtimes then
    refuse the model. Only there the same computation is written with explicit end pads instead
    (the least that fit the last window; real Caffe2 computes the same with either form).
    """
    legacy = {**_window_args(kernel, stride, pad), "legacy_pad": CAFFE_LEGACY_POOLING}
    legacy_tails, ends = [], []
    for axis in range(2):
        out = pool_extent(size[axis], kernel[axis], stride[axis], pad[axis], pad[axis], caffe_ceil=True)
        floor = (size[axis] + 2 * pad[axis] - kernel[axis]) // stride[axis] + 1
        legacy_tails.append(pad[axis] + stride[axis] * (out - floor))
        covered = (out - 1) * stride[axis] + kernel[axis]
        ends.append(pad[axis] + max(0, covered - size[axis] - 2 * pad[axis]))
    if all(tail < k for tail, k in zip(legacy_tails, kernel)) or any(end >= k for end, k in zip(ends, kernel)):
        return legacy  # the frontend copes, or no explicit form is valid either
    explicit = {key: value for key, value in _window_args(kernel, stride, pad).items() if not key.startswith("pad")}
    return {**explicit, "pad_t": pad[0], "pad_l": pad[1], "pad_b": ends[0], "pad_r": ends[1]}


def _average_pool(t: Translation, x: str, top: str, kernel: Shape, stride: Shape, pad: Shape, ceil: bool,
                  args: dict[str, Any]) -> None:
    """Caffe's average divides by the window clipped to the padded input (padding cells count,
    cells past it don't). Caffe2 divides by the cells inside the image (``count_include_pad=0``)
    or by the whole kernel (``count_include_pad=1``): the first is Caffe's divisor without padding,
    the second with padding as long as no window reaches past the padded input. Where a
    ceil-extended last window does, a constant per-cell factor fixes the divisor."""
    if not any(pad):
        t.add("AveragePool", [x], [top], order="NCHW", **args)
        return
    height, width = t.shape(x)[2:4]
    divisors = [_caffe_divisors(size, kernel[i], stride[i], pad[i], ceil) for i, size in enumerate((height, width))]
    area = float(kernel[0] * kernel[1])
    factor = area / np.outer(divisors[0], divisors[1])
    if np.all(factor == 1.0):
        t.add("AveragePool", [x], [top], order="NCHW", count_include_pad=1, **args)
        return
    pooled = t.add("AveragePool", [x], [t.temp("kernel_mean")], order="NCHW", count_include_pad=1, **args)
    t.add("Mul", [pooled, t.weight("divisor_fix", factor.astype(np.float32))], [top])


def _caffe_divisors(size: int, kernel: int, stride: int, pad: int, ceil: bool) -> np.ndarray:
    """Caffe's AVE divisor per output position along one axis: the window clipped to size + pad."""
    out = pool_extent(size, kernel, stride, pad, pad, ceil)
    starts = np.arange(out) * stride - pad
    return (np.minimum(starts + kernel, size + pad) - starts).astype(np.float64)


def _lrn(t: Translation, layer: CaffeLayer) -> None:
    p = layer.param.lrn_param
    x, top = layer.bottoms[0], layer.tops[0]
    if p.local_size % 2 == 0:
        raise CaffeModelError(f"{t.where}: local_size must be odd, found {p.local_size}")
    if p.norm_region == 0:  # ACROSS_CHANNELS
        t.add("LRN", [x], [top], size=p.local_size, alpha=p.alpha, beta=p.beta, bias=p.k, order="NCHW")
        return
    # WITHIN_CHANNEL: x * (1 + alpha * mean of x^2 over a local_size^2 window) ^ -beta, the power
    # as exp(-beta * log(.)) (its base is >= 1), in operators the historical frontend can export.
    half = (p.local_size - 1) // 2
    squared = t.add("Mul", [x, x], [t.temp("sqr")])
    pooled = t.add(
        "AveragePool", [squared], [t.temp("pool")], order="NCHW", count_include_pad=1,
        **_window_args((p.local_size,) * 2, (1, 1), (half, half)),
    )
    shifted = _chain(t, pooled, t.temp("shifted"), [("Mul", p.alpha), ("Add", 1.0)], "base")
    logged = t.add("Log", [shifted], [t.temp("log")])
    factor = _chain(t, logged, t.temp("scaled_log"), [("Mul", -p.beta)], "exponent")
    powered = t.add("Exp", [factor], [t.temp("factor")])
    t.add("Mul", [x, powered], [top])


def _inner_product(t: Translation, layer: CaffeLayer) -> None:
    p = layer.param.inner_product_param
    x = layer.bottoms[0]
    shape = t.shape(x)
    axis = t.axis(p.axis, len(shape))
    if p.num_output < 1:
        raise CaffeModelError(f"{t.where}: num_output must be at least 1, found {p.num_output}")
    inner = math.prod(shape[axis:])  # exact: an int64 product wraps for huge declared shapes
    if p.transpose:
        w = t.blob(0, (inner, p.num_output)).T
    else:
        w = t.blob(0, (p.num_output, inner))
    # Caffe2's FC always takes a bias.
    bias = t.blob(1, (p.num_output,)) if p.bias_term else np.zeros(p.num_output, np.float32)
    args = {"axis": axis} if axis != 1 else {}
    t.add("FC", [x, t.weight("w", w), t.weight("b", bias)], [layer.tops[0]], **args)


def _relu(t: Translation, layer: CaffeLayer) -> None:
    slope = layer.param.relu_param.negative_slope
    if slope:
        t.add("LeakyRelu", layer.bottoms[:1], layer.tops[:1], alpha=slope)
    else:
        t.add("Relu", layer.bottoms[:1], layer.tops[:1])


def _prelu(t: Translation, layer: CaffeLayer) -> None:
    x = layer.bottoms[0]
    count = 1 if layer.param.prelu_param.channel_shared else t.shape(x)[1]
    slope = t.blob(0, () if layer.param.prelu_param.channel_shared else (count,))  # Caffe's own shapes
    if count > 1:  # (C, 1, ...): real Caffe2 reads it per channel, and so does ONNX's broadcasting
        slope = slope.reshape((count,) + (1,) * (len(t.shape(x)) - 2))
    t.add("PRelu", [x, t.weight("slope", slope)], layer.tops[:1])


def _one_to_one(op_type: str, t: Translation, layer: CaffeLayer) -> None:
    t.add(op_type, layer.bottoms[:1], layer.tops[:1])


def _elementwise(op_type: str) -> Callable[[Translation, CaffeLayer], None]:
    """The translation of a layer that is one Caffe2 operator of one input (a module-level function,
    bound with ``partial`` rather than a closure, so that mutation testing reaches it)."""
    return partial(_one_to_one, op_type)


def _elu(t: Translation, layer: CaffeLayer) -> None:
    t.add("Elu", layer.bottoms[:1], layer.tops[:1], alpha=layer.param.elu_param.alpha)


Step = tuple[str, float]  # ("Mul" | "Add", constant) or (unary op type, 0.0)


def _affine(scale: float, shift: float) -> list[Step]:
    """Steps computing ``scale * x + shift``, leaving out identities."""
    steps: list[Step] = []
    if scale != 1.0:
        steps.append(("Mul", scale))
    if shift != 0.0:
        steps.append(("Add", shift))
    return steps


def _chain(t: Translation, source: str, out: str, steps: Sequence[Step], hint: str = "step") -> str:
    """Apply one-input steps from ``source`` to ``out``; ``Mul``/``Add`` take a constant, stored
    as a one-element weight broadcast onto the input (a 0-d one crashes the historical frontend)."""
    steps = list(steps) or [("Copy", 0.0)]
    current = source
    for index, (op_type, value) in enumerate(steps):
        target = out if index == len(steps) - 1 else t.temp(f"{hint}{index}")
        if op_type in ("Mul", "Add"):
            constant = t.weight(f"{hint}{index}", np.full((1,), value, np.float32))
            current = t.add(op_type, [current, constant], [target], broadcast=1)
        else:
            current = t.add(op_type, [current], [target])
    return current


def _layer_chain(t: Translation, layer: CaffeLayer, steps: Sequence[Step]) -> None:
    _chain(t, layer.bottoms[0], layer.tops[0], steps)


def _power(t: Translation, layer: CaffeLayer) -> None:
    p = layer.param.power_param
    steps = _affine(p.scale, p.shift)
    current = layer.bottoms[0]
    if p.power != 1.0:
        # Pow with a constant exponent (the historical frontend cannot export it: see the README)
        current = _chain(t, current, t.temp("base"), steps, "affine") if steps else current
        t.add("Pow", [current], [layer.tops[0]], exponent=p.power)
        return
    _layer_chain(t, layer, steps)


def _exp(t: Translation, layer: CaffeLayer) -> None:
    p = layer.param.exp_param
    log_base = 1.0 if p.base == -1 else math.log(p.base)
    _layer_chain(t, layer, _affine(p.scale * log_base, p.shift * log_base) + [("Exp", 0.0)])


def _log(t: Translation, layer: CaffeLayer) -> None:
    p = layer.param.log_param
    inv_log_base = 1.0 if p.base == -1 else 1.0 / math.log(p.base)
    change_base = [("Mul", inv_log_base)] if inv_log_base != 1.0 else []
    _layer_chain(t, layer, _affine(p.scale, p.shift) + [("Log", 0.0)] + change_base)


def _dropout(t: Translation, layer: CaffeLayer) -> None:
    ratio = layer.param.dropout_param.dropout_ratio
    if not 0.0 <= ratio < 1.0:
        raise CaffeModelError(f"{t.where}: dropout_ratio {ratio:g} must lie in [0, 1)")
    t.add("Dropout", layer.bottoms[:1], layer.tops[:1], ratio=ratio, is_test=1)


def _softmax(t: Translation, layer: CaffeLayer) -> None:
    x, top = layer.bottoms[0], layer.tops[0]
    rank = len(t.shape(x))
    axis = t.axis(layer.param.softmax_param.axis, rank)
    if axis == rank - 1:
        t.add("Softmax", [x], [top], axis=axis)
        return
    # Caffe normalises along one axis; Caffe2 flattens everything from ``axis`` on. Move the
    # axis last, normalise there, and move it back.
    order = [d for d in range(rank) if d != axis] + [axis]
    back = list(np.argsort(order))
    moved = t.add("Transpose", [x], [t.temp("moved")], axes=order)
    normed = t.add("Softmax", [moved], [t.temp("softmax")], axis=rank - 1)
    t.add("Transpose", [normed], [top], axes=[int(a) for a in back])


def _concat(t: Translation, layer: CaffeLayer) -> None:
    p = layer.param.concat_param
    axis = p.concat_dim if p.HasField("concat_dim") else p.axis
    axis = t.axis(axis, len(t.shape(layer.bottoms[0])), "concat_dim" if p.HasField("concat_dim") else "axis")
    # Caffe2's Concat has two outputs (the result and split_info) and refuses axis with order.
    t.add("Concat", layer.bottoms, [layer.tops[0], t.temp("split_info")], axis=axis)


def _slice(t: Translation, layer: CaffeLayer) -> None:
    p = layer.param.slice_param
    x = layer.bottoms[0]
    shape = t.shape(x)
    axis = t.axis(p.slice_dim if p.HasField("slice_dim") else p.axis, len(shape),
                  "slice_dim" if p.HasField("slice_dim") else "axis")
    points = [int(v) for v in p.slice_point]
    if points:
        if len(points) != len(layer.tops) - 1:
            raise CaffeModelError(
                f"{t.where}: {len(points)} slice points for {len(layer.tops)} tops"
            )
        edges = [0, *points, shape[axis]]
        sizes = [b - a for a, b in zip(edges, edges[1:])]
        if any(size <= 0 for size in sizes):
            raise CaffeModelError(f"{t.where}: slice points {points} do not increase within {shape[axis]}")
    else:
        if shape[axis] % len(layer.tops):
            raise CaffeModelError(
                f"{t.where}: dimension {shape[axis]} does not split evenly into {len(layer.tops)} tops"
            )
        sizes = [shape[axis] // len(layer.tops)] * len(layer.tops)
    t.add("Split", [x], layer.tops, axis=axis, split=sizes)


def _split(t: Translation, layer: CaffeLayer) -> None:
    for top in layer.tops:
        t.add("Copy", layer.bottoms[:1], [top])


def _eltwise(t: Translation, layer: CaffeLayer) -> None:
    p = layer.param.eltwise_param
    bottoms, top = layer.bottoms, layer.tops[0]
    coeffs = [float(c) for c in p.coeff]
    if coeffs and (len(coeffs) != len(bottoms) or p.operation != 1):
        raise CaffeModelError(
            f"{t.where}: {len(coeffs)} coefficients for {len(bottoms)} bottoms "
            "(coefficients need the SUM operation and one per bottom)"
        )
    if p.operation == 1:  # SUM
        if any(c != 1.0 for c in coeffs):
            bottoms = [
                b if c == 1.0 else _chain(t, b, t.temp(f"coeff{i}"), [("Mul", c)], f"coeff{i}_")
                for i, (b, c) in enumerate(zip(bottoms, coeffs))
            ]
        t.add("Sum", bottoms, [top])
    elif p.operation == 2:  # MAX
        t.add("Max", bottoms, [top])
    else:  # PROD
        current = bottoms[0]
        for index, other in enumerate(bottoms[1:], start=1):
            out = top if index == len(bottoms) - 1 else t.temp(f"prod{index}")
            current = t.add("Mul", [current, other], [out])


def _batch_norm(t: Translation, layer: CaffeLayer) -> None:
    x = layer.bottoms[0]
    channels = t.shape(x)[1]
    mean = t.blob(0, (channels,))
    var = t.blob(1, (channels,))
    factor = float(t.blob(2, (1,))[0])
    scale = 0.0 if factor == 0 else 1.0 / factor
    eps = layer.param.batch_norm_param.eps
    inputs = [
        x,
        t.weight("s", np.ones(channels, np.float32)),
        t.weight("b", np.zeros(channels, np.float32)),
        t.weight("rm", mean * scale),
        t.weight("riv", var * scale),
    ]
    t.add("SpatialBN", inputs, layer.tops[:1], epsilon=eps, is_test=1, order="NCHW")


def _broadcast_span(t: Translation, layer: CaffeLayer, axis: int, num_axes: int) -> tuple[int, Shape]:
    """Caffe's Scale/Bias geometry: the operand covers ``shape[axis:axis + num_axes]``."""
    shape = t.shape(layer.bottoms[0])
    axis = t.axis(axis, len(shape))
    if len(layer.bottoms) > 1:
        span = t.shape(layer.bottoms[1])
        if tuple(shape[axis : axis + len(span)]) != tuple(span):
            raise CaffeModelError(f"{t.where}: bottom '{layer.bottoms[1]}' of shape {list(span)} does not match "
                                  f"{list(shape)} from axis {axis}")
        return axis, span
    if num_axes < -1 or (num_axes != -1 and axis + num_axes > len(shape)):
        raise CaffeModelError(f"{t.where}: num_axes {num_axes} from axis {axis} does not fit a {len(shape)}-D input")
    end = len(shape) if num_axes == -1 else axis + num_axes
    return axis, tuple(shape[axis:end])


def _broadcast(t: Translation, x: str, op_type: str, operand: str | np.ndarray, axis: int,
               span: Shape, out: str, suffix: str) -> str:
    """``x op operand`` with the operand laid along ``span`` from ``axis`` (Caffe's rule).

    A 1-D span keeps Caffe2's classic legacy form (``broadcast=1, axis``, as caffe_translator
    wrote it); a longer one uses NumPy broadcasting with the operand shaped ``span + (1, ...)``,
    since the historical frontend mistranslates the legacy form for multi-dimensional operands.
    """
    if len(span) == 1:
        name = operand if isinstance(operand, str) else t.weight(suffix, operand)
        return t.add(op_type, [x, name], [out], broadcast=1, axis=axis)
    aligned = tuple(span) + (1,) * (len(t.shape(x)) - axis - len(span))
    if isinstance(operand, str):
        if aligned != tuple(span):
            operand = t.add("Reshape", [operand], [t.temp(f"{suffix}_aligned"), t.temp(f"{suffix}_old_shape")],
                            shape=list(aligned))
        name = operand
    else:
        name = t.weight(suffix, operand.reshape(aligned))
    return t.add(op_type, [x, name], [out])


def _scale(t: Translation, layer: CaffeLayer) -> None:
    p = layer.param.scale_param
    axis, span = _broadcast_span(t, layer, p.axis, p.num_axes)
    if len(layer.bottoms) > 1:
        factor: str | np.ndarray = layer.bottoms[1]
        bias_index = 0
    else:
        factor = t.blob(0, span)
        bias_index = 1
    out = layer.tops[0]
    x = layer.bottoms[0]
    product = _broadcast(t, x, "Mul", factor, axis, span, t.temp("scaled") if p.bias_term else out, "w")
    if p.bias_term:
        _broadcast(t, product, "Add", t.blob(bias_index, span), axis, span, out, "b")


def _bias(t: Translation, layer: CaffeLayer) -> None:
    p = layer.param.bias_param
    axis, span = _broadcast_span(t, layer, p.axis, p.num_axes)
    bias = layer.bottoms[1] if len(layer.bottoms) > 1 else t.blob(0, span)
    _broadcast(t, layer.bottoms[0], "Add", bias, axis, span, layer.tops[0], "b")


def _reshape_to(t: Translation, layer: CaffeLayer, target: Shape) -> None:
    spec = list(target)
    if spec and spec[0] == t.shape(layer.bottoms[0])[0]:
        spec[0] = 0  # keep the batch dimension free
    t.add("Reshape", layer.bottoms[:1], [layer.tops[0], t.temp("old_shape")], shape=spec)


def _flatten(t: Translation, layer: CaffeLayer) -> None:
    p = layer.param.flatten_param
    shape = t.shape(layer.bottoms[0])
    axis, end = t.axis(p.axis, len(shape)), t.axis(p.end_axis, len(shape), "end_axis")
    if end < axis:
        raise CaffeModelError(f"{t.where}: end_axis {p.end_axis} comes before axis {p.axis}")
    if axis == 1 and end == len(shape) - 1:
        t.add("Flatten", layer.bottoms[:1], layer.tops[:1], axis=1)
        return
    merged = int(np.prod(shape[axis : end + 1], dtype=np.int64))
    _reshape_to(t, layer, (*shape[:axis], merged, *shape[end + 1 :]))


def _reshape(t: Translation, layer: CaffeLayer) -> None:
    p = layer.param.reshape_param
    shape = t.shape(layer.bottoms[0])
    axis = p.axis if p.axis >= 0 else len(shape) + p.axis + 1
    end = len(shape) if p.num_axes == -1 else axis + p.num_axes
    if not 0 <= axis <= end <= len(shape):
        raise CaffeModelError(f"{t.where}: axis {p.axis} / num_axes {p.num_axes} do not fit {list(shape)}")
    spec = [int(d) for d in p.shape.dim]
    middle = [shape[axis + i] if d == 0 else d for i, d in enumerate(spec)]
    target = [*shape[:axis], *middle, *shape[end:]]
    if target.count(-1) > 1:
        raise CaffeModelError(f"{t.where}: shape {spec} infers more than one dimension")
    if -1 in target:
        known = int(np.prod([d for d in target if d != -1], dtype=np.int64))
        target[target.index(-1)] = int(np.prod(shape, dtype=np.int64)) // max(known, 1)
    if int(np.prod(target, dtype=np.int64)) != int(np.prod(shape, dtype=np.int64)):
        raise CaffeModelError(f"{t.where}: cannot reshape {list(shape)} to {spec}")
    _reshape_to(t, layer, tuple(target))


def _crop(t: Translation, layer: CaffeLayer) -> None:
    p = layer.param.crop_param
    x, reference = layer.bottoms[0], layer.bottoms[1]
    shape, ref = t.shape(x), t.shape(reference)
    axis = t.axis(p.axis, len(shape))
    if len(ref) != len(shape):
        raise CaffeModelError(f"{t.where}: bottoms of {len(shape)} and {len(ref)} dimensions")
    offsets = [int(o) for o in p.offset]
    count = len(shape) - axis
    if len(offsets) not in (0, 1, count):
        raise CaffeModelError(f"{t.where}: {len(offsets)} offsets for {count} cropped axes")
    offsets = offsets * count if len(offsets) == 1 else offsets or [0] * count
    starts, ends = [], []
    for dim in range(len(shape)):
        if dim < axis:
            starts.append(0)
            ends.append(-1)
        else:
            offset = offsets[dim - axis]
            if offset + ref[dim] > shape[dim]:
                raise CaffeModelError(
                    f"{t.where}: crop of {ref[dim]} at offset {offset} exceeds dimension {dim} "
                    f"of size {shape[dim]}"
                )
            starts.append(offset)
            ends.append(offset + ref[dim])
    # Real Caffe2's Slice cuts one axis at a time: one Slice per cropped axis.
    cuts = [dim for dim in range(axis, len(shape)) if (starts[dim], ends[dim]) != (0, shape[dim])]
    current = x
    for number, dim in enumerate(cuts or [len(shape) - 1]):
        out = layer.tops[0] if number == max(len(cuts), 1) - 1 else t.temp(f"crop{dim}")
        axis_starts = [starts[d] if d == dim else 0 for d in range(len(shape))]
        axis_ends = [ends[d] if d == dim else -1 for d in range(len(shape))]
        current = t.add("Slice", [current], [out], starts=axis_starts, ends=axis_ends)


def _argmax(t: Translation, layer: CaffeLayer) -> None:
    p = layer.param.argmax_param
    if p.out_max_val or p.top_k != 1:
        raise UnsupportedLayerError(f"{t.where}: only top_k 1 without out_max_val is supported")
    x, top = layer.bottoms[0], layer.tops[0]
    if p.HasField("axis"):
        index = t.add("ArgMax", [x], [t.temp("index")], axis=t.axis(p.axis, len(t.shape(x))), keepdims=1)
        t.add("Cast", [index], [top], to=_FLOAT)
        return
    flat = t.add("Flatten", [x], [t.temp("flat")], axis=1)
    index = t.add("ArgMax", [flat], [t.temp("index")], axis=1, keepdims=1)
    shaped = t.add("Reshape", [index], [t.temp("shaped"), t.temp("old_shape")], shape=[0, 1, 1])
    t.add("Cast", [shaped], [top], to=_FLOAT)


# -- the forks' layers (issue 13): Axpy, ShuffleChannel, Upsample, Permute -----------------------

def _axpy(t: Translation, layer: CaffeLayer) -> None:
    """SENet's Axpy (hujie-frank/SENet axpy_layer.cpp): ``a * x + y``, with ``a`` one value per
    (item, channel), shaped (N, C) or (N, C, 1, 1), and ``x``, ``y`` of one shape."""
    a, x, y = layer.bottoms
    sa, sx, sy = t.shape(a), t.shape(x), t.shape(y)
    if len(sx) < 2 or tuple(sx) != tuple(sy):
        raise CaffeModelError(f"{t.where}: bottoms '{x}' {list(sx)} and '{y}' {list(sy)} must share one shape "
                              "of at least 2 axes")
    aligned = (sx[0], sx[1]) + (1,) * (len(sx) - 2)
    if tuple(sa[:2]) != tuple(sx[:2]) or len(sa) not in (2, len(sx)) or any(d != 1 for d in sa[2:]):
        raise CaffeModelError(f"{t.where}: the scale bottom '{a}' has shape {list(sa)}; Axpy needs "
                              f"{list(sx[:2])} or {list(aligned)} (one value per item and channel of '{x}')")
    if tuple(sa) != aligned:  # (N, C) -> (N, C, 1, ...) for NumPy-style broadcasting
        a = t.add("Reshape", [a], [t.temp("scale"), t.temp("old_shape")], shape=[0, *aligned[1:]])
    scaled = t.add("Mul", [x, a], [t.temp("scaled")])
    t.add("Add", [scaled, y], [layer.tops[0]])


def _shuffle_channel(t: Translation, layer: CaffeLayer) -> None:
    """ShuffleNet's ShuffleChannel (farmingyard/ShuffleNet): channels viewed as (group, C / group),
    transposed; real Caffe2's ChannelShuffle computes the same."""
    group = layer.param.shuffle_channel_param.group
    x = layer.bottoms[0]
    shape = t.shape(x)
    if len(shape) < 2 or group < 1 or shape[1] % group:
        raise CaffeModelError(f"{t.where}: group {group} does not divide the {shape[1] if len(shape) > 1 else 0} "
                              f"channels of '{x}' {list(shape)}")
    t.add("ChannelShuffle", [x], [layer.tops[0]], group=group, order="NCHW")


def _upsample(t: Translation, layer: CaffeLayer) -> None:
    """The YOLOv3 ports' Upsample: nearest neighbour, each pixel repeated ``scale`` times per axis."""
    if len(layer.bottoms) > 1:
        raise UnsupportedLayerError(
            f"{t.where} has {len(layer.bottoms)} bottoms: SegNet's max-unpooling Upsample (a pooling mask as second "
            "bottom) cannot be converted; the one-bottom nearest-neighbour Upsample of the YOLOv3 ports can")
    scale = layer.param.upsample_param.scale
    x = layer.bottoms[0]
    if scale < 1:
        raise CaffeModelError(f"{t.where}: upsample_param.scale must be at least 1, found {scale}")
    if len(t.shape(x)) != 4:
        raise CaffeModelError(f"{t.where}: Upsample takes a 4-axis (num, channels, height, width) input; "
                              f"'{x}' has shape {list(t.shape(x))}")
    t.add("ResizeNearest", [x], [layer.tops[0]], width_scale=float(scale), height_scale=float(scale),
          order="NCHW")


def _permute(t: Translation, layer: CaffeLayer) -> None:
    """SSD's Permute (permute_layer.cpp): the axes in ``order``, those left out following in their order."""
    x = layer.bottoms[0]
    rank = len(t.shape(x))
    order = [int(v) for v in layer.param.permute_param.order]
    if any(axis >= rank for axis in order) or len(set(order)) != len(order):
        raise CaffeModelError(f"{t.where}: permute_param order {order} is not a list of distinct axes of a "
                              f"{rank}-D input (0 to {rank - 1})")
    axes = order + [axis for axis in range(rank) if axis not in order]
    t.add("Transpose", [x], [layer.tops[0]], axes=axes)

# -- SSD's Normalize and PriorBox (weiliu89/caffe, branch ssd; zooforge issue 13) ----------------

def _normalize(t: Translation, layer: CaffeLayer) -> None:
    """``x / sqrt(sum of x^2 + eps) * scale``: the sum over the channels of each position, or over
    all of an item (``across_spatial``); the scale is one value (``channel_shared``) or one per
    channel. Mul, ReduceSum, Add, Sqrt, Div (NumPy broadcasting) and Mul on real Caffe2."""
    p = layer.param.norm_param
    x = layer.bottoms[0]
    shape = t.shape(x)
    if not 2 <= len(shape) <= 4:
        raise CaffeModelError(f"{t.where} takes a 2- to 4-axis input, as Caffe's legacy channels/height/width "
                              f"accessors require, found shape {list(shape)}")
    if not math.isfinite(p.eps) or p.eps < 0:
        raise CaffeModelError(f"{t.where}: eps {p.eps:g} must be a finite number of at least 0")
    scale = _normalize_scale(t, layer, shape[1])
    axes = list(range(1, len(shape))) if p.across_spatial else [1]
    squares = t.add("Mul", [x, x], [t.temp("sqr")])  # not Sqr: the historical frontend passes Sqr on to ONNX
    total = t.add("ReduceSum", [squares], [t.temp("sum")], axes=axes, keepdims=1)
    if p.eps:
        total = _chain(t, total, t.temp("sum_eps"), [("Add", float(p.eps))], "eps")
    norm = t.add("Sqrt", [total], [t.temp("norm")])
    normed = t.add("Div", [x, norm], [t.temp("normed")])  # NumPy broadcasting (opset 7 for ONNX)
    weight = t.weight("w", scale)
    if scale.size == 1:
        t.add("Mul", [normed, weight], layer.tops[:1], broadcast=1)
    else:
        t.add("Mul", [normed, weight], layer.tops[:1], broadcast=1, axis=1)


def _normalize_scale(t: Translation, layer: CaffeLayer, channels: int) -> np.ndarray:
    """Caffe's one blob: shape () when ``channel_shared`` (OpenCV's and other tools' (1,) is taken
    too), else (channels,)."""
    if not layer.param.norm_param.channel_shared:
        return t.blob(0, (channels,))
    given = layer.blobs[0].shape if layer.blobs else ()
    return t.blob(0, (1,) if tuple(given) == (1,) else ()).reshape(1)


def _positive(t: Translation, name: str, values: Sequence[float]) -> list[float]:
    bad = [v for v in values if not (math.isfinite(v) and v > 0)]
    if bad:
        raise CaffeModelError(f"{t.where}: {name} {bad[0]:g} must be positive")
    return [float(v) for v in values]


def _prior_box_pair(t: Translation, p: Any, both: str, first: str, second: str) -> tuple[float, float]:
    """Caffe's ``img_size`` or ``img_h``/``img_w`` (likewise ``step``): never both spellings; 0 when unset."""
    if p.HasField(first) or p.HasField(second):
        if p.HasField(both):
            raise CaffeModelError(f"{t.where}: give either {both} or {first}/{second}, not both")
        pair = _positive(t, first, [getattr(p, first)]) + _positive(t, second, [getattr(p, second)])
        return pair[0], pair[1]
    if p.HasField(both):
        value = _positive(t, both, [getattr(p, both)])[0]
        return value, value
    return 0.0, 0.0


def _prior_box_aspect_ratios(t: Translation, p: Any) -> list[np.float32]:
    """1, then each new aspect ratio (and its inverse with ``flip``), as Caffe lists them."""
    ratios = [np.float32(1.0)]
    for ar in _positive(t, "aspect_ratio", list(p.aspect_ratio)):
        if all(abs(np.float32(ar) - known) >= 1e-6 for known in ratios):
            ratios.append(np.float32(ar))
            if p.flip:
                ratios.append(np.float32(1.0 / float(np.float32(ar))))
    return ratios


def _prior_box_sizes(t: Translation, p: Any) -> list[tuple[np.float32, np.float32]]:
    """(width, height) of each prior of one cell, in Caffe's order; sizes truncated to int as
    Caffe's ``int min_size_ = min_sizes_[s]`` does."""
    if not p.min_size:
        raise CaffeModelError(f"{t.where}: min_size is required")
    mins = _positive(t, "min_size", list(p.min_size))
    maxes = list(p.max_size)
    if maxes and len(maxes) != len(mins):
        raise CaffeModelError(f"{t.where}: {len(maxes)} max_size values for {len(mins)} min_size values")
    for low, high in zip(mins, maxes):
        if not high > low:
            raise CaffeModelError(f"{t.where}: max_size {high:g} must be greater than min_size {low:g}")
    ratios = _prior_box_aspect_ratios(t, p)
    sizes: list[tuple[np.float32, np.float32]] = []
    for index, low in enumerate(mins):
        side = int(np.float32(low))
        sizes.append((np.float32(side), np.float32(side)))
        if maxes:
            geometric = np.float32(math.sqrt(side * int(np.float32(maxes[index]))))
            sizes.append((geometric, geometric))
        for ar in ratios:
            if abs(float(ar) - 1.0) < 1e-6:
                continue
            root = np.sqrt(ar)
            sizes.append((np.float32(side * root), np.float32(side / root)))
    return sizes


def _prior_box_variance(t: Translation, p: Any) -> list[float]:
    values = list(p.variance)
    if len(values) not in (0, 1, 4):
        raise CaffeModelError(f"{t.where}: {len(values)} variance values; Caffe takes 1 or 4")
    return _positive(t, "variance", values) if values else [0.1]


def _prior_box(t: Translation, layer: CaffeLayer) -> None:
    """SSD's priors depend only on the shapes: computed here as Caffe does (float32 arithmetic,
    each coordinate in double and rounded), kept as a weight and copied to the top."""
    p = layer.param.prior_box_param
    for field in ("offset_h", "offset_w", "width", "height"):
        if getattr(p, field):
            raise UnsupportedLayerError(f"{t.where}: {field} (OpenCV's extension of PriorBox) cannot be converted")
    shapes = [t.shape(b) for b in layer.bottoms[:2]]
    if any(len(shape) != 4 for shape in shapes):
        raise CaffeModelError(f"{t.where} takes two 4-axis bottoms (feature map, image), found shapes "
                              f"{[list(shape) for shape in shapes]}")
    sizes = _prior_box_sizes(t, p)
    variance = _prior_box_variance(t, p)
    img_h, img_w = _prior_box_pair(t, p, "img_size", "img_h", "img_w")
    step_h, step_w = _prior_box_pair(t, p, "step", "step_h", "step_w")
    if not math.isfinite(p.offset):
        raise CaffeModelError(f"{t.where}: offset {p.offset:g} must be finite")
    height, width = shapes[0][2:]
    if not img_h or not img_w:
        img_h, img_w = shapes[1][2:]
    if not step_h or not step_w:
        step_h, step_w = np.float32(img_h) / np.float32(height), np.float32(img_w) / np.float32(width)
    boxes = _prior_box_corners(sizes, height, width, (np.float32(step_h), np.float32(step_w)),
                               np.float32(p.offset), (int(img_h), int(img_w)))
    if p.clip:
        boxes = np.clip(boxes, np.float32(0), np.float32(1))
    variances = np.broadcast_to(np.asarray(variance, np.float32), (boxes.size // 4, 4) if len(variance) == 4
                                else (boxes.size,)).reshape(-1)
    priors = np.stack([boxes.reshape(-1), variances]).reshape(1, 2, -1)
    t.add("Copy", [t.weight("priors", priors)], layer.tops[:1])


def _prior_box_corners(sizes: Sequence[tuple[np.float32, np.float32]], height: int, width: int,
                       step: tuple[np.float32, np.float32], offset: np.float32, image: tuple[int, int]) -> np.ndarray:
    """(H, W, priors, 4) corners xmin, ymin, xmax, ymax over the image size: centres in float32,
    each corner computed in double and stored as float32, as Caffe's Forward_cpu does."""
    centre_y = ((np.arange(height, dtype=np.float32) + offset) * step[0]).astype(np.float64)
    centre_x = ((np.arange(width, dtype=np.float32) + offset) * step[1]).astype(np.float64)
    half_w = np.array([float(w) for w, _ in sizes]) / 2.0
    half_h = np.array([float(h) for _, h in sizes]) / 2.0
    cx = centre_x[None, :, None]
    cy = centre_y[:, None, None]
    corners = [(cx - half_w) / image[1], (cy - half_h) / image[0], (cx + half_w) / image[1], (cy + half_h) / image[0]]
    full = [np.broadcast_to(c, (height, width, len(sizes))) for c in corners]
    return np.stack(full, axis=-1).astype(np.float32)


TRANSLATORS: Mapping[str, Callable[[Translation, CaffeLayer], None]] = {
    "Convolution": _convolution,
    "Deconvolution": _deconvolution,
    "Pooling": _pooling,
    "LRN": _lrn,
    "InnerProduct": _inner_product,
    "ReLU": _relu,
    "PReLU": _prelu,
    "Sigmoid": _elementwise("Sigmoid"),
    "TanH": _elementwise("Tanh"),
    "AbsVal": _elementwise("Abs"),
    "BNLL": _elementwise("Softplus"),
    "ELU": _elu,
    "Power": _power,
    "Exp": _exp,
    "Log": _log,
    "Dropout": _dropout,
    "Softmax": _softmax,
    "Concat": _concat,
    "Slice": _slice,
    "Split": _split,
    "Eltwise": _eltwise,
    "BatchNorm": _batch_norm,
    "Scale": _scale,
    "Bias": _bias,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Crop": _crop,
    "ArgMax": _argmax,
    # the forks' layers (issue 13)
    "ConvolutionDepthwise": _convolution_depthwise,
    "Axpy": _axpy,
    "ShuffleChannel": _shuffle_channel,
    "Upsample": _upsample,
    "Permute": _permute,
    # SSD (issue 13)
    "Normalize": _normalize,
    "PriorBox": _prior_box,
}

# SSD's DetectionOutput (zooforge issue 13, the wt-detout block): see converters/caffe2/detection.py
from zooforge.converters.caffe2.detection import detection_output as _detection_output  # noqa: E402

TRANSLATORS = {**TRANSLATORS, "DetectionOutput": _detection_output}
