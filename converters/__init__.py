"""zooforge's conversion chain: Caffe -> Caffe2 NetDef -> ONNX."""

from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("zooforge")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"
