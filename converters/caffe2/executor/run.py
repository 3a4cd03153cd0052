"""Run a NetDef, or predict the shape of every blob it makes."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

from zooforge.converters.caffe2.executor import detection, nn, tensor
from zooforge.converters.caffe2.executor.operator import DYNAMIC, MANY, Operator, Shape
from zooforge.converters.caffe2.netdef import Caffe2Model, op_args
from zooforge.converters.errors import NetDefError, ZooforgeError

OPERATORS: Mapping[str, Operator] = MappingProxyType({**nn.OPERATORS, **tensor.OPERATORS, **detection.OPERATORS})
_CONV_POOL = frozenset({"Conv", "ConvTranspose", "MaxPool", "AveragePool"})  # Caffe2's ConvPoolOpBase ops


def operator_for(op: Any, index: int) -> Operator:
    spec = OPERATORS.get(op.type)
    if spec is None:
        raise NetDefError(
            f"operator {index} ({op.type}, '{op.name or op.output[0]}') is not supported by the "
            f"executor; supported: {', '.join(sorted(OPERATORS))}"
        )
    for kind, count, (low, high) in (("inputs", len(op.input), spec.inputs), ("outputs", len(op.output), spec.outputs)):
        if not low <= count <= high:
            expected = f"{low}" if low == high else f"{low}..{high}" if high < MANY else f"at least {low}"
            raise NetDefError(
                f"operator {index} ({op.type} '{op.name}') has {count} {kind}; Caffe2's schema expects {expected}"
            )
    if op.type in _CONV_POOL and (op.name.startswith("Conv") or "Pool" in op.name) and not any(
        arg.name in ("kernel", "kernel_h", "kernels") for arg in op.arg
    ):
        raise NetDefError(
            f"operator {index} ({op.type} '{op.name}') has no kernel size: real Caffe2 refuses an operator "
            "named Conv... or ...Pool... without one, even with global_pooling"
        )
    return spec


def describe_operator(op: Any, index: int) -> str:
    """How refusals name an operator: its index, type, name and outputs."""
    return f"operator {index} ({op.type} '{op.name}' -> {list(op.output)})"


def infer_shapes(predict_net: Any, shapes: Mapping[str, Shape]) -> dict[str, Shape]:
    """Shapes of every blob, given the shapes of the external inputs (weights included)."""
    known: dict[str, Shape] = {name: tuple(int(d) for d in shape) for name, shape in shapes.items()}
    for index, op in enumerate(predict_net.op):
        spec = operator_for(op, index)
        missing = [name for name in op.input if name not in known]
        if missing:
            raise NetDefError(f"{describe_operator(op, index)} reads undefined blob(s) {missing}")
        dynamic = [name for name in op.input if DYNAMIC in known[name]]
        if dynamic and not spec.dynamic:
            raise NetDefError(f"{describe_operator(op, index)} reads {dynamic}, whose size depends on the data; "
                              f"the executor predicts {op.type}'s shapes only from known sizes")
        try:
            out = spec.shapes([known[name] for name in op.input], op_args(op), len(op.output))
        except ZooforgeError as exc:
            raise NetDefError(f"{describe_operator(op, index)}: {exc}") from None
        known.update(zip(op.output, out))
    return known


def run_net(model: Caffe2Model, feeds: Mapping[str, np.ndarray], keep_all: bool = False) -> dict[str, np.ndarray]:
    """Execute ``model`` on ``feeds``; return the external outputs (or every blob)."""
    workspace: dict[str, np.ndarray] = dict(model.weights)
    for name in model.inputs:
        if name not in feeds:
            raise NetDefError(f"no value fed for input '{name}'")
        workspace[name] = np.asarray(feeds[name], dtype=np.float32)
    for index, op in enumerate(model.predict_net.op):
        spec = operator_for(op, index)
        try:
            values = [workspace[name] for name in op.input]
        except KeyError as exc:
            raise NetDefError(f"{describe_operator(op, index)} reads undefined blob {exc}") from None
        args = op_args(op)
        try:  # the shape rule first: it refuses what real Caffe2 refuses (misfit weights, say)
            spec.shapes([value.shape for value in values], args, len(op.output))
            outputs = spec.kernel(values, args, len(op.output))
        except ZooforgeError as exc:
            raise NetDefError(f"{describe_operator(op, index)}: {exc}") from None
        workspace.update(zip(op.output, outputs))
    if keep_all:
        return workspace
    unwritten = [name for name in model.outputs if name not in workspace]
    if unwritten:
        raise NetDefError(f"external output(s) {unwritten} are never written")
    return {name: workspace[name] for name in model.outputs}
