"""Operator adapters between neighbouring opsets, for the classic CNN operator set.

Each ``Change`` records one schema change of one operator: ``version`` is the opset where the new
schema starts; ``up`` rewrites a node from the old schema to the new one, ``down`` the reverse.
Changes that only widened the type lists are ``COMPATIBLE`` both ways. An adapter that cannot
keep a node's meaning raises ``StepRefused`` with the reason; the converter names node and step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from onnx import NodeProto, helper

from zooforge.versioning.editor import GraphEditor, attribute, remove_attribute, set_attribute

Rewrite = Callable[[GraphEditor, NodeProto], None]


class StepRefused(Exception):
    """An adapter cannot express a node at the neighbouring opset without changing its meaning."""


def _same(editor: GraphEditor, node: NodeProto) -> None:
    """The schema changed only in ways that do not affect this model (e.g. more types)."""


# The parametrised rewrites are small callable classes rather than closures: the table below is
# built at import, and a closure made there would be out of mutation testing's reach.

@dataclass(frozen=True)
class _Drop:
    """Remove attributes the new schema does not have."""

    names: tuple[str, ...]

    def __call__(self, editor: GraphEditor, node: NodeProto) -> None:
        for name in self.names:
            remove_attribute(node, name)


def _drop(*names: str) -> Rewrite:
    return _Drop(names)


@dataclass(frozen=True)
class _RequireAbsentOr:
    """Drop attribute ``name``; refuse when it holds anything but ``allowed``."""

    name: str
    allowed: object
    reason: str

    def __call__(self, editor: GraphEditor, node: NodeProto) -> None:
        value = attribute(node, self.name)
        if value is not None and value != self.allowed:
            raise StepRefused(f"{self.name}={value}: {self.reason}")
        remove_attribute(node, self.name)


@dataclass(frozen=True)
class _Add:
    """Set attribute ``name`` to ``value`` (only where it is absent, with ``if_absent``)."""

    name: str
    value: object
    if_absent: bool = False

    def __call__(self, editor: GraphEditor, node: NodeProto) -> None:
        if not self.if_absent or attribute(node, self.name) is None:
            set_attribute(node, self.name, self.value)


@dataclass(frozen=True)
class _Chain:
    steps: tuple[Rewrite, ...]

    def __call__(self, editor: GraphEditor, node: NodeProto) -> None:
        for step in self.steps:
            step(editor, node)


def _chain(*steps: Rewrite) -> Rewrite:
    return _Chain(steps)


@dataclass(frozen=True)
class _AttrToInput:
    """Move attribute ``name`` to input ``position`` as a constant (opset moved it to an input)."""

    name: str
    position: int
    dtype: type
    default: object = None

    def __call__(self, editor: GraphEditor, node: NodeProto) -> None:
        value = attribute(node, self.name, self.default)
        remove_attribute(node, self.name)
        if value is None:
            return
        while len(node.input) < self.position:
            node.input.append("")
        constant = editor.add_initializer(f"{node.output[0]}_{self.name}", value, self.dtype)
        if len(node.input) == self.position:
            node.input.append(constant)
        else:
            node.input[self.position] = constant


def _to_list(value: np.ndarray) -> object:
    return value.tolist()


def _to_float(value: np.ndarray) -> object:
    return float(value)


@dataclass(frozen=True)
class _InputToAttr:
    """Move constant input ``position`` (and any after it) back to attribute ``name``; refuse if it is
    computed. An empty (omitted) input is dropped; ``keep_default`` is not written back."""

    name: str
    position: int
    convert: Callable[[np.ndarray], object] = _to_list
    keep_default: object = None

    def __call__(self, editor: GraphEditor, node: NodeProto) -> None:
        if len(node.input) <= self.position:
            return
        given = node.input[self.position]
        if given:
            value = editor.constant(given)
            if value is None:
                raise StepRefused(f"input '{given}' ({self.name}) is computed, not a constant")
            converted = self.convert(value)
            if converted != self.keep_default:
                set_attribute(node, self.name, converted)
        del node.input[self.position:]


@dataclass(frozen=True)
class _NoExtra:
    """Keep the first ``count`` of the node's ``field`` (``input`` or ``output``); refuse when a later
    one is named."""

    field: str
    count: int
    reason: str

    def __call__(self, editor: GraphEditor, node: NodeProto) -> None:
        names = getattr(node, self.field)
        if any(names[self.count:]):
            raise StepRefused(self.reason)
        del names[self.count:]


def _no_extra_inputs(count: int, reason: str) -> Rewrite:
    return _NoExtra("input", count, reason)


def _no_extra_outputs(count: int, reason: str) -> Rewrite:
    return _NoExtra("output", count, reason)


@dataclass(frozen=True)
class _Rename:
    """Attribute ``old`` is called ``new`` in the other schema."""

    old: str
    new: str

    def __call__(self, editor: GraphEditor, node: NodeProto) -> None:
        value = attribute(node, self.old)
        remove_attribute(node, self.old)
        if value is not None:
            set_attribute(node, self.new, value)


# -- broadcasting ---------------------------------------------------------------------------------

def _legacy_broadcast_up(editor: GraphEditor, node: NodeProto) -> None:
    """``broadcast=1`` + ``axis`` (B aligned at axis) -> NumPy broadcasting (B aligned at the end)."""
    broadcast = attribute(node, "broadcast", 0)
    axis = attribute(node, "axis")
    remove_attribute(node, "broadcast")
    remove_attribute(node, "axis")
    if not broadcast or axis is None:
        return  # no broadcast, or suffix-aligned: NumPy's rule gives the same result
    rank_a, shape_b = editor.rank(node.input[0]), editor.shape(node.input[1])
    if rank_a is None or shape_b is None:
        raise StepRefused("the shapes needed to re-align a legacy broadcast are unknown")
    axis = axis % rank_a if axis < 0 else axis
    trailing = rank_a - axis - len(shape_b)
    if trailing > 0:
        node.input[1] = _reshaped(editor, node, node.input[1], (*shape_b, *([1] * trailing)))


def _legacy_broadcast_down(editor: GraphEditor, node: NodeProto) -> None:
    """NumPy broadcasting -> the legacy form, possible when B fits inside A from some axis on."""
    shape_a, shape_b = editor.shape(node.input[0]), editor.shape(node.input[1])
    if shape_a is None or shape_b is None or None in shape_b:
        raise StepRefused("the input shapes needed to express broadcasting before opset 7 are unknown")
    if tuple(shape_a) == tuple(shape_b):
        return
    if len(shape_b) > len(shape_a):
        raise StepRefused(f"B {list(shape_b)} has more dims than A {list(shape_a)}")
    padded = (1,) * (len(shape_a) - len(shape_b)) + tuple(shape_b)
    kept = [i for i, d in enumerate(padded) if d != 1]
    if not kept:
        set_attribute(node, "broadcast", 1)
        node.input[1] = _reshaped(editor, node, node.input[1], ())
        return
    first, last = kept[0], kept[-1]
    core = padded[first : last + 1]
    if any(d != shape_a[first + i] for i, d in enumerate(core)):
        raise StepRefused(f"B {list(shape_b)} broadcasts in both directions against A {list(shape_a)}")
    set_attribute(node, "broadcast", 1)
    set_attribute(node, "axis", first)
    node.input[1] = _reshaped(editor, node, node.input[1], core)


def _reshaped(editor: GraphEditor, node: NodeProto, name: str, shape: tuple[int, ...]) -> str:
    value = editor.constant(name)
    if value is not None:
        return editor.add_initializer(f"{name}_reshaped", value.reshape(shape))
    out = editor.fresh(f"{name}_reshaped")
    opset = _opset(editor)
    if opset < 5:
        reshape = helper.make_node("Reshape", [name], [out], shape=list(shape))
    else:
        target = editor.add_initializer(f"{name}_shape", list(shape), np.int64)
        reshape = helper.make_node("Reshape", [name, target], [out])
    editor.insert_before(node, [reshape])
    return out


def _opset(editor: GraphEditor) -> int:
    return next(o.version for o in editor.model.opset_import if o.domain in ("", "ai.onnx"))


# -- operator-specific rewrites -------------------------------------------------------------------

def _prelu_up(editor: GraphEditor, node: NodeProto) -> None:
    """PRelu-6's slope is per channel; from 7 it broadcasts NumPy-style (align it to axis 1)."""
    rank, slope = editor.rank(node.input[0]), editor.shape(node.input[1])
    if rank is None or slope is None:
        raise StepRefused("input ranks needed to re-align the PRelu slope are unknown")
    if len(slope) == 1 and slope[0] != 1 and rank > 2:
        node.input[1] = _reshaped(editor, node, node.input[1], (slope[0], *([1] * (rank - 2))))


def _prelu_down(editor: GraphEditor, node: NodeProto) -> None:
    slope = editor.shape(node.input[1])
    if slope is None or None in slope:
        raise StepRefused("the PRelu slope's shape is unknown")
    count = int(np.prod(slope))
    rank = editor.rank(node.input[0])
    if count != 1:
        # NumPy broadcasting aligns the slope with X's last dims: per channel means it spans axis 1 only
        padded = (1,) * ((rank or 0) - len(slope)) + tuple(slope)
        channels = editor.shape(node.input[0])
        if rank is None or rank < 2 or len(slope) > rank or channels is None or padded[1] != channels[1] \
                or any(d != 1 for i, d in enumerate(padded) if i != 1):
            raise StepRefused(f"slope {list(slope)} is not one value per channel")
    if tuple(slope) != (count,):
        node.input[1] = _reshaped(editor, node, node.input[1], (count,))


def _softmax_up(editor: GraphEditor, node: NodeProto) -> None:
    """Softmax-13 normalises one axis; before, all dims from ``axis`` on were one row."""
    rank = editor.rank(node.input[0])
    axis = attribute(node, "axis", 1)
    if rank is None:
        raise StepRefused("the input rank is unknown")
    axis %= rank
    set_attribute(node, "axis", axis)
    if axis == rank - 1:
        return
    shape = editor.shape(node.input[0])
    flat, normed = editor.fresh(f"{node.output[0]}_rows"), editor.fresh(f"{node.output[0]}_softmax")
    nodes = [helper.make_node("Flatten", [node.input[0]], [flat], axis=axis),
             helper.make_node("Softmax", [flat], [normed], axis=-1)]
    # Reshape's 0 copies the flattened rows' dim 0, which is the batch only when axis is 1
    if None not in shape[1:] and (axis == 1 or shape[0] is not None):
        restored = [0 if shape[0] is None else shape[0], *shape[1:]]
    else:
        raise StepRefused("the input shape needed to restore the softmax output is unknown")
    target = editor.add_initializer(f"{node.output[0]}_shape", restored, np.int64)
    editor.replace(node, [*nodes, helper.make_node("Reshape", [normed, target], list(node.output[:1]))])


def _softmax_down(editor: GraphEditor, node: NodeProto) -> None:
    rank = editor.rank(node.input[0])
    axis = attribute(node, "axis", -1)
    if rank is None:
        raise StepRefused("the input rank is unknown")
    if axis % rank != rank - 1:
        raise StepRefused(
            f"axis {axis} of a {rank}-D input is not the last: before opset 13 Softmax flattens "
            "every dim from the axis on"
        )
    set_attribute(node, "axis", rank - 1)


def _negative_axis_down(editor: GraphEditor, node: NodeProto) -> None:
    axis = attribute(node, "axis")
    if axis is not None and axis < 0:
        rank = editor.rank(node.input[0])
        if rank is None:
            raise StepRefused(f"negative axis {axis} needs the input rank, which is unknown")
        set_attribute(node, "axis", axis % rank)


def _negative_axes_down(editor: GraphEditor, node: NodeProto) -> None:
    """Squeeze/Unsqueeze ``axes`` < 0 arrived in opset 11; they count from the end of the input
    (Squeeze) or of the output (Unsqueeze, whose rank is the input's plus the new axes)."""
    axes = attribute(node, "axes")
    if not axes or all(a >= 0 for a in axes):
        return
    rank = editor.rank(node.input[0])
    if rank is None:
        raise StepRefused(f"negative axes {list(axes)} need the input rank, which is unknown")
    if node.op_type == "Unsqueeze":
        rank += len(axes)
    set_attribute(node, "axes", [a % rank for a in axes])


def _maxpool_ceil_down(editor: GraphEditor, node: NodeProto) -> None:
    """Before opset 10 pooling rounds down: turn ``ceil_mode`` into extra end padding."""
    dilations = attribute(node, "dilations")
    if dilations and any(d != 1 for d in dilations):
        raise StepRefused(f"dilations {dilations} did not exist before opset 10")
    remove_attribute(node, "dilations")
    if not attribute(node, "ceil_mode", 0):
        remove_attribute(node, "ceil_mode")
        return
    x, y = editor.shape(node.input[0]), editor.shape(node.output[0])
    if x is None or y is None or None in x[2:] or None in y[2:]:
        raise StepRefused("ceil_mode=1 needs static spatial shapes to become explicit padding")
    kernel = attribute(node, "kernel_shape")
    strides = attribute(node, "strides", [1] * len(kernel))
    pads = list(attribute(node, "pads", [0] * 2 * len(kernel)))
    rank = len(kernel)
    for axis in range(rank):
        covered = (y[2 + axis] - 1) * strides[axis] + kernel[axis]
        pads[rank + axis] += max(0, covered - (x[2 + axis] + pads[axis] + pads[rank + axis]))
    if node.op_type == "AveragePool" and attribute(node, "count_include_pad", 0) and pads != list(
        attribute(node, "pads", [0] * 2 * rank)
    ):
        raise StepRefused("ceil_mode with count_include_pad cannot become explicit padding")
    set_attribute(node, "pads", pads)
    remove_attribute(node, "ceil_mode")


def _avgpool_include_pad_down(editor: GraphEditor, node: NodeProto) -> None:
    """Before opset 7 padding never counted: pad with zeros explicitly, then pool unpadded."""
    pads = list(attribute(node, "pads", []))
    include = attribute(node, "count_include_pad", 0)
    remove_attribute(node, "count_include_pad")
    if not include:
        return
    if attribute(node, "auto_pad", "NOTSET") not in ("NOTSET", b"NOTSET", "VALID", b"VALID"):
        raise StepRefused("count_include_pad=1 with auto_pad (implicit padding) cannot be made explicit")
    if not any(pads):
        return
    half = len(pads) // 2
    padded = editor.fresh(f"{node.input[0]}_padded")
    full = [0, 0, *pads[:half], 0, 0, *pads[half:]]
    editor.insert_before(node, [helper.make_node("Pad", [node.input[0]], [padded], pads=full, mode="constant",
                                                 value=0.0)])
    node.input[0] = padded
    set_attribute(node, "pads", [0] * len(pads))


def _constant_of_shape_down(editor: GraphEditor, node: NodeProto) -> None:
    """ConstantOfShape arrived in opset 9: fold it into an initializer when its shape is fixed."""
    fill = attribute(node, "value")
    if fill is not None and int(np.prod(fill.dims)) != 1:
        raise StepRefused(f"its value has {int(np.prod(fill.dims))} elements; ConstantOfShape takes one")
    value = editor.constant(node.output[0])
    if value is None:
        raise StepRefused("its shape input is computed, so it cannot become a constant")
    name = node.output[0]
    editor.graph.node.remove(node)
    editor.graph.initializer.append(_tensor(value, name))
    if editor.model.ir_version <= 3:
        editor.graph.input.append(helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype),
                                                                value.shape))
    editor.changed()


def _tensor(value: np.ndarray, name: str):  # noqa: ANN202
    from onnx import numpy_helper

    return numpy_helper.from_array(value, name)


def _gemm_c_down(editor: GraphEditor, node: NodeProto) -> None:
    """C became optional in opset 11; before, supply zeros of the output width."""
    if len(node.input) >= 3 and node.input[2]:
        return
    b = editor.shape(node.input[1])
    if b is None or None in b:
        raise StepRefused("Gemm without C needs B's shape to make a zero C")
    width = b[0] if attribute(node, "transB", 0) else b[1]
    while len(node.input) < 3:
        node.input.append("")
    node.input[2] = editor.add_initializer(f"{node.output[0]}_zero_c", np.zeros(width, np.float32))


def _dropout_ratio_up(editor: GraphEditor, node: NodeProto) -> None:
    ratio = attribute(node, "ratio")
    remove_attribute(node, "ratio")
    if ratio is not None and ratio != 0.5:
        node.input.append(editor.add_initializer(f"{node.output[0]}_ratio", np.float32(ratio)))


def _dropout_ratio_down(editor: GraphEditor, node: NodeProto) -> None:
    if len(node.input) > 2 and node.input[2]:
        mode = editor.constant(node.input[2])
        if mode is None or bool(mode):
            raise StepRefused("training_mode is set or computed; dropout before opset 12 is inference-only")
    _InputToAttr("ratio", 1, _to_float, keep_default=0.5)(editor, node)


def _dropout_mask_down(editor: GraphEditor, node: NodeProto) -> None:
    """Before opset 10 the mask output was float; a model that reads it cannot move down."""
    consumers = {name for n in editor.graph.node for name in n.input}
    outputs = {o.name for o in editor.graph.output}
    if len(node.output) > 1 and node.output[1] and (node.output[1] in consumers or node.output[1] in outputs):
        raise StepRefused("its mask output is used; its type changes from bool to float below opset 10")
    del node.output[1:]


def _value_to_input(editor: GraphEditor, node: NodeProto) -> None:
    value = attribute(node, "value", 0.0)
    remove_attribute(node, "value")
    if value:
        node.input.append(editor.add_initializer(f"{node.output[0]}_value", np.float32(value)))


_CAST_NAMES = {"FLOAT": 1, "UINT8": 2, "INT8": 3, "INT32": 6, "INT64": 7, "BOOL": 9, "FLOAT16": 10, "DOUBLE": 11}


def _cast_to_int(editor: GraphEditor, node: NodeProto) -> None:
    to = attribute(node, "to")
    name = to.decode() if isinstance(to, bytes) else str(to)
    if name.upper() not in _CAST_NAMES:
        raise StepRefused(f"Cast to {name!r} is not known")
    set_attribute(node, "to", _CAST_NAMES[name.upper()])


def _cast_to_str(editor: GraphEditor, node: NodeProto) -> None:
    to = attribute(node, "to")
    names = {v: k for k, v in _CAST_NAMES.items()}
    if to not in names:
        raise StepRefused(f"Cast to type {to} has no name before opset 6")
    set_attribute(node, "to", names[to])


@dataclass(frozen=True)
class Change:
    op: str
    version: int
    up: Rewrite
    down: Rewrite


def _compatible(op: str, *versions: int) -> list[Change]:
    return [Change(op, v, _same, _same) for v in versions]


_CONSUMED = _drop("consumed_inputs")
_LEGACY_BINARY = [(6, _CONSUMED, _same), (7, _legacy_broadcast_up, _legacy_broadcast_down)]
CHANGES: list[Change] = [
    *_compatible("Conv", 11, 22), *_compatible("ConvTranspose", 11, 22),
    *_compatible("GlobalAveragePool", 22), *_compatible("GlobalMaxPool", 22),
    *_compatible("LRN", 13), *_compatible("Transpose", 13, 21, 23, 24, 25),
    *_compatible("MatMul", 9, 13), *_compatible("Softplus", 22),
    *_compatible("Identity", 13, 14, 16, 19, 21, 23, 24, 25),
    Change("MaxPool", 8, _same, _chain(_no_extra_outputs(1, "its Indices output did not exist before opset 8"),
                                       _drop("storage_order"))),
    Change("MaxPool", 10, _same, _maxpool_ceil_down),
    *_compatible("MaxPool", 11, 12, 22),
    Change("AveragePool", 7, _same, _avgpool_include_pad_down),
    Change("AveragePool", 10, _same, _maxpool_ceil_down),
    *_compatible("AveragePool", 11, 19, 22),
    Change("BatchNormalization", 6, _CONSUMED, _Add("consumed_inputs", [0, 0, 0, 1, 1])),
    Change("BatchNormalization", 7, _RequireAbsentOr("is_test", 1, "training mode cannot be converted"),
           _Add("is_test", 1)),
    Change("BatchNormalization", 9, _RequireAbsentOr("spatial", 1, "non-spatial batch norm has no form from 9"),
           _same),
    Change("BatchNormalization", 14, _same,
           _RequireAbsentOr("training_mode", 0, "training mode did not exist before opset 14")),
    *_compatible("BatchNormalization", 15),
    Change("Gemm", 6, _same, _same),
    Change("Gemm", 7, _drop("broadcast"), _Add("broadcast", 1)),
    Change("Gemm", 9, _same, _same),
    Change("Gemm", 11, _same, _gemm_c_down),
    *_compatible("Gemm", 13),
    *_compatible("Flatten", 9, 13, 21, 23, 24, 25),
    Change("Flatten", 11, _same, _negative_axis_down),
    *[Change(op, 6, _CONSUMED, _same) for op in ("Relu", "LeakyRelu", "Sigmoid", "Tanh", "Elu", "Abs", "Exp",
                                                  "Log", "Sqrt", "PRelu")],
    *_compatible("Relu", 13, 14), *_compatible("LeakyRelu", 16), *_compatible("Elu", 22),
    *[c for op in ("Sigmoid", "Tanh", "Abs", "Exp", "Log", "Sqrt") for c in _compatible(op, 13)],
    Change("PRelu", 7, _prelu_up, _prelu_down), *_compatible("PRelu", 9, 16),
    *[Change(op, v, up, down) for op in ("Add", "Sub", "Mul", "Div") for v, up, down in _LEGACY_BINARY],
    *[c for op in ("Add", "Sub", "Mul", "Div") for c in _compatible(op, 13, 14)],
    Change("Pow", 7, _legacy_broadcast_up, _legacy_broadcast_down), *_compatible("Pow", 12, 13, 15),
    *[Change(op, 6, _CONSUMED, _same) for op in ("Sum", "Max")],
    *[Change(op, 8, _same, _same) for op in ("Sum", "Max")],
    *_compatible("Sum", 13), *_compatible("Max", 12, 13),
    Change("Concat", 4, _Add("axis", 1, if_absent=True), _same), Change("Concat", 11, _same, _negative_axis_down),
    *_compatible("Concat", 13),
    Change("Split", 2, _no_extra_inputs(1, "the split sizes come from an input"), _same),
    Change("Split", 11, _same, _negative_axis_down),
    Change("Split", 13, _AttrToInput("split", 1, np.int64), _InputToAttr("split", 1)),
    Change("Split", 18, _same, _RequireAbsentOr("num_outputs", None, "num_outputs did not exist before 18")),
    Change("Slice", 10, _chain(_AttrToInput("starts", 1, np.int64), _AttrToInput("ends", 2, np.int64),
                               _AttrToInput("axes", 3, np.int64)),
           _chain(_no_extra_inputs(4, "Slice with steps did not exist before opset 10"),
                  _InputToAttr("axes", 3), _InputToAttr("ends", 2), _InputToAttr("starts", 1))),
    *_compatible("Slice", 11, 13),
    Change("Reshape", 5, _chain(_CONSUMED, _AttrToInput("shape", 1, np.int64)), _InputToAttr("shape", 1)),
    *_compatible("Reshape", 13),
    Change("Reshape", 14, _same, _RequireAbsentOr("allowzero", 0, "allowzero=1 did not exist before 14")),
    *_compatible("Reshape", 19, 21, 23, 24, 25),
    Change("Squeeze", 11, _same, _negative_axes_down), Change("Unsqueeze", 11, _same, _negative_axes_down),
    Change("Squeeze", 13, _AttrToInput("axes", 1, np.int64), _InputToAttr("axes", 1)),
    Change("Unsqueeze", 13, _AttrToInput("axes", 1, np.int64), _InputToAttr("axes", 1)),
    *_compatible("Squeeze", 21, 23, 24, 25), *_compatible("Unsqueeze", 21, 23, 24, 25),
    Change("Dropout", 6, _CONSUMED, _same),
    Change("Dropout", 7, _drop("is_test"), _Add("is_test", 1)),
    Change("Dropout", 10, _same, _dropout_mask_down),
    Change("Dropout", 12, _dropout_ratio_up, _dropout_ratio_down),
    *_compatible("Dropout", 13, 22),
    Change("Softmax", 11, _same, _negative_axis_down),
    Change("Softmax", 13, _softmax_up, _softmax_down),
    Change("Constant", 9, _same, _same),
    *_compatible("Constant", 11, 12, 13, 19, 21, 23, 24, 25),
    Change("ConstantOfShape", 9, _same, _constant_of_shape_down),
    *_compatible("ConstantOfShape", 20, 21, 23, 24, 25),
    Change("Pad", 2, _Rename("paddings", "pads"), _Rename("pads", "paddings")),
    Change("Pad", 11, _chain(_AttrToInput("pads", 1, np.int64), _value_to_input),
           _chain(_no_extra_inputs(3, "Pad with axes did not exist before opset 18"),
                  _InputToAttr("value", 2, _to_float, keep_default=0.0), _InputToAttr("pads", 1))),
    *_compatible("Pad", 13, 19, 21, 23, 24, 25),
    Change("Pad", 18, _same, _no_extra_inputs(3, "Pad with axes did not exist before opset 18")),
    Change("Clip", 6, _CONSUMED, _same),
    Change("Clip", 11, _chain(_AttrToInput("min", 1, np.float32), _AttrToInput("max", 2, np.float32)),
           _chain(_InputToAttr("max", 2, _to_float), _InputToAttr("min", 1, _to_float))),
    *_compatible("Clip", 12, 13),
    Change("ArgMax", 11, _same, _negative_axis_down),
    Change("ArgMax", 12, _same, _RequireAbsentOr("select_last_index", 0, "select_last_index did not exist")),
    *_compatible("ArgMax", 13),
    Change("Cast", 6, _cast_to_int, _cast_to_str),
    *_compatible("Cast", 9, 13, 19, 21, 23, 24, 25, 28),
]


def changes() -> list[Change]:
    """Every schema change zooforge adapts."""
    return list(CHANGES)


def changes_by_key() -> dict[tuple[str, int], Change]:
    table: dict[tuple[str, int], Change] = {}
    for change in changes():
        key = (change.op, change.version)
        if key in table:
            raise RuntimeError(f"two adapters for {change.op} at opset {change.version}")
        table[key] = change
    return table
