"""Versioned handlers: one class per Caffe2 operator, one ``version_N`` method per ONNX change.

``version_N`` emits the ONNX nodes for a Caffe2 operator as the ONNX schemas stood from opset
``N`` on. For a target opset the handler's highest ``N`` that does not exceed it is chosen; an
operator with no such version cannot be exported at that opset. ``emits`` names the ONNX
operators a handler may produce, so the registry's coverage can be checked against ONNX's schemas.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import ClassVar

from zooforge.converters.errors import ExportError

_VERSION = re.compile(r"^version_(\d+)$")


class Handler:
    """Base class; subclasses set ``caffe2_type`` and ``emits`` and define ``version_N`` methods."""

    caffe2_type: ClassVar[str] = ""
    emits: ClassVar[tuple[str, ...]] = ()
    refuses_below: ClassVar[int] = 0  # below this opset the chosen version only refuses (what it emits is absent)

    @classmethod
    def versions(cls) -> list[int]:
        found = {int(m.group(1)) for name in dir(cls) if (m := _VERSION.match(name))}
        return sorted(found)

    @classmethod
    def chosen_version(cls, opset: int) -> int:
        usable = [v for v in cls.versions() if v <= opset]
        if not usable:
            raise ExportError(
                f"Caffe2 operator {cls.caffe2_type} cannot be exported at opset {opset}; "
                f"its handler has versions {cls.versions()}"
            )
        return usable[-1]

    @classmethod
    def emitter(cls, opset: int) -> Callable[..., None]:
        return getattr(cls, f"version_{cls.chosen_version(opset)}")


def build_registry(*groups: Iterable[type[Handler]]) -> dict[str, type[Handler]]:
    """Index handler classes by Caffe2 operator type; a type handled twice is a programming error."""
    registry: dict[str, type[Handler]] = {}
    for group in groups:
        for handler in group:
            if handler.caffe2_type in registry:
                raise RuntimeError(f"two handlers for Caffe2 operator {handler.caffe2_type}")
            registry[handler.caffe2_type] = handler
    return registry
