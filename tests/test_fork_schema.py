"""zooforge's fork fields carry the field numbers of OpenCV's caffe.proto, read from the schema that
the installed OpenCV itself was built with (the serialized descriptor of ``opencv-caffe.proto``
embedded in its library) -- the independent record of the forks' union the issue asks us to follow.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from zooforge.converters.caffe import schema

# (message, fields that must match OpenCV's by name, number and label; None: every field of OpenCV's)
FORK_MESSAGES = {
    "PermuteParameter": None,
    "NormalizeBBoxParameter": None,
    "PriorBoxParameter": None,
    "NonMaximumSuppressionParameter": None,
    "DetectionOutputParameter": None,
    "LayerParameter": ("detection_output_param", "permute_param", "norm_param", "prior_box_param"),
    "PoolingParameter": ("ceil_mode",),
}


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _embedded_file_descriptor(data: bytes, name: bytes) -> descriptor_pb2.FileDescriptorProto | None:
    """The FileDescriptorProto serialized in ``data`` whose first field is ``name``: walk its top-level
    fields until one that a FileDescriptorProto cannot hold, then parse exactly that span."""
    start = data.find(b"\n" + bytes([len(name)]) + name)
    if start < 0:
        return None
    known = {f.number for f in descriptor_pb2.FileDescriptorProto.DESCRIPTOR.fields}
    pos = start
    while pos < len(data):
        tag, after = _read_varint(data, pos)
        field, wire = tag >> 3, tag & 7
        if field not in known or wire not in (0, 2):
            break
        value, after = _read_varint(data, after)
        pos = after + (value if wire == 2 else 0)
    proto = descriptor_pb2.FileDescriptorProto()
    proto.ParseFromString(data[start:pos])
    return proto


@pytest.fixture(scope="module")
def opencv_schema() -> dict[str, descriptor_pb2.DescriptorProto]:
    cv2 = pytest.importorskip("cv2")
    libraries = sorted(Path(os.path.dirname(cv2.__file__)).rglob("*.so*"))
    for library in libraries:
        proto = _embedded_file_descriptor(library.read_bytes(), b"opencv-caffe.proto")
        if proto is not None:
            return {message.name: message for message in proto.message_type}
    pytest.skip(f"OpenCV {cv2.__version__} embeds no opencv-caffe.proto descriptor (no Caffe importer)")


def _our_schema() -> dict[str, descriptor_pb2.DescriptorProto]:
    proto = descriptor_pb2.FileDescriptorProto.FromString(schema.NetParameter.DESCRIPTOR.file.serialized_pb)
    return {message.name: message for message in proto.message_type}


@pytest.mark.parametrize("message", list(FORK_MESSAGES))
def test_fork_fields_have_opencvs_numbers(opencv_schema, message):
    theirs = {f.name: (f.number, f.label) for f in opencv_schema[message].field}
    ours = {f.name: (f.number, f.label) for f in _our_schema()[message].field}
    names = FORK_MESSAGES[message] or tuple(theirs)
    assert {name: ours.get(name) for name in names} == {name: theirs[name] for name in names}


def test_the_reader_finds_a_known_field():
    """The descriptor walk on a schema whose numbers are known (ours): guards the walker itself."""
    blob = b"junk" + schema.NetParameter.DESCRIPTOR.file.serialized_pb + b"\xff\xff trailing junk"
    name = schema.NetParameter.DESCRIPTOR.file.name.encode()
    proto = _embedded_file_descriptor(blob, name)
    layer = {m.name: m for m in proto.message_type}["LayerParameter"]
    assert {f.name: f.number for f in layer.field}["convolution_param"] == 106
