"""State of one NetDef -> ONNX export, and the per-operator view handlers work through."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from onnx import NodeProto, helper

from zooforge.converters.errors import ExportError
from zooforge.versioning.names import fresh_name

Shape = tuple[int, ...]


class ExportContext:
    """Nodes and initializers emitted so far, SSA names, and the shape of every Caffe2 blob."""

    def __init__(
        self,
        opset: int,
        weights: Mapping[str, np.ndarray],
        shapes: Mapping[str, Shape],
        consumed: set[str] | frozenset[str] = frozenset(),
        compat: str | None = None,
        dynamic_batch: bool = False,
    ) -> None:
        self.opset = opset
        self.compat = compat  # "zoo": emit the published zoo graph's forms (Reshape before Gemm, ...)
        self.dynamic_batch = dynamic_batch
        self.consumed = consumed  # Caffe2 blobs that some operator reads or the net outputs
        self.nodes: list[NodeProto] = []
        self.initializers: dict[str, np.ndarray] = {}
        self.weights = weights
        self.shapes = shapes
        self._taken: set[str] = set()  # every tensor name in use or reserved for a blob
        self._claimed: set[str] = set()
        self._node_names: set[str] = set()
        self.dtypes: dict[str, int] = {}  # ONNX element type of tensors that are not float

    def node_name(self, hint: str) -> str:
        return fresh_name(hint, self._node_names)

    def reserve(self, names: Iterable[str]) -> None:
        """Keep ``names`` (those the blobs will get) from :meth:`unique`, which names intermediates."""
        self._taken.update(names)

    def claim(self, name: str) -> str:
        """Take a blob's tensor name; a collision is a bug in naming, not a user error."""
        if name in self._claimed:
            raise ExportError(f"tensor name '{name}' would be defined twice in the ONNX graph")
        self._claimed.add(name)
        self._taken.add(name)
        return name

    def unique(self, hint: str) -> str:
        """A fresh name for an intermediate tensor: never a blob's name, even one written later."""
        return fresh_name(hint, self._taken)

    def add_initializer(self, name: str, array: np.ndarray) -> str:
        self.initializers[name] = array
        return name


class OpEmitter:
    """One Caffe2 operator as a handler sees it: ONNX names of its inputs/outputs, shapes, args."""

    def __init__(
        self,
        context: ExportContext,
        op: Any,
        args: Mapping[str, Any],
        inputs: Sequence[str],
        outputs: Sequence[str],
    ) -> None:
        self.context = context
        self.op = op
        self.args = args
        self.inputs = list(inputs)
        self.outputs = list(outputs)

    @property
    def opset(self) -> int:
        return self.context.opset

    @property
    def label(self) -> str:
        return f"{self.op.type} '{self.op.name or self.op.output[0]}'"

    def in_shape(self, index: int) -> Shape:
        return tuple(self.context.shapes[self.op.input[index]])

    def out_shape(self, index: int) -> Shape:
        return tuple(self.context.shapes[self.op.output[index]])

    def weight(self, index: int) -> np.ndarray | None:
        """The constant value of input ``index`` if it is a weight, else ``None``."""
        return self.context.weights.get(self.op.input[index])

    def node(self, op_type: str, inputs: Sequence[str], outputs: Sequence[str], **attrs: Any) -> None:
        attrs = {key: value for key, value in attrs.items() if value is not None}
        name = self.context.node_name(self.op.name or self.op.output[0])
        self.context.nodes.append(helper.make_node(op_type, list(inputs), list(outputs), name=name, **attrs))

    def temp(self, hint: str) -> str:
        return self.context.unique(f"{self.outputs[0]}_{hint}")

    def const(self, hint: str, value: Any, dtype: Any = np.float32) -> str:
        return self.context.add_initializer(self.temp(hint), np.asarray(value, dtype=dtype))

    def shaped_input(self, index: int, shape: Shape) -> str:
        """Input ``index`` reshaped to ``shape``: a new initializer for a weight, else a Reshape."""
        value = self.weight(index)
        if value is not None:
            if tuple(value.shape) == tuple(shape):
                return self.inputs[index]
            return self.const("reshaped", value.reshape(shape))
        out = self.temp("reshaped")
        self.reshape(self.inputs[index], out, shape)
        return out

    def reshape(self, source: str, out: str, shape: Sequence[int]) -> None:
        if self.opset < 5:
            self.node("Reshape", [source], [out], shape=[int(d) for d in shape])
        else:
            self.node("Reshape", [source, self.const("shape", list(shape), np.int64)], [out])

    def unused_outputs_only(self, first: int) -> None:
        """Refuse when a Caffe2 output we do not reproduce (index >= ``first``) is read later."""
        if any(name in self.context.consumed for name in self.op.output[first:]):
            raise ExportError(
                f"{self.label}: extra output(s) {list(self.op.output[first:])} cannot be exported"
            )

