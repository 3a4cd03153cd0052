"""Export a Caffe2 NetDef pair as an ONNX model at a chosen opset.

Tensor names follow the ONNX model zoo by default: every Caffe2 blob becomes ``<blob>_<n>``,
where ``n`` counts the writes to that blob (inputs and weights are ``_0``), so the zoo's
``data_0``, ``conv1_w_0`` and ``prob_1`` come out as users expect. With ``names="caffe"`` each
blob keeps its plain name at its last write and earlier writes of in-place blobs get ``_<n>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from onnx import TensorProto, helper

from zooforge.converters.caffe2.executor import infer_shapes
from zooforge.converters.caffe2.executor.operator import DYNAMIC
from zooforge.converters.caffe2.netdef import Caffe2Model, op_args
from zooforge.converters.errors import ExportError
from zooforge.converters.onnx.context import ExportContext, OpEmitter
from zooforge.converters.onnx.model import OnnxModel
from zooforge.converters.onnx.handlers import REGISTRY
from zooforge.versioning import opset_info
from zooforge.versioning.names import fresh_name

NameStyle = Literal["zoo", "caffe"]
Compat = Literal["zoo"] | None
BATCH_SYMBOL = "N"


@dataclass(frozen=True)
class ExportOptions:
    """How to write the ONNX model."""

    opset: int
    names: NameStyle = "zoo"
    dynamic_batch: bool = False
    producer_version: str = ""
    compat: Compat = None  # "zoo": the ONNX model zoo's published graph structure (see caffe2.compat)


class _Names:
    """SSA names for Caffe2 blobs (Caffe2 allows in-place writes, ONNX does not)."""

    def __init__(self, model: Caffe2Model, style: NameStyle) -> None:
        if style not in ("zoo", "caffe"):
            raise ExportError(f"unknown naming style {style!r}; use 'zoo' or 'caffe'")
        self.style = style
        self.version: dict[str, int] = {name: 0 for name in model.predict_net.external_input}
        self.final: dict[str, int] = dict(self.version)
        for op in model.predict_net.op:
            for blob in op.output:
                self.final[blob] = self.final.get(blob, 0) + 1
        self._interim: dict[tuple[str, int], str] = {}  # caffe style: the names of versions not final
        self._blob_names: set[str] = set(self.final)

    def every_name(self) -> set[str]:
        """Every tensor name the blobs get, over all their versions."""
        return {self._name(blob, version) for blob, last in self.final.items() for version in range(last + 1)}

    def current(self, blob: str) -> str:
        if blob not in self.version:
            raise ExportError(f"blob '{blob}' is read before any operator writes it")
        return self._name(blob, self.version[blob])

    def write(self, blob: str) -> str:
        self.version[blob] = self.version.get(blob, 0) + 1
        return self._name(blob, self.version[blob])

    def _name(self, blob: str, version: int) -> str:
        if self.style == "zoo":
            return f"{blob}_{version}"  # one-to-one: the text after the last "_" is the version
        if version == self.final[blob]:
            return blob
        if (blob, version) not in self._interim:  # "y_1" may be another blob's own name
            self._interim[blob, version] = fresh_name(f"{blob}_{version}", self._blob_names)
        return self._interim[blob, version]


def _emit(model: Caffe2Model, handler: Any, opset: int, emitter: OpEmitter) -> None:
    """Run the handler's version for ``opset``; a refusal names the Caffe layer the op comes from."""
    try:
        handler.emitter(opset)(emitter)
    except ExportError as exc:
        origin = model.origins.get(emitter.op.name)
        if origin is None or str(exc).startswith(origin.removesuffix(")")):  # it names the layer already
            raise
        raise ExportError(f"{origin}: {exc}") from None


def caffe2_to_onnx(model: Caffe2Model, options: ExportOptions) -> OnnxModel:
    """Translate every operator with its versioned handler and assemble the model."""
    info = opset_info(options.opset)
    net = model.predict_net
    shapes = infer_shapes(net, {**model.input_shapes, **{k: v.shape for k, v in model.weights.items()}})
    consumed = {name for op in net.op for name in op.input} | set(net.external_output)
    context = ExportContext(options.opset, model.weights, shapes, consumed, options.compat, options.dynamic_batch)
    names = _Names(model, options.names)
    context.reserve(names.every_name())

    weight_names: dict[str, str] = {}
    for blob, array in model.weights.items():
        name = context.claim(names.current(blob))
        weight_names[blob] = name
    input_names = {blob: context.claim(names.current(blob)) for blob in model.inputs}

    # An operator that needs a newer opset is refused first, wherever it sits: its sentence names
    # the lowest opset that works (an earlier operator's own, lower minimum would mislead).
    for op in net.op:
        handler = REGISTRY.get(op.type)
        if handler is not None and options.opset < handler.refuses_below:
            _emit(model, handler, options.opset,
                  OpEmitter(context, op, op_args(op), list(op.input), list(op.output)))

    for index, op in enumerate(net.op):
        handler = REGISTRY.get(op.type)
        if handler is None:
            raise ExportError(
                f"operator {index} ({op.type} '{op.name}') has no ONNX handler; "
                f"handled: {', '.join(sorted(REGISTRY))}"
            )
        inputs = [names.current(blob) for blob in op.input]
        outputs = [context.claim(names.write(blob)) for blob in op.output]
        _emit(model, handler, options.opset, OpEmitter(context, op, op_args(op), inputs, outputs))

    used = {name for node in context.nodes for name in node.input}
    initializers = {
        weight_names[blob]: array for blob, array in model.weights.items() if weight_names[blob] in used
    }
    initializers.update(context.initializers)
    batch = BATCH_SYMBOL if options.dynamic_batch else None

    graph_inputs = [
        _value_info(input_names[blob], model.input_shapes[blob], batch) for blob in model.inputs
    ]
    if info.initializers_are_inputs:
        graph_inputs += [
            helper.make_tensor_value_info(name, _elem_type(array), list(array.shape))
            for name, array in initializers.items()
        ]
    graph_outputs = [
        _value_info(names.current(blob), shapes[blob], batch, context.dtypes.get(names.current(blob)))
        for blob in net.external_output
    ]
    graph = helper.make_graph(
        context.nodes,
        net.name or "model",
        graph_inputs,
        graph_outputs,
    )
    onnx_model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", options.opset)],
        producer_name="zooforge",
        producer_version=options.producer_version,
    )
    onnx_model.ir_version = info.ir_version
    return OnnxModel.build(onnx_model, initializers)


def _value_info(name: str, shape: tuple[int, ...], batch: str | None, elem_type: int | None = None):
    dims: list[int | str] = ["detections" if d == DYNAMIC else d for d in shape]  # a data-dependent size
    if batch and dims:
        dims[0] = batch
    return helper.make_tensor_value_info(name, elem_type or TensorProto.FLOAT, dims)


def _elem_type(array: np.ndarray) -> int:
    return helper.np_dtype_to_tensor_dtype(np.asarray(array).dtype)

