"""The handler registry, assembled explicitly from the handler modules."""

from __future__ import annotations

from types import MappingProxyType

from zooforge.converters.onnx.handlers import detection, elementwise, nn, tensor
from zooforge.converters.onnx.handlers.base import Handler, build_registry

REGISTRY = MappingProxyType(build_registry(nn.HANDLERS, elementwise.HANDLERS, tensor.HANDLERS,
                                           detection.HANDLERS))  # detection: the wt-detout block

__all__ = ["REGISTRY", "Handler"]
