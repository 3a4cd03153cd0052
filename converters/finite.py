"""Non-finite weights (NaN, +-Inf) are refused by name unless the user asks for them.

A NaN weight makes every output NaN, and a release whose test data is NaN proves nothing. Caffe
layers are named with the blob's index, NetDef and ONNX weights by tensor name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import onnx
from onnx import numpy_helper

from zooforge.converters.errors import ZooforgeError

ALLOW_HINT = "pass --allow-non-finite to convert it anyway"


class NonFiniteWeightsError(ZooforgeError):
    """A weight holds NaN or an infinity."""


def _bad(array: np.ndarray) -> str | None:
    array = np.asarray(array)
    if array.dtype.kind not in "fc" or array.size == 0:
        return None
    nan, inf = int(np.isnan(array).sum()), int(np.isinf(array).sum())
    if not nan and not inf:
        return None
    parts = [f"{nan} NaN" if nan else "", f"{inf} infinite" if inf else ""]
    return " and ".join(p for p in parts if p) + f" of {array.size} values"


def _raise(found: list[str], source: str) -> None:
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise NonFiniteWeightsError(f"{source}: {found[0]}{more}; {ALLOW_HINT}")


def check_caffe_layers(layers: Iterable, source: str) -> None:  # noqa: ANN001 - CaffeLayer
    """Every weight blob of every layer (``layer 'conv1' blob 0 holds 1 NaN of 34848 values``)."""
    found = []
    for layer in layers:
        for index, blob in enumerate(layer.blobs):
            if (what := _bad(blob)) is not None:
                found.append(f"layer '{layer.name}' ({layer.type}) weight blob {index} holds {what}")
    _raise(found, source)


def check_named(weights: Mapping[str, np.ndarray], source: str) -> None:
    found = [f"weight '{name}' holds {what}" for name, array in weights.items() if (what := _bad(array)) is not None]
    _raise(found, source)


def check_onnx(model: onnx.ModelProto, source: str) -> None:
    """The initializers and Constant nodes of an ONNX model, one tensor at a time."""
    found = []
    for tensor in model.graph.initializer:
        if tensor.data_location != onnx.TensorProto.EXTERNAL and (what := _bad(numpy_helper.to_array(tensor))):
            found.append(f"initializer '{tensor.name}' holds {what}")
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.TENSOR and (what := _bad(numpy_helper.to_array(attribute.t))):
                    found.append(f"Constant '{node.name or node.output[0]}' holds {what}")
    _raise(found, source)
