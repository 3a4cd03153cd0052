"""The rule quantized variants are validated with: it holds across CPUs, unlike fp32's rtol/atol.

A quantized model's test data hold the outputs of the CPU that made them; another CPU's int8
kernels may round or saturate differently (see :mod:`zooforge.artifacts.quantization.cpu`), so
its outputs move by a few quantization steps. The rule, per output, with ``k`` = ``steps``:

* **dequantized** (the output is ``DequantizeLinear(q, scale)``, possibly through Reshape, Flatten,
  Identity, Squeeze, Unsqueeze, Transpose, MaxPool or Relu): ``|got - exp| <= (k + 1/64) * scale``
  (1/64 step for float32 rounding);
* **softmax of dequantized** (``Softmax(DequantizeLinear(q, scale))``, as zooforge's int8 and QDQ
  classifiers end): each logit moved by at most ``k`` steps multiplies every probability by a factor
  within ``exp(+-2 k scale)``, so ``|got - exp| <= (exp(2 k scale) - 1 + 1e-5) * |exp| + 1e-30``
  (1e-5 and 1e-30 for float32 rounding, denormals included: the bound is relative, so it holds
  for the smallest probabilities too);
* **quantized** (an int8/uint8 output): ``|got - exp| <= k`` in integer units;
* otherwise (no scale found) ``|got - exp| <= fallback * max|exp|`` over the output.

Classifier outputs (one axis of 2 or more classes beside the batch) must also keep their top-1
class on every test set: ``argmax(got)`` must be a class where ``exp`` reaches its maximum.
fp32 variants keep the strict ``rtol``/``atol`` rule of :mod:`zooforge.artifacts.validation.parity`.

A model counts as quantized when its lineage (``zooforge.settings``) names a quantization format,
or, for models from elsewhere, when it holds QuantizeLinear/DequantizeLinear, QLinear* or
integer (ConvInteger, MatMulInteger, QGemm) operators.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

__all__ = ["DEFAULT_STEPS", "OutputStep", "QuantizedRule", "bounds", "output_steps", "quantized_format",
           "steps_needed", "top1_problem"]

DEFAULT_STEPS = 3.0
DEFAULT_FALLBACK = 0.05
ROUNDING_STEPS = 1 / 64  # float32 rounding of dequantized values, in steps
SOFTMAX_RTOL = 1e-5
SOFTMAX_ATOL = 1e-30
_PASS_THROUGH = {"Identity", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Transpose", "MaxPool", "Relu"}
_QOPERATOR_OPS = {"QLinearConv", "QLinearMatMul", "QGemm", "QLinearAdd", "QLinearMul", "QLinearConcat",
                  "QLinearAveragePool", "QLinearGlobalAveragePool", "QLinearSigmoid", "QLinearLeakyRelu",
                  "QLinearSoftmax", "QAttention", "ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"}
_INTEGER = {onnx.TensorProto.UINT8, onnx.TensorProto.INT8, onnx.TensorProto.UINT16, onnx.TensorProto.INT16}


@dataclass(frozen=True)
class QuantizedRule:
    """``steps`` output quantization steps (see the module doc), ``fallback`` of the output's
    largest magnitude where no scale is known, and top-1 agreement for classifier outputs."""

    steps: float = DEFAULT_STEPS
    fallback: float = DEFAULT_FALLBACK

    def __post_init__(self) -> None:
        for label, value in (("steps", self.steps), ("fallback", self.fallback)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"quantized {label} must be a finite number >= 0, got {value!r}")

    def describe(self) -> str:
        return (f"quantized variants: within {self.steps:g} output quantization steps (a softmax of "
                f"dequantized logits within exp(2 x {self.steps:g} x scale) of each probability; "
                f"{self.fallback:g} x max|expected| where no scale is known) and the same top-1 class")

    def to_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "fallback": self.fallback, "top1": True, "rule": self.describe()}


@dataclass(frozen=True)
class OutputStep:
    """How one output relates to a quantization step: ``kind`` is "dequantized", "softmax",
    "quantized" or "unknown"; ``scale`` the step (1 for integer outputs, None when unknown)."""

    kind: str
    scale: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "scale": self.scale}


def quantized_format(model: onnx.ModelProto) -> str | None:
    """"int8"/"qdq" from the lineage, else "int8" (QOperator ops) or "qdq" (Q/DQ pairs), else None."""
    for prop in model.metadata_props:
        if prop.key == "zooforge.settings":
            try:
                quantization = json.loads(prop.value).get("quantization")
            except (ValueError, AttributeError):
                quantization = None
            if isinstance(quantization, dict) and quantization.get("format"):
                return str(quantization["format"])
    ops = {node.op_type for node in model.graph.node}
    if ops & _QOPERATOR_OPS:
        return "int8"
    if {"QuantizeLinear", "DequantizeLinear"} <= ops:
        return "qdq"
    return None


def _scalar(model: onnx.ModelProto, name: str) -> float | None:
    for tensor in model.graph.initializer:
        if tensor.name == name:
            value = numpy_helper.to_array(tensor)
            return float(value.reshape(-1)[0]) if value.size == 1 else None
    for node in model.graph.node:
        if node.op_type == "Constant" and name in node.output:
            for attr in node.attribute:
                if attr.name == "value":
                    value = numpy_helper.to_array(attr.t)
                    return float(value.reshape(-1)[0]) if value.size == 1 else None
    return None


def output_steps(model: onnx.ModelProto) -> dict[str, OutputStep]:
    """Each graph output's :class:`OutputStep`, found by walking back through pass-through ops."""
    producer = {out: node for node in model.graph.node for out in node.output}

    def dequantized_scale(name: str) -> float | None:
        node = producer.get(name)
        while node is not None and node.op_type in _PASS_THROUGH:
            node = producer.get(node.input[0])
        if node is not None and node.op_type == "DequantizeLinear" and len(node.input) > 1:
            return _scalar(model, node.input[1])
        return None

    steps = {}
    for output in model.graph.output:
        node = producer.get(output.name)
        scale = dequantized_scale(output.name)
        if output.type.tensor_type.elem_type in _INTEGER:
            steps[output.name] = OutputStep("quantized", 1.0)
        elif scale is not None:
            steps[output.name] = OutputStep("dequantized", scale)
        elif node is not None and node.op_type == "Softmax" and (scale := dequantized_scale(node.input[0])):
            steps[output.name] = OutputStep("softmax", scale)
        else:
            steps[output.name] = OutputStep("unknown")
    return steps


def bounds(step: OutputStep, rule: QuantizedRule, expected: np.ndarray) -> tuple[float, float, str]:
    """``(rtol, atol, description)``: the rule for one output as ``|got - exp| <= atol + rtol |exp|``."""
    k = rule.steps
    if step.kind in ("dequantized", "quantized"):
        unit = "" if step.kind == "quantized" else f" of {step.scale:.6g}"
        return 0.0, (k + ROUNDING_STEPS) * step.scale, f"{step.kind}: {k:g} steps{unit}"
    if step.kind == "softmax":
        return (math.expm1(2 * k * step.scale) + SOFTMAX_RTOL, SOFTMAX_ATOL,
                f"softmax of dequantized logits: {k:g} logit steps of {step.scale:.6g}")
    finite = expected[np.isfinite(expected)] if expected.dtype.kind == "f" else expected
    magnitude = float(np.abs(finite.astype(np.float64)).max()) if finite.size else 0.0
    return 0.0, rule.fallback * magnitude, f"no output scale: {rule.fallback:g} x max|expected|"


def steps_needed(step: OutputStep, expected: np.ndarray, got: np.ndarray) -> float | None:
    """The smallest ``steps`` the rule would need for ``got`` (None without a known scale)."""
    exp, out = np.asarray(expected, np.float64), np.asarray(got, np.float64)
    if step.scale is None or exp.size == 0:
        return None
    if step.kind == "softmax":
        slack = np.maximum(np.abs(out - exp) - SOFTMAX_ATOL, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.maximum(np.where(slack > 0, slack / np.abs(exp), 0.0) - SOFTMAX_RTOL, 0.0)
        return float(np.log1p(ratio).max() / (2 * step.scale))
    return float(max(np.abs(out - exp).max() / step.scale - ROUNDING_STEPS, 0.0))


def _class_axis(shape: tuple[int, ...]) -> int | None:
    """The one non-batch axis of 2 or more classes, e.g. [N, 1000] or [N, 1000, 1, 1]; else None."""
    if len(shape) < 2:
        return None
    wide = [axis for axis in range(1, len(shape)) if shape[axis] > 1]
    return wide[0] if len(wide) == 1 else None


def top1_problem(expected: np.ndarray, got: np.ndarray) -> str | None:
    """Why ``got`` loses a classifier's top-1 class (ties in ``expected`` allow any tied class)."""
    axis = _class_axis(tuple(expected.shape))
    if axis is None or expected.dtype.kind not in "fiu" or expected.shape != got.shape:
        return None
    exp = np.moveaxis(expected.astype(np.float64), axis, -1).reshape(-1, expected.shape[axis])
    out = np.moveaxis(got.astype(np.float64), axis, -1).reshape(-1, expected.shape[axis])
    for row, (e, g) in enumerate(zip(exp, out)):
        chosen = int(np.argmax(g))
        if e[chosen] != e.max() or not np.isfinite(g[chosen]):
            return (f"top-1 class differs in row {row}: got class {chosen} where the test data's top class is "
                    f"{int(np.argmax(e))}")
    return None
