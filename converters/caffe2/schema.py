"""Caffe2 message classes, built from our own ``proto/caffe2.proto`` (field numbers as caffe2's)."""

from __future__ import annotations

from pathlib import Path

from zooforge.converters._protos import message_class

_DESC = Path(__file__).with_name("proto") / "caffe2.desc"

NetDef = message_class(_DESC, "caffe2.NetDef")
OperatorDef = message_class(_DESC, "caffe2.OperatorDef")
Argument = message_class(_DESC, "caffe2.Argument")
TensorProto = message_class(_DESC, "caffe2.TensorProto")
