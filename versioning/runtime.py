"""Run an ONNX model on the best runtime for its opset.

onnxruntime (CPU) runs opset >= 7; it refuses older models. Below that, and whenever
onnxruntime cannot load a model, the model runs on ``onnx.reference.ReferenceEvaluator`` with
zooforge's legacy and corrected kernels (:mod:`versioning.legacy_ops`).
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from typing import Any, Union

import numpy as np
import onnx
from onnx.reference import ReferenceEvaluator

from versioning.errors import ZooforgeError
from versioning.legacy_ops import kernels_for_opset

__all__ = [
    "ONNXRUNTIME",
    "REFERENCE",
    "RUNTIMES",
    "RuntimeUnavailableError",
    "UnknownRuntimeError",
    "available_runtimes",
    "model_opset",
    "run_model",
    "run_with",
    "select_runtime",
]

ONNXRUNTIME = "onnxruntime"
REFERENCE = "reference"
RUNTIMES = (ONNXRUNTIME, REFERENCE)
#: onnxruntime has no kernels for the operator versions of opsets below this.
ORT_MIN_OPSET = 7

ModelLike = Union[onnx.ModelProto, bytes, str, "os.PathLike[str]"]


class UnknownRuntimeError(ZooforgeError):
    """A runtime name zooforge does not know."""


class RuntimeUnavailableError(ZooforgeError):
    """The requested runtime is not installed or cannot run this model."""


def _load(model: ModelLike) -> tuple[onnx.ModelProto, bytes]:
    if isinstance(model, onnx.ModelProto):
        return model, model.SerializeToString()
    if isinstance(model, (bytes, bytearray, memoryview)):
        data = bytes(model)
        return onnx.load_from_string(data), data
    if isinstance(model, (str, os.PathLike)):
        with open(model, "rb") as fh:
            data = fh.read()
        return onnx.load_from_string(data), data
    raise TypeError(f"expected an onnx.ModelProto, bytes or a path, got {type(model).__name__}")


def model_opset(model: onnx.ModelProto) -> int:
    """The model's default-domain (ai.onnx) opset."""
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return imp.version
    raise ZooforgeError("the model imports no default-domain (ai.onnx) opset")


def _ort_installed() -> bool:
    try:
        import onnxruntime  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


def available_runtimes(model: ModelLike) -> list[str]:
    """Runtimes that can run ``model``, best first."""
    proto = model if isinstance(model, onnx.ModelProto) else _load(model)[0]
    if model_opset(proto) >= ORT_MIN_OPSET and _ort_installed():
        return [ONNXRUNTIME, REFERENCE]
    return [REFERENCE]


# A few recent sessions, keyed by (runtime, sha256 of the serialized model). Sessions are
# expensive to build (graph optimisation, weight copies) and the same model is often run on
# several test sets in a row.
_CACHE_SIZE = 2
_sessions: OrderedDict[tuple[str, str], Any] = OrderedDict()


def _session(runtime: str, proto: onnx.ModelProto, data: bytes) -> Any:
    key = (runtime, hashlib.sha256(data).hexdigest())
    if key in _sessions:
        _sessions.move_to_end(key)
        return _sessions[key]
    if runtime == ONNXRUNTIME:
        import onnxruntime as ort  # noqa: PLC0415

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    else:
        sess = ReferenceEvaluator(proto, new_ops=list(kernels_for_opset(model_opset(proto))))
    _sessions[key] = sess
    while len(_sessions) > _CACHE_SIZE:
        _sessions.popitem(last=False)
    return sess


def _output_names(proto: onnx.ModelProto) -> list[str]:
    return [o.name for o in proto.graph.output]


def _run_ort(proto: onnx.ModelProto, data: bytes, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    sess = _session(ONNXRUNTIME, proto, data)
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


def _run_reference(proto: onnx.ModelProto, data: bytes, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    sess = _session(REFERENCE, proto, data)
    names = _output_names(proto)
    return {n: np.asarray(v) for n, v in zip(names, sess.run(names, feeds))}


def run_with(runtime: str, model: ModelLike, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run ``model`` on the named runtime ("onnxruntime", "reference", or "auto")."""
    if runtime == "auto":
        return run_model(model, feeds)
    if runtime not in RUNTIMES:
        raise UnknownRuntimeError(
            f"unknown runtime {runtime!r}: choose one of {', '.join(RUNTIMES)} or 'auto'"
        )
    proto, data = _load(model)
    if runtime == ONNXRUNTIME:
        opset = model_opset(proto)
        if opset < ORT_MIN_OPSET:
            raise RuntimeUnavailableError(
                f"onnxruntime cannot run opset {opset} models (it needs opset >= {ORT_MIN_OPSET}); "
                f"use the {REFERENCE!r} runtime"
            )
        if not _ort_installed():
            raise RuntimeUnavailableError("onnxruntime is not installed; use the 'reference' runtime")
        return _run_ort(proto, data, feeds)
    return _run_reference(proto, data, feeds)


def _select(proto: onnx.ModelProto, data: bytes) -> str:
    if ONNXRUNTIME in available_runtimes(proto):
        try:
            _session(ONNXRUNTIME, proto, data)
        except Exception:  # noqa: BLE001 - onnxruntime refused the model: use the reference
            return REFERENCE
        return ONNXRUNTIME
    return REFERENCE


def select_runtime(model: ModelLike) -> str:
    """The runtime ``run_model(model, feeds)`` uses: onnxruntime for opset >= 7 when it loads
    the model, else the reference evaluator."""
    return _select(*_load(model))


def run_model(
    model: ModelLike, feeds: dict[str, np.ndarray], runtime: str = "auto"
) -> dict[str, np.ndarray]:
    """Run ``model`` on ``feeds`` and return every graph output by name.

    ``runtime="auto"`` picks onnxruntime (CPU) for opset >= 7 when it loads the model, and the
    reference evaluator with zooforge's legacy kernels otherwise; "onnxruntime" or
    "reference" force one (see :func:`run_with`).
    """
    if runtime != "auto":
        return run_with(runtime, model, feeds)
    proto, data = _load(model)
    if _select(proto, data) == ONNXRUNTIME:
        return _run_ort(proto, data, feeds)
    return _run_reference(proto, data, feeds)
