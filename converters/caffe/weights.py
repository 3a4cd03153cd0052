"""Read Caffe weights: ``.caffemodel`` (binary NetParameter, V0/V1/V2) and ``.caffemodel.h5``;
write them as a V2 ``.caffemodel``.

Weights are matched to layers by name, so a V1 weights file serves a V2 prototxt (the 2014
bvlc_alexnet.caffemodel is such a file). Blobs may carry a ``shape`` or the legacy
num/channels/height/width dims.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError

from zooforge.converters.caffe import schema
from zooforge.converters.caffe.net import CaffeNet
from zooforge.converters.errors import CaffeModelError, InputFileError
from zooforge.converters.fileio import atomic_writer
from zooforge.converters.wire import field_header

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_LEGACY_DIMS = ("num", "channels", "height", "width")

# layer name -> its blobs in Caffe's order (weights, bias, ...)
WeightTable = dict[str, list[np.ndarray]]


def read_weights(path: Path) -> WeightTable:
    """Read every layer's blobs from a binary or HDF5 Caffe weights file."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"weights file {path} does not exist")
    with path.open("rb") as handle:
        magic = handle.read(len(HDF5_MAGIC))
    if magic == HDF5_MAGIC:
        return _read_hdf5(path)
    return _read_binary(path)


def blob_to_array(blob: Any, where: str) -> np.ndarray:
    """Turn a ``caffe.BlobProto`` into a float32 array of its declared shape."""
    if blob.HasField("shape"):
        shape = tuple(int(d) for d in blob.shape.dim)
    elif any(blob.HasField(name) for name in _LEGACY_DIMS):
        shape = tuple(int(getattr(blob, name)) for name in _LEGACY_DIMS)
    else:
        shape = None
    if shape is not None and any(d < 0 for d in shape):
        raise CaffeModelError(f"{where}: blob declares a negative dimension {list(shape)}")
    if len(blob.data):
        values = np.asarray(blob.data, dtype=np.float32)
    else:
        values = np.asarray(blob.double_data, dtype=np.float32)  # rounds each double once
    if shape is None:
        shape = (values.size,)
    if int(np.prod(shape, dtype=np.int64)) != values.size:
        raise CaffeModelError(
            f"{where}: blob declares shape {list(shape)} ({int(np.prod(shape))} values) "
            f"but holds {values.size} values"
        )
    return values.reshape(shape)


def _read_binary(path: Path) -> WeightTable:
    net = schema.NetParameter()
    try:
        net.ParseFromString(path.read_bytes())
    except DecodeError as exc:
        raise InputFileError(
            f"{path} is not a Caffe binary weights file (protobuf decoding failed: {exc}); "
            "it may be truncated or of another format"
        ) from None
    table: WeightTable = {}
    entries: list[tuple[str, Any]] = [(layer.name, layer.blobs) for layer in net.layer]
    for layer in net.layers:
        if layer.HasField("layer"):  # V0: blobs sit on the inner layer
            entries.append((layer.layer.name, layer.layer.blobs))
        else:
            entries.append((layer.name, layer.blobs))
    for name, blobs in entries:
        if len(blobs):
            table[name] = [
                blob_to_array(blob, f"{path}, layer '{name}', blob {index}")
                for index, blob in enumerate(blobs)
            ]
    if not table and not (len(net.layer) or len(net.layers)):
        raise InputFileError(f"{path} holds no Caffe layers; is it a weights file?")
    return table


def _read_hdf5(path: Path) -> WeightTable:
    try:
        import h5py
    except ImportError:
        raise InputFileError(
            f"{path} is an HDF5 weights file; install zooforge's 'hdf5' extra (h5py) to read it"
        ) from None
    table: WeightTable = {}
    try:
        with h5py.File(path, "r") as handle:
            if "data" not in handle or not isinstance(handle["data"], h5py.Group):
                raise InputFileError(f"{path} is HDF5 but has no 'data' group of Caffe layer weights")
            group = handle["data"]
            for name in group:
                layer = group[name]
                if not isinstance(layer, h5py.Group):
                    raise InputFileError(f"{path}: data/{name} is not a group of blobs named 0, 1, ...")
                keys = list(layer.keys())
                if not all(key.isdigit() for key in keys) or sorted(map(int, keys)) != list(range(len(keys))):
                    raise InputFileError(f"{path}: the blobs of layer '{name}' are named {sorted(keys)}, not 0, 1, ...")
                blobs = []
                for key in sorted(keys, key=int):
                    dataset = layer[key]
                    if not isinstance(dataset, h5py.Dataset) or dataset.dtype.kind not in "fiu":
                        raise InputFileError(f"{path}: data/{name}/{key} is not a numeric dataset")
                    blobs.append(np.asarray(dataset, dtype=np.float32))
                if blobs:
                    table[name] = blobs
    except (OSError, ValueError, TypeError, KeyError) as exc:  # h5py's errors for a damaged file
        raise InputFileError(f"{path} is not a readable HDF5 weights file: {' '.join(str(exc).split())}") from None
    return table


def write_caffemodel(weights: CaffeNet | WeightTable, path: Path) -> None:
    """Write weights as a binary V2 ``.caffemodel`` that Caffe and OpenCV can read.

    ``weights`` is a ``CaffeNet`` (each layer with blobs is written with its name and type, the
    file named after the net) or a ``WeightTable`` (layers carry only their names, which is all
    Caffe and OpenCV match weights by). Blobs keep their shapes and are stored as float32. Large
    blobs are streamed straight from their arrays into the file: protobuf's repeated-float fields
    take several seconds per million values, the raw bytes no time at all. The file appears
    complete or not at all.
    """
    if isinstance(weights, CaffeNet):
        header = schema.NetParameter(name=weights.name).SerializeToString()
        entries = [(layer.name, layer.type, layer.blobs) for layer in weights.layers if layer.blobs]
    else:
        header = b""
        entries = [(name, "", blobs) for name, blobs in weights.items()]
    with atomic_writer(Path(path)) as stream:
        stream.write(header)
        for name, layer_type, blobs in entries:
            layer = schema.LayerParameter(name=name)
            if layer_type:
                layer.type = layer_type
            parts = [_blob_parts(blob) for blob in blobs]
            head = layer.SerializeToString()
            size = len(head) + sum(len(prefix) + data.nbytes for prefix, data in parts)
            stream.write(field_header(_NET_LAYER, size) + head)
            for prefix, data in parts:
                stream.write(prefix)
                stream.write(memoryview(data).cast("B"))  # (C-contiguous: any shape flattens)


_NET_LAYER = schema.NetParameter.DESCRIPTOR.fields_by_name["layer"].number
_LAYER_BLOBS = schema.LayerParameter.DESCRIPTOR.fields_by_name["blobs"].number
_BLOB_DATA = schema.BlobProto.DESCRIPTOR.fields_by_name["data"].number


def _blob_parts(array: np.ndarray) -> tuple[bytes, np.ndarray]:
    """The encoded ``LayerParameter.blobs`` entry of ``array`` up to its packed float values,
    and those values as little-endian float32 (the array itself when it already is one)."""
    data = np.asarray(array, dtype="<f4", order="C")  # (ascontiguousarray would make 0-d 1-d)
    blob = schema.BlobProto()
    blob.shape.SetInParent()  # present even for a 0-d blob, as Caffe writes it
    blob.shape.dim.extend(data.shape)
    head = blob.SerializeToString()
    if data.size:
        head += field_header(_BLOB_DATA, data.nbytes)
    return field_header(_LAYER_BLOBS, len(head) + data.nbytes) + head, data

