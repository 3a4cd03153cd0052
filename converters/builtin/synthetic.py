"""Deterministic synthetic weights for a Caffe net definition.

Every weighted layer gets the blobs Caffe would store for it, in Caffe's shapes, drawn from a
PCG64 generator keyed by the seed and the layer's name (so a layer's weights do not change when
other layers are added or removed). Values are uniform, which NumPy draws in float32 straight into
the final array (an order of magnitude faster than normal variates), and scaled for nets of
convolutions / inner products followed by ReLUs:

* a layer reading a net input gets He scaling, ``std = sqrt(2 / fan_in)``; pre-activations then
  have a standard deviation of about ``sqrt(2) * input_std`` throughout the net;
* every other convolution / inner product has each output unit's weights centred (summing to
  zero) and the gain ``sqrt(2 / (1 - 1/pi))`` that keeps that scale for the variance of a ReLU's
  output. Uncentred filters would turn the ReLUs' positive mean into an input-independent output
  that drowns the differences between inputs (every input gets the same top-1 class);
* a layer from which no other weighted layer can be reached (the classifier) is scaled so that
  its outputs have a standard deviation of about ``logit_std``: a softmax after it is informative,
  neither uniform nor saturated;
* biases are small (standard deviation 5% of the layer's output scale), but never zero, so a bias
  that a converter drops or misplaces shows in the outputs.
* inputs that are not centred on zero (``input_mean``, e.g. pixels in [0, 1]) would give every
  filter of a layer reading them an input-independent response ``input_mean * sum(w)`` that drowns
  the differences between inputs as well; such a layer's bias cancels it (for a layer with a bias
  term), so ``input_std`` is then the inputs' spread about their mean.

Output shapes are followed with ``zooforge.converters.caffe2.translate.Translation`` (the executor's shape
rules), so the translators check every synthesized blob shape against the one they expect.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from zooforge.converters.caffe.layers import WEIGHTED_LAYER_TYPES
from zooforge.converters.caffe.loader import InputShapes, build_net
from zooforge.converters.caffe.net import CaffeLayer, CaffeNet
from zooforge.converters.caffe.params import spatial
from zooforge.converters.caffe.upgrade import upgrade_net
from zooforge.converters.caffe.weights import WeightTable
from zooforge.converters.caffe2.translate import TRANSLATORS, Translation, check_blob_counts
from zooforge.converters.errors import CaffeModelError, UnsupportedLayerError

Shape = tuple[int, ...]

_RELU_GAIN = math.sqrt(2.0)  # He: Var(relu(z)) second moment is Var(z) / 2
_CENTRED_GAIN = math.sqrt(2.0 * math.pi / (math.pi - 1.0))  # Var(relu(z)) = Var(z) (1 - 1/pi) / 2
_BIAS_FRACTION = 0.05
# At most what a .caffemodel can hold (protobuf's 2 GiB): float32 values of all blobs together.
MAX_SYNTHETIC_VALUES = 2**31 // 4


@dataclass(frozen=True)
class WeightScale:
    """How large the synthesized values are.

    ``input_std`` is the typical standard deviation of the net's input values (Caffe-preprocessed
    ImageNet images, BGR 0-255 minus the mean, are roughly uniform in [-128, 128]: 128/sqrt(3));
    (with a non-zero ``input_mean``: their standard deviation about that mean);
    ``logit_std`` is the standard deviation aimed at for the outputs of the final weighted layer,
    assuming the layers before it keep the activations' scale; normalising layers shrink it (with
    AlexNet's two LRNs the measured logits have about 0.5-0.7 times ``logit_std``).
    """

    input_std: float = 1.0
    logit_std: float = 2.0
    input_mean: float = 0.0  # the inputs' mean, cancelled by the bias of each layer reading them
    calibrated: bool = False  # follow a seeded input through the net (see ``_Calibration``)


def synthetic_weights(
    net: CaffeNet | Any,
    seed: int,
    scale: WeightScale = WeightScale(),
    input_shapes: InputShapes = None,
) -> WeightTable:
    """Deterministic weights for every weighted layer of ``net``.

    ``net`` is a ``CaffeNet`` (any blobs it holds are ignored and left alone) or a
    ``caffe.NetParameter``, built here at ``input_shapes`` (default: the declared shapes, batch 1).
    The same net, seed and scale always give bit-identical weights.
    """
    if not isinstance(net, CaffeNet):
        net = skeleton_net(net, input_shapes)
    t = Translation(net)
    final = _final_weighted_layers(net)
    calibration = _Calibration(net, seed, scale) if scale.calibrated else None
    table: WeightTable = {}
    for number, layer in enumerate(net.layers):
        translator = TRANSLATORS.get(layer.type)
        if translator is None:
            raise UnsupportedLayerError(
                f"layer '{layer.name}' has type '{layer.type}', for which zooforge can neither "
                "convert nor synthesize weights"
            )
        t.layer = layer
        check_blob_counts(t, layer)  # the blobs Caffe allows, as translate() checks them
        if layer.type in WEIGHTED_LAYER_TYPES:
            bottoms = [t.shape(blob) for blob in layer.bottoms]
            rng = _layer_generator(seed, layer.name)
            reads_input = any(blob in net.inputs for blob in layer.bottoms)
            budget = MAX_SYNTHETIC_VALUES - sum(b.size for blobs in table.values() for b in blobs)
            blobs = _make_blobs(layer, bottoms, _Budgeted(rng, budget, layer), scale, layer.name in final,
                                reads_input)
            if calibration is not None and layer.type == "BatchNorm" and blobs:
                blobs = calibration.batch_norm_blobs(layer, blobs, rng)
            if blobs:
                table[layer.name] = blobs
            layer = dataclasses.replace(layer, blobs=blobs)
        t.layer = layer
        start = len(t.predict.op)
        translator(t, layer)
        if calibration is not None:
            calibration.follow(t, start)
            calibration.forget(number)
    if calibration is not None:
        calibration.rescale_finals(net, table, final, scale.logit_std)
    return table


SAMPLES = 4  # seeded inputs followed through the net by a calibrated synthesis

# Layers whose outputs scale by f when every blob does (so a final one can be brought to logit_std),
# and layers that pass such a scaling on (positively homogeneous: f * x in, f * y out, for f > 0).
_LINEAR_IN_BLOBS = frozenset({"Convolution", "Deconvolution", "InnerProduct", "ConvolutionDepthwise", "Scale"})
_HOMOGENEOUS = frozenset({"ReLU", "Pooling", "Flatten", "Reshape", "Dropout", "Permute", "Upsample"})


class _Calibration:
    """A seeded input followed through the net while its weights are made (``WeightScale.calibrated``).

    Shape-only scaling cannot know what BatchNorm sees: with drawn statistics a residual trunk
    grows with every block (ResNet-152: 100x) and the logits saturate. Here each BatchNorm gets the
    statistics of its actual input (per channel, within a factor drawn in [0.8, 1.25] for the
    variance and 5% of a standard deviation for the mean, as trained running averages are), and each
    final layer is rescaled so that what it feeds a softmax (after ReLUs, pooling, reshapes) has a
    standard deviation of ``logit_std`` (SqueezeNet's conv10 -> ReLU -> global average, say). The
    input is drawn from the scale's input distribution with the weights' seed, so the weights stay
    a function of prototxt, seed and scale alone.
    """

    def __init__(self, net: CaffeNet, seed: int, scale: WeightScale) -> None:
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0xCA11B,)))
        half = math.sqrt(3.0) * scale.input_std
        # One list of values per blob, one value per sample: the net's own batch, run SAMPLES times
        # (a deep layer of few positions, SSD's 1x1 heads, needs more than one image's statistics).
        self.values: dict[str, list[np.ndarray]] = {
            name: [(scale.input_mean + rng.uniform(-half, half, shape)).astype(np.float32) for _ in range(SAMPLES)]
            for name, shape in net.inputs.items()
        }
        self.reads_after = _reads_after(net)
        self.measure = _measured_blobs(net)

    def follow(self, t: Translation, start: int) -> None:
        """Run the operators the current layer added, from index ``start``, on the followed values."""
        from zooforge.converters.caffe2.executor.run import operator_for
        from zooforge.converters.caffe2.netdef import op_args

        for index in range(start, len(t.predict.op)):
            op = t.predict.op[index]
            kernel, args = operator_for(op, index).kernel, op_args(op)
            runs = [kernel([self.values[name][sample] if name in self.values else t.weights[name]
                            for name in op.input], args, len(op.output)) for sample in range(SAMPLES)]
            for position, name in enumerate(op.output[: min(len(run) for run in runs)]):
                self.values[name] = [run[position] for run in runs]

    def batch_norm_blobs(self, layer: CaffeLayer, drawn: list[np.ndarray], rng: Any) -> list[np.ndarray]:
        """Mean and variance of the BatchNorm's actual input, perturbed by values drawn from ``rng``."""
        x = np.concatenate(self.values[layer.bottoms[0]], axis=0).astype(np.float64)  # samples along the batch
        axes = tuple(d for d in range(x.ndim) if d != 1)
        if math.prod(x.shape[d] for d in axes) < 2:
            return drawn  # one value per channel: no statistics to take
        mean, var = x.mean(axis=axes), x.var(axis=axes)
        var = np.maximum(var, max(float(var.max()), 1.0) * 1e-6)  # dead channels keep a finite scale
        jitter = _uniform(rng, mean.shape, 0.8, 1.25)
        offset = _symmetric(rng, mean.shape, 0.05)
        return [(mean + offset * np.sqrt(var)).astype(np.float32), (var * jitter).astype(np.float32), drawn[2]]

    def rescale_finals(self, net: CaffeNet, table: WeightTable, final: set[str], logit_std: float) -> None:
        """Scale each final layer's blobs so that what it feeds a softmax (or the net's output) has a
        standard deviation of ``logit_std``; the layers between scale along (``_HOMOGENEOUS``)."""
        for layer in net.layers:
            if layer.name not in final or layer.type not in _LINEAR_IN_BLOBS or layer.name not in table:
                continue
            measured = self.values.get(self.measure[layer.name])
            spread = float(np.std(np.stack(measured).astype(np.float64))) if measured is not None else 0.0
            if spread > 0.0 and math.isfinite(spread):
                for blob in table[layer.name]:
                    blob *= np.float32(logit_std / spread)

    def forget(self, number: int) -> None:
        """Drop the values no layer after layer ``number`` reads (but those ``rescale_finals`` measures)."""
        keep = self.reads_after[number] | set(self.measure.values())
        for name in [name for name in self.values if name not in keep]:
            del self.values[name]


def _measured_blobs(net: CaffeNet) -> dict[str, str]:
    """For each layer, the blob its output reaches through a chain of single-reader homogeneous layers."""
    readers: dict[str, int] = {}  # layers reading a blob into another (in-place layers do not count)
    for layer in net.layers:
        for blob in set(layer.bottoms) - set(layer.tops):
            readers[blob] = readers.get(blob, 0) + 1
    measure: dict[str, str] = {}
    for index, layer in enumerate(net.layers):
        if not layer.tops:
            continue
        current = layer.tops[0]
        for later in net.layers[index + 1 :]:
            if current not in later.bottoms:
                continue
            in_place = later.tops[:1] == [current]
            if later.type not in _HOMOGENEOUS or len(later.bottoms) != 1 or (readers.get(current, 0) > 1 and not in_place):
                break
            current = later.tops[0]
        measure[layer.name] = current
    return measure


def _reads_after(net: CaffeNet) -> list[set[str]]:
    """For each layer index, the blobs that later layers read."""
    later: set[str] = set()
    result: list[set[str]] = []
    for layer in reversed(net.layers):
        result.append(set(later))
        later.update(layer.bottoms)
    return result[::-1]


def skeleton_net(net_param: Any, input_shapes: InputShapes = None, source: str = "<net>") -> CaffeNet:
    """Build a ``CaffeNet`` from a ``NetParameter`` whose weighted layers have no blobs yet."""
    net_param = upgrade_net(net_param, source)
    empty: WeightTable = {p.name: [] for p in net_param.layer if p.type in WEIGHTED_LAYER_TYPES}
    return build_net(net_param, empty, input_shapes, source=source, weights_source="<no weights>")


class _Budgeted:
    """A layer's generator that refuses to draw more values than the net's remaining budget."""

    def __init__(self, rng: np.random.Generator, budget: int, layer: CaffeLayer) -> None:
        self.rng, self.budget, self.layer = rng, budget, layer

    def random(self, *, out: np.ndarray, dtype: type) -> None:
        self.rng.random(out=out, dtype=dtype)

    def take(self, shape: Shape) -> None:
        count = math.prod(shape)
        if count > self.budget:
            raise CaffeModelError(
                f"layer '{self.layer.name}' ({self.layer.type}) needs {count} weight values of shape "
                f"{'x'.join(map(str, shape))}; synthetic weights stop at {MAX_SYNTHETIC_VALUES} values in all "
                "(2 GiB, what a .caffemodel can hold)")
        self.budget -= count


def _layer_generator(seed: int, name: str) -> np.random.Generator:
    key = np.random.SeedSequence(seed, spawn_key=(zlib.crc32(name.encode("utf-8")),))
    return np.random.Generator(np.random.PCG64(key))


def _uniform(rng: np.random.Generator, shape: Shape, low: float, high: float) -> np.ndarray:
    """Uniform float32 values in [low, high), drawn and scaled in place."""
    if isinstance(rng, _Budgeted):
        rng.take(shape)
    out = np.empty(shape, dtype=np.float32)
    rng.random(out=out.reshape(-1), dtype=np.float32)
    out *= np.float32(high - low)
    out += np.float32(low)
    return out


def _symmetric(rng: np.random.Generator, shape: Shape, std: float) -> np.ndarray:
    half = math.sqrt(3.0) * std
    return _uniform(rng, shape, -half, half)


def _final_weighted_layers(net: CaffeNet) -> set[str]:
    """Weighted layers from whose outputs no other weighted layer can be reached."""
    feeds_weighted: set[str] = set()
    final: set[str] = set()
    for layer in reversed(net.layers):
        weighted = layer.type in WEIGHTED_LAYER_TYPES
        if weighted and not feeds_weighted.intersection(layer.tops):
            final.add(layer.name)
        if weighted or feeds_weighted.intersection(layer.tops):
            feeds_weighted.update(layer.bottoms)
    return final


def _make_blobs(
    layer: CaffeLayer,
    bottoms: Sequence[Shape],
    rng: np.random.Generator,
    scale: WeightScale,
    final: bool,
    reads_input: bool,
) -> list[np.ndarray]:
    where = f"layer '{layer.name}' ({layer.type})"
    hidden_std = _RELU_GAIN * scale.input_std  # pre-activation scale throughout the net
    out_std = scale.logit_std if final else hidden_std
    x = bottoms[0]
    kind = layer.type

    if kind in ("Convolution", "Deconvolution", "InnerProduct", "ConvolutionDepthwise"):
        w_shape, b_shape, fan_in, (units, unit_axes) = _filter_geometry(layer, x, where)
        if reads_input:
            std = (out_std / scale.input_std if final else _RELU_GAIN) / math.sqrt(fan_in)
        else:
            gain = out_std / (scale.input_std * math.sqrt(1.0 - 1.0 / math.pi)) if final else _CENTRED_GAIN
            std = gain / math.sqrt(fan_in)
        w = _symmetric(rng, w_shape, std)
        if not reads_input:
            view = w.reshape(units)
            view -= view.mean(axis=unit_axes, keepdims=True)
        blobs = [w]
        if b_shape is not None:
            bias = _symmetric(rng, b_shape, _BIAS_FRACTION * out_std)
            if reads_input and scale.input_mean:
                bias -= np.float32(scale.input_mean) * _unit_sums(layer, w)
            blobs.append(bias)
        return blobs

    channels = x[1] if len(x) > 1 else 1
    if kind == "PReLU":
        shape: Shape = () if layer.param.prelu_param.channel_shared else (channels,)
        return [_uniform(rng, shape, 0.05, 0.35)]
    if kind == "BatchNorm":
        mean = _symmetric(rng, (channels,), 0.1 * hidden_std)
        var = _uniform(rng, (channels,), 0.5 * hidden_std**2, 1.5 * hidden_std**2)
        return [mean, var, np.ones((1,), np.float32)]
    if kind == "Scale":
        p = layer.param.scale_param
        span = _span(x, p.axis, p.num_axes)
        blobs = [] if len(layer.bottoms) > 1 else [_uniform(rng, span, 0.5, 1.5)]
        if p.bias_term:
            blobs.append(_symmetric(rng, span, 0.1))
        return blobs
    if kind == "Bias":
        if len(layer.bottoms) > 1:
            return []
        p = layer.param.bias_param
        return [_symmetric(rng, _span(x, p.axis, p.num_axes), _BIAS_FRACTION * hidden_std)]
    if kind == "Normalize":
        # SSD's scale (issue 13): Caffe's shape () when channel_shared, else (C,); SSD starts it at 20
        shape = () if layer.param.norm_param.channel_shared else (channels,)
        return [_uniform(rng, shape, 10.0, 30.0)]
    raise UnsupportedLayerError(f"{where}: zooforge cannot synthesize weights for this layer type")


def _filter_geometry(
    layer: CaffeLayer, x: Shape, where: str
) -> tuple[Shape, Shape | None, int, tuple[Shape, tuple[int, ...]]]:
    """Weight shape, bias shape, fan-in, and a view of the weights with the axes along which
    one output unit's weights lie."""
    if layer.type == "InnerProduct":
        p = layer.param.inner_product_param
        inner = int(np.prod(x[p.axis % len(x):], dtype=np.int64))
        bias = (p.num_output,) if p.bias_term else None
        if p.transpose:
            shape = (inner, p.num_output)
            return shape, bias, inner, (shape, (0,))
        shape = (p.num_output, inner)
        return shape, bias, inner, (shape, (1,))
    p = layer.param.convolution_param
    kh, kw = spatial(p, "kernel_size", None, where, pair="kernel")
    channels, group = x[1], max(p.group, 1)
    bias = (p.num_output,) if p.bias_term else None
    if layer.type == "ConvolutionDepthwise":  # one (1, kh, kw) filter per input channel
        shape = (channels, 1, kh, kw)
        return shape, (channels,) if p.bias_term else None, kh * kw, (shape, (1, 2, 3))
    if layer.type == "Convolution":
        shape = (p.num_output, channels // group, kh, kw)
        return shape, bias, channels // group * kh * kw, (shape, (1, 2, 3))
    # Deconvolution: blob (C, out/group, kh, kw); output channel o of group g reads the rows of
    # group g, and each output value sums about (C/group) * (kh/sh) * (kw/sw) inputs.
    sh, sw = spatial(p, "stride", 1, where)
    fan_in = max(1, round(channels // group * kh * kw / (sh * sw)))
    shape = (channels, p.num_output // group, kh, kw)
    units = (group, channels // group, p.num_output // group, kh, kw)
    return shape, bias, fan_in, (units, (1, 3, 4))


def _unit_sums(layer: CaffeLayer, w: np.ndarray) -> np.ndarray:
    """Each output unit's sum of weights: its response to a constant input of 1 (away from padding)."""
    if layer.type == "InnerProduct":
        return w.sum(axis=0 if layer.param.inner_product_param.transpose else 1, dtype=np.float64).astype(np.float32)
    if layer.type == "Convolution":
        return w.reshape(w.shape[0], -1).sum(axis=1, dtype=np.float64).astype(np.float32)
    # Deconvolution, blob (C, out/group, kh, kw): output o of group g sums the rows of group g over
    # the kernel taps that land on it, about kh*kw / (sh*sw) of them.
    p = layer.param.convolution_param
    sh, sw = spatial(p, "stride", 1, f"layer '{layer.name}' ({layer.type})")
    group = max(p.group, 1)
    channels, per_group = w.shape[0], w.shape[1]
    grouped = w.reshape(group, channels // group, per_group, -1).sum(axis=(1, 3), dtype=np.float64)
    return (grouped.reshape(-1) / (sh * sw)).astype(np.float32)


def _span(x: Shape, axis: int, num_axes: int) -> Shape:
    axis %= len(x)
    end = len(x) if num_axes == -1 else axis + num_axes
    return tuple(x[axis:end])
