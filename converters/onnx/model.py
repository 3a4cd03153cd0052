"""An ONNX model whose large initializers stay NumPy arrays until the model is written.

``skeleton`` is a complete ModelProto except for the large initializers, which are kept in
``large`` and encoded straight from their buffers when the model is serialized: a message field
that occurs twice is merged by every protobuf parser, so appending ``graph { initializer {...} }``
chunks after the skeleton yields the full model without building it in memory first.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import onnx
from onnx import helper, numpy_helper

from zooforge.converters.fileio import atomic_writer
from zooforge.converters.wire import field_header
from zooforge.versioning.checker import LARGE_TENSOR_BYTES, check_graph

_MODEL_GRAPH = 7          # ModelProto.graph
_GRAPH_INITIALIZER = 5    # GraphProto.initializer
_TENSOR_RAW_DATA = 9      # TensorProto.raw_data


@dataclass
class OnnxModel:
    skeleton: onnx.ModelProto
    large: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def build(cls, model: onnx.ModelProto, initializers: dict[str, np.ndarray]) -> "OnnxModel":
        """Attach ``initializers``: small ones go into ``model``, large ones are kept aside."""
        large: dict[str, np.ndarray] = {}
        for name, array in initializers.items():
            array = np.asarray(array)
            if array.nbytes >= LARGE_TENSOR_BYTES:
                large[name] = np.ascontiguousarray(array)
            else:
                model.graph.initializer.append(numpy_helper.from_array(array, name))
        return cls(model, large)

    def check(self) -> None:
        """onnx.checker (full) and strict shape inference on the graph (see ``check_graph``)."""
        check_graph(self.skeleton, self.large)

    def chunks(self) -> Iterator[bytes | memoryview]:
        yield self.skeleton.SerializeToString()
        for name, array in self.large.items():
            yield from _tensor_chunks(name, array)

    def to_bytes(self) -> bytes:
        return b"".join(bytes(chunk) if isinstance(chunk, memoryview) else chunk for chunk in self.chunks())

    def to_proto(self) -> onnx.ModelProto:
        return onnx.load_from_string(self.to_bytes())

    def write(self, stream: BinaryIO) -> None:
        for chunk in self.chunks():
            stream.write(chunk)

    def save(self, path: Path) -> None:
        """Write the model; the file appears whole or not at all."""
        with atomic_writer(path) as stream:
            self.write(stream)


def _tensor_chunks(name: str, array: np.ndarray) -> Iterator[bytes | memoryview]:
    header = onnx.TensorProto(
        dims=[int(d) for d in array.shape],
        data_type=helper.np_dtype_to_tensor_dtype(array.dtype),
        name=name,
    ).SerializeToString()
    data = memoryview(np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))).cast("B")
    tensor = header + field_header(_TENSOR_RAW_DATA, data.nbytes)
    tensor_length = len(tensor) + data.nbytes
    graph = field_header(_GRAPH_INITIALIZER, tensor_length)
    yield field_header(_MODEL_GRAPH, len(graph) + tensor_length) + graph + tensor
    yield data
