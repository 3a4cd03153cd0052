"""Load a Caffe model (net definition + weights) into a deploy-time ``CaffeNet``."""

from __future__ import annotations

import warnings
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf import text_format

from zooforge.converters.caffe import schema
from zooforge.converters.caffe.forks import layer_type_sentence, unknown_field_sentence
from zooforge.converters.caffe.layers import DATA_LAYER_TYPES, DROPPED_LAYER_TYPES, WEIGHTED_LAYER_TYPES
from zooforge.converters.caffe.net import CaffeLayer, CaffeNet
from zooforge.converters.caffe.upgrade import upgrade_net
from zooforge.converters.caffe.weights import WeightTable, read_weights
from zooforge.converters.errors import CaffeModelError, InputFileError, UnsupportedLayerError

Shape = tuple[int, ...]
# One shape for the net's only (or first) input, or a shape per input name.
InputShapes = Shape | Mapping[str, Shape] | None

_TEST_PHASE = 1  # caffe.Phase.TEST


class WeightsWithoutLayerWarning(UserWarning):
    """The weights file holds blobs for a layer that the net definition lacks."""


def parse_prototxt(path: Path) -> Any:
    """Parse a ``.prototxt`` into a ``caffe.NetParameter``; syntax errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"net definition {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputFileError(f"{path} is not a text prototxt (is it a binary .caffemodel?)") from None
    net = schema.NetParameter()
    try:
        text_format.Parse(text, net, allow_unknown_field=False)
    except text_format.ParseError as exc:
        line = f"line {exc.GetLine()}, column {exc.GetColumn()}" if exc.GetLine() else "somewhere"
        message = str(exc).split(" : ", 1)[-1]
        unknown = unknown_field_sentence(str(path), text, exc.GetLine() or 0, message) if exc.GetLine() else None
        if unknown is not None:
            raise UnsupportedLayerError(unknown) from None
        raise InputFileError(f"{path} cannot be parsed at {line}: {message}") from None
    return net


def load_caffe(
    prototxt: Path,
    weights: Path | WeightTable | None,
    input_shapes: InputShapes = None,
    layer_types: Collection[str] | None = None,
) -> CaffeNet:
    """Read a deploy (or train/test) prototxt and its weights into a deploy-time ``CaffeNet``.

    ``weights`` may be a path, an in-memory table (layer name -> blobs), or ``None`` for a net
    without learned parameters. Batch sizes default to 1 unless ``input_shapes`` says otherwise.
    With ``layer_types``, a deploy-time layer of another type is refused before the weights are read.
    """
    prototxt = Path(prototxt)
    net = upgrade_net(parse_prototxt(prototxt), str(prototxt))
    if layer_types is not None:
        check_layer_types(net, layer_types, str(prototxt))
    table = read_weights(Path(weights)) if isinstance(weights, (str, Path)) else weights or {}
    return build_net(net, table, input_shapes, source=str(prototxt), weights_source=str(weights))


def build_net(
    net: Any,
    table: WeightTable,
    input_shapes: InputShapes = None,
    source: str = "<net>",
    weights_source: str = "<weights>",
) -> CaffeNet:
    """Turn a V2 ``NetParameter`` and a weight table into a ``CaffeNet``."""
    declared, layers = _split_inputs(net, source)
    inputs = _resolve_input_shapes(declared, input_shapes, source)
    _check_wiring(inputs, layers, source)
    _attach_weights(layers, table, {param.name for param in net.layer}, weights_source)
    return CaffeNet(name=net.name or prototxt_stem(source), inputs=inputs, layers=layers)


def check_layer_types(net: Any, supported: Collection[str], source: str) -> None:
    """Refuse the first deploy-time layer (TEST phase, not a loss or data layer) of a type outside
    ``supported``, naming the fork the type comes from where zooforge knows it."""
    for param in net.layer:
        if not _included_in_test(param) or param.type in DROPPED_LAYER_TYPES or param.type in DATA_LAYER_TYPES:
            continue
        if param.type != "Input" and param.type not in supported:
            raise UnsupportedLayerError(layer_type_sentence(source, param.name, param.type, supported))


def describe_inputs(net: Any, input_shapes: InputShapes = None, source: str = "<net>") -> dict[str, Shape]:
    """The inputs of a V2 ``NetParameter`` and their shapes exactly as ``build_net`` derives them.

    Whatever the form (``input`` + ``input_dim``/``input_shape``, Input layers, data layers),
    declared batches become 1 unless ``input_shapes`` says otherwise. Needs no weights.
    """
    declared, _ = _split_inputs(net, source)
    return _resolve_input_shapes(declared, input_shapes, source)


def _split_inputs(net: Any, source: str) -> tuple[dict[str, Shape | None], list[CaffeLayer]]:
    """The TEST-phase net's declared inputs (shape or ``None``) and its remaining layers."""
    declared = _declared_inputs(net, source)
    layers: list[CaffeLayer] = []
    for param in net.layer:
        if not _included_in_test(param) or param.type in DROPPED_LAYER_TYPES:
            continue
        if param.type == "Input":
            declared.update(_input_layer_shapes(param, source))
            continue
        if param.type in DATA_LAYER_TYPES:
            if not param.top:
                raise CaffeModelError(f"{source}: data layer '{param.name}' has no top")
            declared[param.top[0]] = _data_layer_shape(param)
            continue
        layers.append(
            CaffeLayer(param.name, param.type, list(param.bottom), list(param.top), param)
        )
    return declared, layers


def prototxt_stem(source: str) -> str:
    return Path(source).stem or "net"


def _included_in_test(param: Any) -> bool:
    """Caffe's NetStateRule check for phase TEST, level 0, no stages."""
    if param.HasField("phase") and param.phase != _TEST_PHASE:
        return False
    if len(param.include):
        return any(_rule_met(rule) for rule in param.include)
    return not any(_rule_met(rule) for rule in param.exclude)


def _rule_met(rule: Any) -> bool:
    if rule.HasField("phase") and rule.phase != _TEST_PHASE:
        return False
    if rule.HasField("min_level") and 0 < rule.min_level:
        return False
    if rule.HasField("max_level") and 0 > rule.max_level:
        return False
    return not len(rule.stage)  # no stage is set at deploy; not_stage rules always hold


def _declared_inputs(net: Any, source: str) -> dict[str, Shape | None]:
    """Inputs given as ``input`` + ``input_shape`` or ``input`` + ``input_dim``."""
    declared: dict[str, Shape | None] = {}
    names = list(net.input)
    if len(net.input_shape):
        if len(net.input_shape) != len(names):
            raise CaffeModelError(
                f"{source}: {len(names)} inputs but {len(net.input_shape)} input_shape entries"
            )
        for name, shape in zip(names, net.input_shape):
            declared[name] = tuple(int(d) for d in shape.dim)
    elif len(net.input_dim):
        if len(net.input_dim) != 4 * len(names):
            raise CaffeModelError(
                f"{source}: input_dim needs 4 values per input, found {len(net.input_dim)} "
                f"for {len(names)} inputs"
            )
        dims = [int(d) for d in net.input_dim]
        for index, name in enumerate(names):
            declared[name] = tuple(dims[4 * index : 4 * index + 4])
    else:
        for name in names:
            declared[name] = None
    return declared


def _input_layer_shapes(param: Any, source: str) -> dict[str, Shape | None]:
    shapes = [tuple(int(d) for d in shape.dim) for shape in param.input_param.shape]
    if len(shapes) not in (0, 1, len(param.top)):
        raise CaffeModelError(
            f"{source}: Input layer '{param.name}' has {len(param.top)} tops but {len(shapes)} shapes"
        )
    if not shapes:
        return {top: None for top in param.top}
    if len(shapes) == 1:
        return {top: shapes[0] for top in param.top}
    return dict(zip(param.top, shapes))


def _data_layer_shape(param: Any) -> Shape | None:
    """The shape a data layer declares, where the layer type states it completely."""
    if param.type == "MemoryData":
        p = param.memory_data_param
        return (p.batch_size, p.channels, p.height, p.width)
    if param.type == "DummyData":
        p = param.dummy_data_param
        if len(p.shape):
            return tuple(int(d) for d in p.shape[0].dim)
        if len(p.num):
            return (p.num[0], p.channels[0], p.height[0], p.width[0])
    return None


def _resolve_input_shapes(
    declared: dict[str, Shape | None], requested: InputShapes, source: str
) -> dict[str, Shape]:
    if not declared:
        raise CaffeModelError(f"{source} declares no input (no Input or data layer, no 'input')")
    if requested is not None and not isinstance(requested, Mapping):
        requested = {next(iter(declared)): tuple(requested)}
    requested = dict(requested or {})
    unknown = set(requested) - set(declared)
    if unknown:
        raise CaffeModelError(
            f"--input-shape names {sorted(unknown)}, but the net's inputs are {list(declared)}"
        )
    inputs: dict[str, Shape] = {}
    for name, shape in declared.items():
        if name in requested:
            inputs[name] = tuple(int(d) for d in requested[name])
        elif shape is None:
            raise CaffeModelError(
                f"{source}: input '{name}' has no declared shape; pass --input-shape N,C,H,W"
            )
        else:
            inputs[name] = (1, *shape[1:]) if len(shape) > 1 else tuple(shape)
        if any(d <= 0 for d in inputs[name]):
            raise CaffeModelError(f"input '{name}' has a non-positive dimension {list(inputs[name])}")
    return inputs


def _check_wiring(inputs: Mapping[str, Shape], layers: Sequence[CaffeLayer], source: str) -> None:
    """Every bottom exists; a top is new unless the layer computes in place (Caffe's AppendTop)."""
    available = set(inputs)
    for layer in layers:
        for bottom in layer.bottoms:
            if bottom not in available:
                raise CaffeModelError(
                    f"{source}: layer '{layer.name}' ({layer.type}) reads blob '{bottom}', "
                    "which no input or earlier layer produces"
                )
        for index, top in enumerate(layer.tops):
            in_place = index < len(layer.bottoms) and layer.bottoms[index] == top
            if (top in available and not in_place) or top in layer.tops[:index]:
                raise CaffeModelError(
                    f"{source}: layer '{layer.name}' ({layer.type}) writes top '{top}', which another layer "
                    "or input already produces (Caffe allows that only in place, as the same bottom)"
                )
        available.update(layer.tops)


def _attach_weights(
    layers: Sequence[CaffeLayer], table: WeightTable, all_names: set[str], source: str
) -> None:
    for layer in layers:
        blobs = table.get(layer.name)
        if blobs is None:
            if _needs_weights(layer):
                raise CaffeModelError(
                    f"layer '{layer.name}' ({layer.type}) has learned parameters, "
                    f"but {source} holds no weights for it"
                )
            continue
        layer.blobs = [np.asarray(blob, dtype=np.float32, order="C") for blob in blobs]  # (keeps 0-d blobs 0-d)
    extra = sorted(set(table) - all_names)
    if extra:
        warnings.warn(
            f"{source} holds weights for layers the net does not have, ignored: {', '.join(extra)}",
            WeightsWithoutLayerWarning,
            stacklevel=3,
        )


def _needs_weights(layer: CaffeLayer) -> bool:
    if layer.type not in WEIGHTED_LAYER_TYPES:
        return False
    if layer.type in ("Scale", "Bias"):
        return len(layer.bottoms) == 1  # with two bottoms the factor is the second input
    return True
