"""A small mutable view of an ONNX graph for opset adapters.

Adapters rewrite nodes in place, read constant inputs (initializers, ``Constant`` nodes and
``ConstantOfShape`` of a constant shape), add initializers and ask for tensor shapes, which come
from ONNX shape inference on the graph as it stands.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import NodeProto, helper, numpy_helper, shape_inference

from zooforge.versioning.names import fresh_name


class GraphEditor:
    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self.graph = model.graph
        self._shapes: dict[str, tuple[int | None, ...]] | None = None
        self._names = {name for node in self.graph.node for name in (*node.input, *node.output)}
        self._names.update(i.name for i in self.graph.initializer)
        self._names.update(i.name for i in self.graph.input)

    # -- constants --------------------------------------------------------------------------------
    def initializer(self, name: str) -> onnx.TensorProto | None:
        for tensor in self.graph.initializer:
            if tensor.name == name:
                return tensor
        return None

    def constant(self, name: str) -> np.ndarray | None:
        """The value of ``name`` if it is fixed when the model is built, else ``None``."""
        if not name:
            return None
        tensor = self.initializer(name)
        if tensor is not None:
            return numpy_helper.to_array(tensor)
        producer = self.producer(name)
        if producer is None:
            return None
        if producer.op_type == "Constant":
            attrs = {a.name: a for a in producer.attribute}
            if "value" in attrs:
                return numpy_helper.to_array(attrs["value"].t)
            for key, dtype in (("value_float", np.float32), ("value_int", np.int64)):
                if key in attrs:
                    return np.asarray(helper.get_attribute_value(attrs[key]), dtype)
            for key, dtype in (("value_floats", np.float32), ("value_ints", np.int64)):
                if key in attrs:
                    return np.asarray(helper.get_attribute_value(attrs[key]), dtype)
            return None
        if producer.op_type == "ConstantOfShape":
            shape = self.constant(producer.input[0])
            if shape is None:
                return None
            value = next((a.t for a in producer.attribute if a.name == "value"), None)
            if value is not None and int(np.prod(value.dims)) != 1:
                return None  # the spec takes a one-element value; onnxruntime and onnx's evaluator refuse others
            fill = numpy_helper.to_array(value).reshape(-1)[0] if value is not None else np.float32(0)
            return np.full(tuple(int(d) for d in shape), fill, dtype=np.asarray(fill).dtype)
        return None

    def add_initializer(self, hint: str, value: Any, dtype: Any = None) -> str:
        name = self.fresh(hint)
        array = np.asarray(value, dtype=dtype) if dtype is not None else np.asarray(value)
        self.graph.initializer.append(numpy_helper.from_array(array, name))
        if self._shapes is not None:
            self._shapes[name] = tuple(array.shape)
        if self.model.ir_version <= 3:
            self.graph.input.append(
                helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(array.dtype), array.shape)
            )
        return name

    def fresh(self, hint: str) -> str:
        return fresh_name(hint, self._names)

    # -- nodes ------------------------------------------------------------------------------------
    def producer(self, name: str) -> NodeProto | None:
        for node in self.graph.node:
            if name in node.output:
                return node
        return None

    def insert_before(self, anchor: NodeProto, nodes: Sequence[NodeProto]) -> None:
        index = list(self.graph.node).index(anchor)
        for offset, node in enumerate(nodes):
            self.graph.node.insert(index + offset, node)
        self.changed()

    def replace(self, old: NodeProto, nodes: Sequence[NodeProto]) -> None:
        index = list(self.graph.node).index(old)
        del self.graph.node[index]
        for offset, node in enumerate(nodes):
            self.graph.node.insert(index + offset, node)
        self.changed()

    def changed(self) -> None:
        """Nodes were rewritten. Shapes stay those inferred at the start of the current step:
        rewrites keep every tensor's meaning, and a half-rewritten graph infers poorly."""

    def begin_step(self) -> None:
        """Forget inferred shapes: the graph is consistent again at a new opset."""
        self._shapes = None

    # -- shapes -----------------------------------------------------------------------------------
    def shape(self, name: str) -> tuple[int | None, ...] | None:
        """The static shape of ``name`` (``None`` per unknown dim), or ``None`` if unknown."""
        if self._shapes is None:
            self._shapes = self._infer()
        return self._shapes.get(name)

    def rank(self, name: str) -> int | None:
        shape = self.shape(name)
        return None if shape is None else len(shape)

    def _infer(self) -> dict[str, tuple[int | None, ...]]:
        inferred = shape_inference.infer_shapes(self.model, data_prop=True)  # lenient: partial is fine
        shapes: dict[str, tuple[int | None, ...]] = {}
        values = [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]
        for value in values:
            tensor_type = value.type.tensor_type
            if tensor_type.HasField("shape"):
                shapes[value.name] = tuple(
                    d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim
                )
        for tensor in self.graph.initializer:
            shapes[tensor.name] = tuple(tensor.dims)
        return shapes


def attribute(node: NodeProto, name: str, default: Any = None) -> Any:
    for attr in node.attribute:
        if attr.name == name:
            return helper.get_attribute_value(attr)
    return default


def set_attribute(node: NodeProto, name: str, value: Any) -> None:
    remove_attribute(node, name)
    node.attribute.append(helper.make_attribute(name, value))


def remove_attribute(node: NodeProto, name: str) -> None:
    for index, attr in enumerate(node.attribute):
        if attr.name == name:
            del node.attribute[index]
            return
