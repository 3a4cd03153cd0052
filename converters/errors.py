"""User-facing errors.

Every error that a command turns into an exit code derives from ``ZooforgeError`` and carries one
plain sentence that names the file, layer or node at fault. Anything else escaping the library is a
bug and is allowed to surface with its traceback.
"""

from __future__ import annotations

from zooforge.versioning.errors import OpsetError, ZooforgeError

__all__ = [
    "CaffeModelError", "ExportError", "InputFileError", "NetDefError", "OpsetError", "OutputFileError",
    "UnsupportedLayerError", "ZooforgeError",
]


class InputFileError(ZooforgeError):
    """A file is missing, unreadable, or not in the format expected."""


class OutputFileError(ZooforgeError):
    """A file or folder could not be written (disk full, read-only file system, permissions, ...)."""

    def __init__(self, path, exc: OSError) -> None:  # noqa: ANN001
        super().__init__(f"cannot write {path}: {exc.strerror or exc}")


class CaffeModelError(ZooforgeError):
    """A Caffe net definition or weights file is inconsistent or unsupported."""


class UnsupportedLayerError(CaffeModelError):
    """A Caffe layer type (or an option of it) that zooforge cannot convert."""


class NetDefError(ZooforgeError):
    """A Caffe2 NetDef is malformed or uses an operator zooforge does not know."""


class ExportError(ZooforgeError):
    """An operator cannot be expressed at the requested ONNX opset."""
