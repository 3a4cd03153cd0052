"""The ONNX checker for models whose weights are large.

``onnx.checker.check_model`` serializes the whole model (and full shape inference does it again),
which for a 233 MiB AlexNet costs seconds and hundreds of megabytes. The graph is what can be
wrong, so large initializers are presented to the checker as typed graph inputs instead; their
contents are plain tensors that need no check of their own.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
from onnx import helper

LARGE_TENSOR_BYTES = 1024


def check_graph(model: onnx.ModelProto, detached: Mapping[str, np.ndarray] | None = None) -> None:
    """onnx.checker (full) and strict shape inference on ``model`` without its large initializers.

    ``detached`` names initializers already kept outside ``model``; large initializers inside
    ``model`` are left out of the check the same way.
    """
    probe = onnx.ModelProto()
    probe.CopyFrom(model) if not _has_large(model) else _copy_without_large(model, probe)
    listed = {value.name for value in probe.graph.input}
    declared = dict(detached or {})
    declared.update(_large_initializer_types(model))
    for name, (dtype, shape) in ((n, _type_of(v)) for n, v in declared.items()):
        if name not in listed:
            probe.graph.input.append(helper.make_tensor_value_info(name, dtype, shape))
    if probe.ir_version < 4:  # inputs without initializers are fine at any IR for checking
        probe.ir_version = 4
    onnx.checker.check_model(probe, full_check=True)  # full_check runs strict, type-checked shape inference


def _has_large(model: onnx.ModelProto) -> bool:
    return any(_nbytes(t) >= LARGE_TENSOR_BYTES for t in model.graph.initializer)


def _nbytes(tensor: onnx.TensorProto) -> int:
    return len(tensor.raw_data) or 4 * (len(tensor.float_data) + len(tensor.int32_data)) + 8 * len(tensor.int64_data)


def _copy_without_large(model: onnx.ModelProto, probe: onnx.ModelProto) -> None:
    graph = model.graph
    kept = [t for t in graph.initializer if _nbytes(t) < LARGE_TENSOR_BYTES]
    probe.CopyFrom(onnx.ModelProto(
        ir_version=model.ir_version, opset_import=model.opset_import, producer_name=model.producer_name,
        producer_version=model.producer_version, domain=model.domain, model_version=model.model_version,
        doc_string=model.doc_string, metadata_props=model.metadata_props,
        graph=onnx.GraphProto(
            node=graph.node, name=graph.name, initializer=kept, doc_string=graph.doc_string,
            input=graph.input, output=graph.output, value_info=graph.value_info,
        ),
    ))


def _large_initializer_types(model: onnx.ModelProto) -> dict[str, tuple[int, list[int]]]:
    return {t.name: (t.data_type, list(t.dims)) for t in model.graph.initializer if _nbytes(t) >= LARGE_TENSOR_BYTES}


def _type_of(value) -> tuple[int, list[int]]:  # noqa: ANN001 - an array or an (elem type, dims) pair
    if isinstance(value, tuple):
        return value
    array = np.asarray(value)
    return helper.np_dtype_to_tensor_dtype(array.dtype), list(array.shape)
