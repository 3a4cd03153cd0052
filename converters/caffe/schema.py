"""Caffe message classes, built from our own ``proto/caffe.proto`` (field numbers as BVLC's)."""

from __future__ import annotations

from pathlib import Path

from zooforge.converters._protos import message_class

_DESC = Path(__file__).with_name("proto") / "caffe.desc"

NetParameter = message_class(_DESC, "caffe.NetParameter")
LayerParameter = message_class(_DESC, "caffe.LayerParameter")
V1LayerParameter = message_class(_DESC, "caffe.V1LayerParameter")
V0LayerParameter = message_class(_DESC, "caffe.V0LayerParameter")
BlobProto = message_class(_DESC, "caffe.BlobProto")
BlobShape = message_class(_DESC, "caffe.BlobShape")
NetState = message_class(_DESC, "caffe.NetState")
