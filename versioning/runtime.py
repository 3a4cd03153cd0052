"""Run an ONNX model on the best runtime for its opset.

onnxruntime (CPU) runs opset >= 7; it refuses older models. Below that, and whenever
onnxruntime cannot load a model, the model runs on ``onnx.reference.ReferenceEvaluator`` with
zooforge's legacy and corrected kernels (:mod:`zooforge.versioning.legacy_ops`). Those kernels compute
as zooforge's Caffe2 executor does (im2col, the same float32 products), so a check on them alone
proves little: ``onnxruntime-lifted`` runs an opset 3-6 model on onnxruntime after lifting it in
memory to opset 7 with zooforge's own opset converter, a runtime that shares no kernel code with
the executor.
"""

from __future__ import annotations

import os
from typing import Union

import numpy as np
import onnx
from onnx.reference import ReferenceEvaluator

from zooforge.versioning.errors import ZooforgeError
from zooforge.versioning.legacy_ops import kernels_for_opset

__all__ = [
    "ONNXRUNTIME",
    "ONNXRUNTIME_LIFTED",
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
ONNXRUNTIME_LIFTED = "onnxruntime-lifted"
REFERENCE = "reference"
RUNTIMES = (ONNXRUNTIME, ONNXRUNTIME_LIFTED, REFERENCE)
#: onnxruntime has no kernels for the operator versions of opsets below this.
ORT_MIN_OPSET = 7

RUNTIME_DESCRIPTIONS = {
    ONNXRUNTIME: "onnxruntime (CPU)",
    ONNXRUNTIME_LIFTED: f"onnxruntime (CPU) on the model lifted in memory to opset {ORT_MIN_OPSET} by zooforge's "
                        "opset converter (onnxruntime has no kernels for older opsets)",
    REFERENCE: "onnx's reference evaluator, with zooforge's kernels for legacy operator versions",
}

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


# Quantized models: onnxruntime's contrib operators (com.microsoft.QGemm, ...) and the
# quantization operators, which onnx's reference evaluator implements only from later opsets.
_QUANTIZED_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul",
                            "QLinearAdd", "QLinearMul", "ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"})


def _onnxruntime_only(proto: onnx.ModelProto) -> bool:
    return any(node.domain not in ("", "ai.onnx") or node.op_type in _QUANTIZED_OPS for node in proto.graph.node)


def available_runtimes(model: ModelLike) -> list[str]:
    """Runtimes that can run ``model``, best first: onnxruntime from opset 7, the reference
    evaluator (with zooforge's legacy kernels) for plain float models of any opset, and below
    opset 7 onnxruntime on the model lifted to opset 7."""
    proto = model if isinstance(model, onnx.ModelProto) else _load(model)[0]
    legacy = model_opset(proto) < ORT_MIN_OPSET
    ort = _ort_installed()
    if _onnxruntime_only(proto):
        return [ONNXRUNTIME] if ort and not legacy else []
    if legacy:
        return [REFERENCE, ONNXRUNTIME_LIFTED] if ort else [REFERENCE]
    return [ONNXRUNTIME, REFERENCE] if ort else [REFERENCE]


class Session:
    """One model opened on one runtime, to run on many inputs.

    onnxruntime reads a model given by path itself, so its weights are never copied through
    Python; the reference evaluator works on the parsed model. Open one session per (model,
    runtime) and drop it when done: nothing is cached between sessions.
    """

    def __init__(self, runtime: str, model: ModelLike) -> None:
        if runtime not in RUNTIMES:
            raise UnknownRuntimeError(
                f"unknown runtime {runtime!r}: choose one of {', '.join(RUNTIMES)} or 'auto'"
            )
        self.runtime = runtime
        self.lifted_from: int | None = None
        proto = model if isinstance(model, onnx.ModelProto) else None
        if runtime == ONNXRUNTIME_LIFTED:
            proto = proto if proto is not None else _load(model)[0]
            self.lifted_from = model_opset(proto)
            model = proto = _lift(proto)
            runtime = ONNXRUNTIME
        if runtime == ONNXRUNTIME:
            header = proto if proto is not None else _load(model)[0]
            opset = model_opset(header)
            if opset < ORT_MIN_OPSET:
                raise RuntimeUnavailableError(
                    f"onnxruntime cannot run opset {opset} models (it needs opset >= {ORT_MIN_OPSET}); "
                    f"use the {REFERENCE!r} runtime"
                )
            if not _ort_installed():
                raise RuntimeUnavailableError("onnxruntime is not installed; use the 'reference' runtime")
            import onnxruntime as ort  # noqa: PLC0415

            options = ort.SessionOptions()
            options.log_severity_level = 3
            source = str(model) if isinstance(model, (str, os.PathLike)) else _as_bytes(model)
            self._ort = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
            self._names = [o.name for o in self._ort.get_outputs()]
        else:
            proto = proto if proto is not None else _load(model)[0]
            self._ref = ReferenceEvaluator(proto, new_ops=list(kernels_for_opset(model_opset(proto))))
            self._names = _output_names(proto)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.runtime in (ONNXRUNTIME, ONNXRUNTIME_LIFTED):
            return dict(zip(self._names, self._ort.run(self._names, feeds)))
        return {n: np.asarray(v) for n, v in zip(self._names, self._ref.run(self._names, feeds))}


def _lift(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The model at opset 7 (zooforge's converter), for onnxruntime; refusals say why."""
    from zooforge.versioning.convert import convert_opset  # noqa: PLC0415

    opset = model_opset(proto)
    if opset >= ORT_MIN_OPSET:
        raise RuntimeUnavailableError(f"an opset {opset} model needs no lift; use the {ONNXRUNTIME!r} runtime")
    try:
        return convert_opset(proto, ORT_MIN_OPSET)
    except ZooforgeError as exc:
        raise RuntimeUnavailableError(f"the model cannot be lifted from opset {opset} to {ORT_MIN_OPSET}: {exc}") from None


def _as_bytes(model: ModelLike) -> bytes:
    if isinstance(model, onnx.ModelProto):
        return model.SerializeToString()
    return bytes(model)


def _output_names(proto: onnx.ModelProto) -> list[str]:
    return [o.name for o in proto.graph.output]


def run_with(runtime: str, model: ModelLike, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run ``model`` on the named runtime ("onnxruntime", "reference", or "auto")."""
    if runtime == "auto":
        return run_model(model, feeds)
    if runtime not in RUNTIMES:
        raise UnknownRuntimeError(
            f"unknown runtime {runtime!r}: choose one of {', '.join(RUNTIMES)} or 'auto'"
        )
    return Session(runtime, model).run(feeds)


def open_best(model: ModelLike) -> Session:
    """A session on onnxruntime for opset >= 7 when it loads the model, else the reference."""
    if ONNXRUNTIME in available_runtimes(model):
        try:
            return Session(ONNXRUNTIME, model)
        except Exception:  # noqa: BLE001 - onnxruntime refused the model: use the reference
            pass
    return Session(REFERENCE, model)


def select_runtime(model: ModelLike) -> str:
    """The runtime ``run_model(model, feeds)`` uses: onnxruntime for opset >= 7 when it loads
    the model, else the reference evaluator."""
    return open_best(model).runtime


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
    return open_best(model).run(feeds)
