"""A sweep over ``zooforge.versioning.adapters``: every ``Change`` whose ``up`` or ``down`` rewrites a node.

Each case is a tiny ONNX model whose attributes and inputs make the rewrite matter (negative axes,
unequal splits, partial Slice axes, Clip bounds, Pad values, Gemm alpha/beta/transB, ...). It is
moved across the boundary (and further) by ``convert_opset``; the result must pass the ONNX checker
at its new opset and compute the source's outputs on seeded random inputs. Expected values come
from onnxruntime on the source when it is at opset >= 7 (most sources are, and move down); below 7
from onnx's ReferenceEvaluator with zooforge's legacy kernels (checked against onnxruntime in
tests/test_legacy_kernels.py), and for opset-1 sources from NumPy. Attribute facts that outputs
cannot show (``consumed_inputs``, ``is_test``, ``broadcast``, ``paddings``) are asserted directly.
Every ``StepRefused`` reason must reach the user as an ``OpsetError`` naming node and step.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import NodeProto, TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from zooforge.versioning import latest_opset
from zooforge.versioning.adapters import _same, changes
from zooforge.versioning.convert import convert_opset, model_opset
from zooforge.versioning.errors import OpsetError
from zooforge.versioning.legacy_ops import kernels_for_opset
from zooforge.versioning.opsets import opset_info

from test_opsets import assert_documented_ir  # the IR per opset, hand-copied from onnx's docs/Versioning.md

N = helper.make_node
F32 = np.float32
Shape = Sequence[int | str | None] | None  # a declared input shape; None: unknown rank


# -- models and runtimes -----------------------------------------------------------------------

def data(shape: Sequence[int], seed: int = 0, positive: bool = False, scale: float = 1.0) -> np.ndarray:
    """Seeded float32 values; ``positive`` keeps them in [0.1, ...) (Log, Sqrt, Pow bases)."""
    values = (np.random.default_rng(seed).standard_normal(tuple(shape)) * scale).astype(F32)
    return np.abs(values) + F32(0.1) if positive else values


def ir_of(opset: int) -> int:
    return opset_info(opset).ir_version if opset >= 3 else 3


def build(nodes: Sequence[NodeProto], opset: int, inputs: Mapping[str, np.ndarray | tuple[int, Shape]],
          inits: Mapping[str, np.ndarray] | None = None, outputs: Sequence[str] = ("y",),
          typed: Sequence[np.ndarray] | None = None) -> onnx.ModelProto:
    """A model at ``opset``; inputs are arrays (typed from them) or (elem type, shape) pairs; outputs
    are typed from ``typed`` arrays, else left untyped. IR <= 3 lists initializers as inputs."""
    tensors = [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()]
    graph_inputs = []
    for name, value in inputs.items():
        if isinstance(value, np.ndarray):
            graph_inputs.append(helper.make_tensor_value_info(
                name, helper.np_dtype_to_tensor_dtype(value.dtype), value.shape))
        else:
            graph_inputs.append(helper.make_tensor_value_info(name, value[0], value[1]))
    if ir_of(opset) <= 3:
        graph_inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in tensors]
    if typed is None:
        graph_outputs = [helper.make_empty_tensor_value_info(o) for o in outputs]
    else:
        graph_outputs = [helper.make_tensor_value_info(o, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
                         for o, a in zip(outputs, typed, strict=True)]
    graph = helper.make_graph(list(nodes), "sweep", graph_inputs, graph_outputs, initializer=tensors)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_of(opset)
    return model


def run(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """onnxruntime from opset 7; below, the reference evaluator with zooforge's legacy kernels."""
    opset = model_opset(model)
    if opset >= 7:
        session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run(None, dict(feeds))
    evaluator = ReferenceEvaluator(model, new_ops=list(kernels_for_opset(opset)))
    return [np.asarray(v) for v in evaluator.run(None, dict(feeds))]


def assert_same(got: Sequence[np.ndarray], expected: Sequence[np.ndarray]) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        g, e = np.asarray(g), np.asarray(e)
        assert g.shape == e.shape and g.dtype == e.dtype, (g.shape, g.dtype, e.shape, e.dtype)
        if np.issubdtype(e.dtype, np.floating):
            np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)
        else:
            np.testing.assert_array_equal(g, e)


def node_of(model: onnx.ModelProto, op: str) -> NodeProto:
    (node,) = [n for n in model.graph.node if n.op_type == op]
    return node


def attrs(model: onnx.ModelProto, op: str) -> dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in node_of(model, op).attribute}


def const(model: onnx.ModelProto, name: str) -> np.ndarray:
    (tensor,) = [t for t in model.graph.initializer if t.name == name]
    return numpy_helper.to_array(tensor)


def opset_imports(model: onnx.ModelProto) -> list[int]:
    return [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]


# -- value cases -------------------------------------------------------------------------------

Check = Callable[[onnx.ModelProto, int], "bool | None"]  # asserts, or returns whether the facts hold


@dataclass
class Case:
    name: str
    opset: int
    nodes: list[NodeProto]
    feeds: dict[str, np.ndarray]
    paths: tuple[tuple[int, ...], ...]  # each: the stops of one chain of conversions
    inits: dict[str, np.ndarray] = field(default_factory=dict)
    outputs: tuple[str, ...] = ("y",)
    check: Check | None = None  # attribute facts of the result at the path's last stop
    expect: Callable[[dict[str, np.ndarray]], list[np.ndarray]] | None = None  # NumPy, for opset 1

    def source(self) -> tuple[onnx.ModelProto, list[np.ndarray]]:
        """The model with typed outputs, and its outputs (the expected values)."""
        if self.expect is not None:
            expected = self.expect(self.feeds)
        else:
            expected = run(build(self.nodes, self.opset, self.feeds, self.inits, self.outputs), self.feeds)
        return build(self.nodes, self.opset, self.feeds, self.inits, self.outputs, typed=expected), expected


CASES: list[Case] = []


def case(*args: Any, **kwargs: Any) -> None:
    CASES.append(Case(*args, **kwargs))


X4 = data((2, 3, 4, 5))

# consumed_inputs (dropped going up to 6) ----------------------------------------------------------
UNARY = {"Relu": {}, "LeakyRelu": {"alpha": 0.3}, "Sigmoid": {}, "Tanh": {}, "Elu": {"alpha": 0.7}, "Abs": {},
         "Exp": {}, "Log": {}, "Sqrt": {}}


def _check_unary(op: str, kept: dict[str, float]) -> Check:
    def check(model: onnx.ModelProto, target: int) -> None:
        found = attrs(model, op)
        assert "consumed_inputs" not in found
        assert found == pytest.approx(kept)
    return check


for _op, _attrs in UNARY.items():
    case(f"{_op}-consumed", 5, [N(_op, ["x"], ["y"], consumed_inputs=[0], **_attrs)],
         {"x": data((2, 3, 4, 5), 1, positive=_op in ("Log", "Sqrt"))}, ((6,), (13,)), check=_check_unary(_op, _attrs))


def _no_consumed(op: str) -> Check:
    def check(model: onnx.ModelProto, target: int) -> None:
        assert "consumed_inputs" not in attrs(model, op)
    return check


for _op in ("Sum", "Max"):
    case(f"{_op}-consumed", 5, [N(_op, ["a", "b", "c"], ["y"], consumed_inputs=[0, 0, 0])],
         {"a": data((2, 3), 1), "b": data((2, 3), 2), "c": data((2, 3), 3)}, ((6,), (8,), (13,)),
         check=_no_consumed(_op))

# PRelu: per-channel slope before 7, NumPy broadcasting from 7 ---------------------------------------
SLOPE3 = np.array([0.1, -0.2, 0.3], F32)


def _slope_shape(shape: tuple[int, ...]) -> Check:
    def check(model: onnx.ModelProto, target: int) -> None:
        prelu = node_of(model, "PRelu")
        assert "consumed_inputs" not in attrs(model, "PRelu") or target < 6
        assert const(model, prelu.input[1]).shape == shape
    return check


case("PRelu-consumed-per-channel", 5, [N("PRelu", ["x", "s"], ["y"], consumed_inputs=[0, 0])], {"x": X4},
     ((6,), (7,), (9,)), {"s": SLOPE3}, check=lambda m, t: _slope_shape((3,) if t < 7 else (3, 1, 1))(m, t))
case("PRelu-shared-slope", 6, [N("PRelu", ["x", "s"], ["y"])], {"x": X4}, ((7,), (16,)),
     {"s": np.array([0.25], F32)}, check=_slope_shape((1,)))
case("PRelu-rank2", 6, [N("PRelu", ["x", "s"], ["y"])], {"x": data((4, 3), 2)}, ((7,),), {"s": SLOPE3},
     check=_slope_shape((3,)))
case("PRelu-computed-slope", 6, [N("PRelu", ["x", "s"], ["y"])], {"x": X4, "s": SLOPE3}, ((7,), (9,)))
case("PRelu-down", 9, [N("PRelu", ["x", "s"], ["y"])], {"x": X4}, ((7,), (6,), (5,), (3,)),
     {"s": SLOPE3.reshape(3, 1, 1)}, check=lambda m, t: _slope_shape((3, 1, 1) if t >= 7 else (3,))(m, t))
case("PRelu-down-shared", 16, [N("PRelu", ["x", "s"], ["y"])], {"x": X4}, ((6,), (5,)),
     {"s": np.full((1, 1, 1), 0.25, F32)}, check=_slope_shape((1,)))
case("PRelu-down-computed", 9, [N("PRelu", ["x", "s"], ["y"])], {"x": X4, "s": SLOPE3.reshape(3, 1, 1)},
     ((6,), (4,)))

# legacy broadcasting (broadcast/axis before 7) -----------------------------------------------------
BINARY = ("Add", "Sub", "Mul", "Div")


def _broadcast_up(b_shape: tuple[int, ...]) -> Check:
    def check(model: onnx.ModelProto, target: int) -> None:
        node = next(n for n in model.graph.node if n.op_type in (*BINARY, "Pow"))
        found = {a.name for a in node.attribute}
        assert not found & {"broadcast", "axis", "consumed_inputs"}, found
        if b_shape:
            assert const(model, node.input[1]).shape == b_shape
    return check


def _consumed_then_broadcast_up(op: str, axis: int, b_shape: tuple[int, ...]) -> Check:
    """At 6 only consumed_inputs is gone; from 7 the legacy broadcast is NumPy's."""
    def check(model: onnx.ModelProto, target: int) -> None:
        if target == 6:
            assert attrs(model, op) == {"broadcast": 1, "axis": axis}
        else:
            _broadcast_up(b_shape)(model, target)
    return check


for _op in BINARY:
    case(f"{_op}-consumed-axis1-up", 5, [N(_op, ["x", "b"], ["y"], broadcast=1, axis=1, consumed_inputs=[0, 0])],
         {"x": X4}, ((6,), (7,), (14,)), {"b": np.array([0.5, -1.5, 2.0], F32)},
         check=_consumed_then_broadcast_up(_op, 1, (3, 1, 1)))
case("Add-axis0-up", 6, [N("Add", ["x", "b"], ["y"], broadcast=1, axis=0)], {"x": X4}, ((7,),),
     {"b": data((2, 3), 3)}, check=_broadcast_up((2, 3, 1, 1)))
case("Mul-negative-axis-up", 6, [N("Mul", ["x", "b"], ["y"], broadcast=1, axis=-3)], {"x": X4}, ((7,),),
     {"b": data((3, 4), 4)}, check=_broadcast_up((3, 4, 1)))
case("Sub-suffix-up", 6, [N("Sub", ["x", "b"], ["y"], broadcast=1)], {"x": X4}, ((7,),),
     {"b": data((4, 5), 5)}, check=_broadcast_up((4, 5)))
case("Div-computed-axis1-up", 6, [N("Div", ["x", "b"], ["y"], broadcast=1, axis=1)],
     {"x": X4, "b": np.array([0.5, -1.5, 2.0], F32)}, ((7,), (13,)))
case("Pow-axis1-up", 6, [N("Pow", ["x", "e"], ["y"], broadcast=1, axis=1)], {"x": data((2, 3, 4, 5), 6, True)},
     ((7,), (15,)), {"e": np.array([2.0, 0.5, 3.0], F32)}, check=_broadcast_up((3, 1, 1)))


def _broadcast_down(axis: int | None, b_shape: tuple[int, ...] | None, broadcast: int | None = 1) -> Check:
    """Below 7: ``broadcast``/``axis`` as given, and B (when an initializer) of shape ``b_shape``."""
    def check(model: onnx.ModelProto, target: int) -> None:
        node = next(n for n in model.graph.node if n.op_type in (*BINARY, "Pow"))
        found = attrs(model, node.op_type)
        if target >= 7:
            assert "broadcast" not in found and "axis" not in found
            return
        assert found.get("broadcast") == broadcast
        assert found.get("axis") == axis
        if b_shape is not None and node.input[1] in {t.name for t in model.graph.initializer}:
            assert const(model, node.input[1]).shape == b_shape
    return check


case("Add-channel-down", 14, [N("Add", ["x", "b"], ["y"])], {"x": X4}, ((7,), (6,), (3,)),
     {"b": np.array([0.5, -1.5, 2.0], F32).reshape(3, 1, 1)}, check=_broadcast_down(1, (3,)))
case("Sub-height-down", 14, [N("Sub", ["x", "b"], ["y"])], {"x": X4}, ((6,),), {"b": data((4, 1), 7)},
     check=_broadcast_down(2, (4,)))
case("Mul-same-shape-up", 6, [N("Mul", ["x", "b"], ["y"])], {"x": X4}, ((7,),), {"b": data((2, 3, 4, 5), 8)},
     check=_broadcast_up((2, 3, 4, 5)))
case("Mul-same-shape-down", 14, [N("Mul", ["x", "b"], ["y"])], {"x": X4}, ((6,), (3,)), {"b": data((2, 3, 4, 5), 8)},
     check=_broadcast_down(None, None, None))
case("Div-scalar-down", 14, [N("Div", ["x", "b"], ["y"])], {"x": X4}, ((6,),), {"b": np.full((1, 1), 1.75, F32)},
     check=_broadcast_down(None, ()))
case("Add-last-axis-down", 13, [N("Add", ["x", "b"], ["y"])], {"x": X4}, ((6,),), {"b": data((5,), 9)},
     check=_broadcast_down(3, (5,)))
case("Pow-block-down", 15, [N("Pow", ["x", "e"], ["y"])], {"x": data((2, 3, 4, 5), 6, True)}, ((6,), (3,)),
     {"e": np.abs(data((3, 4, 1), 10))}, check=_broadcast_down(1, (3, 4)))
case("Add-computed-down", 14, [N("Add", ["x", "b"], ["y"])], {"x": X4, "b": data((3, 1, 1), 11)}, ((6,), (3,)),
     check=_broadcast_down(1, None))

# BatchNormalization -----------------------------------------------------------------------------
BN_INITS = {"scale": np.array([1.0, 0.5, 2.0], F32), "bias": np.array([0.1, 0.2, -0.3], F32),
            "mean": np.array([0.05, -0.1, 0.2], F32), "var": np.array([0.9, 1.5, 0.3], F32)}
BN_INPUTS = ["x", "scale", "bias", "mean", "var"]


def _bn_check(model: onnx.ModelProto, target: int) -> None:
    found = attrs(model, "BatchNormalization")
    assert found["epsilon"] == pytest.approx(1e-3)
    assert found.get("consumed_inputs") == ([0, 0, 0, 1, 1] if target < 6 else None)
    assert found.get("is_test") == (1 if target < 7 else None)
    assert "spatial" not in found or target < 9
    assert "training_mode" not in found


case("BatchNorm-down", 15, [N("BatchNormalization", BN_INPUTS, ["y"], epsilon=1e-3)], {"x": X4},
     ((14,), (9,), (8,), (7,), (6,), (5,), (3,)), BN_INITS, check=_bn_check)
case("BatchNorm-up", 5, [N("BatchNormalization", BN_INPUTS, ["y"], epsilon=1e-3, is_test=1, spatial=1,
                           consumed_inputs=[0, 0, 0, 1, 1])], {"x": X4}, ((6,), (7,), (9,), (15,)), BN_INITS,
     check=_bn_check)
case("BatchNorm-training-mode-0-down", 14, [N("BatchNormalization", BN_INPUTS, ["y"], epsilon=1e-3, training_mode=0)],
     {"x": X4}, ((13,),), BN_INITS, check=_bn_check)

# Gemm -----------------------------------------------------------------------------------------
GA, GB = data((4, 6), 12), data((5, 6), 13)


def _gemm_check(c_zero_width: int | None = None) -> Check:
    def check(model: onnx.ModelProto, target: int) -> None:
        found = attrs(model, "Gemm")
        assert found.get("broadcast") == (1 if target < 7 else None)
        assert (found["alpha"], found["beta"]) == pytest.approx((0.5, 2.0))
        gemm = node_of(model, "Gemm")
        if c_zero_width is not None and target < 11:
            np.testing.assert_array_equal(const(model, gemm.input[2]), np.zeros(c_zero_width, F32))
        elif c_zero_width is not None:
            assert len([i for i in gemm.input if i]) == 2
    return check


case("Gemm-transB-C-down", 13, [N("Gemm", ["a", "b", "c"], ["y"], alpha=0.5, beta=2.0, transB=1)], {"a": GA},
     ((11,), (7,), (6,), (3,)), {"b": GB, "c": data((5,), 14)}, check=_gemm_check())
case("Gemm-transB-no-C-down", 13, [N("Gemm", ["a", "b"], ["y"], alpha=0.5, beta=2.0, transB=1)], {"a": GA},
     ((11,), (10,), (6,)), {"b": GB}, check=_gemm_check(5))
case("Gemm-no-C-down", 13, [N("Gemm", ["a", "b"], ["y"], alpha=0.5, beta=2.0)], {"a": GA}, ((10,),),
     {"b": GB.T.copy()}, check=_gemm_check(5))
case("Gemm-broadcast-up", 6, [N("Gemm", ["a", "b", "c"], ["y"], alpha=0.5, beta=2.0, transB=1, broadcast=1)],
     {"a": GA}, ((7,), (11,), (13,)), {"b": GB, "c": data((5,), 14)}, check=_gemm_check())
case("Gemm-full-C-up", 6, [N("Gemm", ["a", "b", "c"], ["y"], alpha=0.5, beta=2.0, broadcast=0)], {"a": GA},
     ((7,),), {"b": GB.T.copy(), "c": data((4, 5), 15)}, check=_gemm_check())


# negative axes (allowed from 11) ----------------------------------------------------------------
def _axis_is(op: str, axis: int) -> Check:
    def check(model: onnx.ModelProto, target: int) -> None:
        assert attrs(model, op)["axis"] == axis
    return check


case("Flatten-axis-1-down", 13, [N("Flatten", ["x"], ["y"], axis=-1)], {"x": X4}, ((11,), (10,), (3,)),
     check=lambda m, t: _axis_is("Flatten", -1 if t >= 11 else 3)(m, t))
case("Flatten-axis-3-down", 13, [N("Flatten", ["x"], ["y"], axis=-3)], {"x": X4}, ((9,),), check=_axis_is("Flatten", 1))
case("Concat-no-axis-up", 3, [N("Concat", ["a", "b"], ["y"])], {"a": data((2, 3), 42), "b": data((2, 2), 43)},
     ((4,), (13,)), expect=lambda f: [np.concatenate([f["a"], f["b"]], 1)],
     check=lambda m, t: _axis_is("Concat", 1)(m, t))  # Concat-1's default axis is 1; Concat-4 requires it
case("Concat-axis-3-down", 13, [N("Concat", ["a", "b"], ["y"], axis=-3)], {"a": X4, "b": data((2, 2, 4, 5), 16)},
     ((11,), (10,), (3,)), check=lambda m, t: _axis_is("Concat", -3 if t >= 11 else 1)(m, t))
case("ArgMax-axis-1-down", 13, [N("ArgMax", ["x"], ["y"], axis=-1, keepdims=0, select_last_index=0)],
     {"x": data((2, 3, 4), 17)}, ((12,), (11,), (10,), (3,)),
     check=lambda m, t: attrs(m, "ArgMax") == {"axis": -1 if t >= 11 else 2, "keepdims": 0,
                                               **({"select_last_index": 0} if t >= 12 else {})})


# Split ----------------------------------------------------------------------------------------
def _split_check(model: onnx.ModelProto, target: int) -> None:
    found, split = attrs(model, "Split"), node_of(model, "Split")
    assert found["axis"] == (-1 if target >= 11 else 2)
    if target >= 13:
        assert "split" not in found and const(model, split.input[1]).tolist() == [1, 3, 2]
    else:
        assert found["split"] == [1, 3, 2] and list(split.input) == ["x"]


SPLIT_OUT = ("y0", "y1", "y2")
XS = data((2, 3, 6), 18)
case("Split-unequal-down", 18, [N("Split", ["x", "s"], list(SPLIT_OUT), axis=-1)], {"x": XS},
     ((13,), (12,), (11,), (10,), (3,)), {"s": np.array([1, 3, 2], np.int64)}, SPLIT_OUT, check=_split_check)
case("Split-unequal-up", 11, [N("Split", ["x"], list(SPLIT_OUT), axis=-1, split=[1, 3, 2])], {"x": XS},
     ((13,), (18,)), outputs=SPLIT_OUT, check=_split_check)
case("Split-equal-down", 13, [N("Split", ["x"], ["y0", "y1"], axis=1)], {"x": data((2, 4, 3), 19)}, ((12,), (3,)),
     outputs=("y0", "y1"), check=lambda m, t: "split" not in attrs(m, "Split"))
case("Split-1-up", 1, [N("Split", ["x", ""], ["y0", "y1"], axis=1, split=[2, 4])], {"x": data((2, 6), 20)}, ((3,),),
     outputs=("y0", "y1"), expect=lambda f: np.split(f["x"], [2], axis=1),
     check=lambda m, t: list(node_of(m, "Split").input) == ["x"])


# Slice ----------------------------------------------------------------------------------------
def _slice_check(axes: list[int] | None) -> Check:
    def check(model: onnx.ModelProto, target: int) -> None:
        found, node = attrs(model, "Slice"), node_of(model, "Slice")
        if target < 10:
            assert list(node.input) == ["x"]
            assert (found["starts"], found["ends"], found.get("axes")) == ([1, -4], [3, 4], axes)
        else:
            assert not found
            values = [const(model, i).tolist() for i in node.input[1:]]
            assert values == [[1, -4], [3, 4], *([axes] if axes else [])]
    return check


XSL = data((2, 4, 5, 6), 21)
case("Slice-axes-down", 13, [N("Slice", ["x", "st", "en", "ax"], ["y"])], {"x": XSL}, ((10,), (9,), (3,)),
     {"st": np.array([1, -4], np.int64), "en": np.array([3, 4], np.int64), "ax": np.array([1, 3], np.int64)},
     check=_slice_check([1, 3]))
case("Slice-no-axes-down", 13, [N("Slice", ["x", "st", "en"], ["y"])], {"x": XSL}, ((9,),),
     {"st": np.array([1, -4], np.int64), "en": np.array([3, 4], np.int64)}, check=_slice_check(None))
case("Slice-axes-up", 9, [N("Slice", ["x"], ["y"], starts=[1, -4], ends=[3, 4], axes=[1, 3])], {"x": XSL},
     ((10,), (13,)), check=_slice_check([1, 3]))
case("Slice-no-axes-up", 9, [N("Slice", ["x"], ["y"], starts=[1, -4], ends=[3, 4])], {"x": XSL}, ((10,),),
     check=_slice_check(None))


# Reshape --------------------------------------------------------------------------------------
def _reshape_check(shape: list[int]) -> Check:
    def check(model: onnx.ModelProto, target: int) -> None:
        found, node = attrs(model, "Reshape"), node_of(model, "Reshape")
        assert "consumed_inputs" not in found and "allowzero" not in found
        if target < 5:
            assert found["shape"] == shape and list(node.input) == ["x"]
        else:
            assert not found and const(model, node.input[1]).tolist() == shape
    return check


case("Reshape-zero-minus1-down", 14, [N("Reshape", ["x", "s"], ["y"], allowzero=0)], {"x": X4},
     ((13,), (5,), (4,), (3,)), {"s": np.array([0, -1, 5], np.int64)}, check=_reshape_check([0, -1, 5]))
case("Reshape-1-up", 4, [N("Reshape", ["x"], ["y"], shape=[0, -1], consumed_inputs=[0])], {"x": X4},
     ((5,), (14,)), check=_reshape_check([0, -1]))


# Squeeze, Unsqueeze ---------------------------------------------------------------------------
def _axes_check(op: str, axes: list[int]) -> Check:
    def check(model: onnx.ModelProto, target: int) -> None:
        found, node = attrs(model, op), node_of(model, op)
        if target < 13:
            assert found == {"axes": axes} and list(node.input) == ["x"]
        else:
            assert not found and const(model, node.input[1]).tolist() == axes
    return check


case("Squeeze-down", 13, [N("Squeeze", ["x", "a"], ["y"])], {"x": data((2, 1, 3, 1), 22)}, ((12,), (10,), (3,)),
     {"a": np.array([1, 3], np.int64)}, check=_axes_check("Squeeze", [1, 3]))
case("Squeeze-up", 11, [N("Squeeze", ["x"], ["y"], axes=[3, 1])], {"x": data((2, 1, 3, 1), 22)}, ((13,),),
     check=_axes_check("Squeeze", [3, 1]))
case("Unsqueeze-down", 13, [N("Unsqueeze", ["x", "a"], ["y"])], {"x": data((2, 3), 23)}, ((12,), (10,), (3,)),
     {"a": np.array([0, 3], np.int64)}, check=_axes_check("Unsqueeze", [0, 3]))
case("Unsqueeze-up", 11, [N("Unsqueeze", ["x"], ["y"], axes=[3, 0])], {"x": data((2, 3), 23)}, ((13,),),
     check=_axes_check("Unsqueeze", [3, 0]))


# Dropout ----------------------------------------------------------------------------------------
def _dropout_check(ratio: float | None, outputs: int = 1) -> Check:
    def check(model: onnx.ModelProto, target: int) -> None:
        found, node = attrs(model, "Dropout"), node_of(model, "Dropout")
        assert found.get("is_test") == (1 if target < 7 else None)
        assert "consumed_inputs" not in found or target < 6
        if target < 12:
            assert list(node.input) == [node.input[0]]
            assert found.get("ratio") == (None if ratio is None else pytest.approx(ratio))
        else:
            assert "ratio" not in found
            values = [const(model, i) for i in node.input[1:2]]
            assert [v.item() for v in values] == ([] if ratio is None else [pytest.approx(ratio)])
            assert all(v.dtype == F32 for v in values)
        assert len(node.output) == (1 if target < 10 else outputs)
    return check


case("Dropout-ratio-mode-down", 13, [N("Dropout", ["x", "r", "m"], ["y"])], {"x": X4},
     ((12,), (11,), (10,), (9,), (7,), (6,), (5,), (3,)), {"r": np.array(0.3, F32), "m": np.array(False)},
     check=_dropout_check(0.3))
case("Dropout-default-ratio-down", 12, [N("Dropout", ["x", "r"], ["y"])], {"x": X4}, ((11,),),
     {"r": np.array(0.5, F32)}, check=_dropout_check(None))
case("Dropout-unused-mask-down", 13, [N("Dropout", ["x"], ["d", "mask"]), N("Relu", ["d"], ["y"])], {"x": X4},
     ((10,), (9,), (6,)), check=_dropout_check(None, outputs=2))
case("Dropout-up", 5, [N("Dropout", ["x"], ["y"], is_test=1, ratio=0.3, consumed_inputs=[0])], {"x": X4},
     ((6,), (7,), (12,), (13,)), check=_dropout_check(0.3))
case("Dropout-half-up", 11, [N("Dropout", ["x"], ["y"], ratio=0.5)], {"x": X4}, ((12,),), check=_dropout_check(None))


# Softmax ----------------------------------------------------------------------------------------
def _softmax_ops(ops: list[str], axis: int | None = None) -> Check:
    def check(model: onnx.ModelProto, target: int) -> None:
        assert [n.op_type for n in model.graph.node] == ops
        if axis is not None:
            assert attrs(model, "Softmax")["axis"] == axis
    return check


FLAT_SOFTMAX = ["Flatten", "Softmax", "Reshape"]
case("Softmax-axis1-up", 12, [N("Softmax", ["x"], ["y"], axis=1)], {"x": X4}, ((13,), (13, 12), (13, 3)),
     check=lambda m, t: _softmax_ops(FLAT_SOFTMAX)(m, t))
case("Softmax-default-axis-up", 12, [N("Softmax", ["x"], ["y"])], {"x": X4}, ((13,),), check=_softmax_ops(FLAT_SOFTMAX))
case("Softmax-last-axis-up", 12, [N("Softmax", ["x"], ["y"], axis=-1)], {"x": X4}, ((13,),),
     check=_softmax_ops(["Softmax"], 3))
case("Softmax-default-axis-down", 13, [N("Softmax", ["x"], ["y"])], {"x": X4}, ((12,), (10,), (3,)),
     check=_softmax_ops(["Softmax"], 3))
case("Softmax-axis-1-down", 13, [N("Softmax", ["x"], ["y"], axis=-1)], {"x": data((3, 7), 24)}, ((12,), (10,)),
     check=_softmax_ops(["Softmax"], 1))
case("Softmax-11-axis-2-down", 11, [N("Softmax", ["x"], ["y"], axis=-2)], {"x": data((2, 3, 4), 25)}, ((10,), (3,)),
     check=_softmax_ops(["Softmax"], 1))

# ConstantOfShape --------------------------------------------------------------------------------
case("ConstantOfShape-down", 13,
     [N("ConstantOfShape", ["shape"], ["c"], value=numpy_helper.from_array(np.array([1.5], F32))),
      N("Add", ["x", "c"], ["y"])], {"x": data((2, 3), 26)}, ((9,), (8,), (3,)), {"shape": np.array([2, 3], np.int64)},
     check=lambda m, t: (t >= 9 or (
         [n.op_type for n in m.graph.node] == ["Add"]
         and np.array_equal(const(m, "c"), np.full((2, 3), 1.5, F32)))))


# Pad --------------------------------------------------------------------------------------------
def _pad_check(pads: list[int], value: float | None, mode: str = "constant") -> Check:
    def check(model: onnx.ModelProto, target: int) -> None:
        found, node = attrs(model, "Pad"), node_of(model, "Pad")
        assert found.get("mode", b"constant") == mode.encode()
        if target < 11:
            assert list(node.input) == ["x"] and found["pads"] == pads
            assert found.get("value") == (None if value is None else pytest.approx(value))
        else:
            assert set(found) <= {"mode"}
            values = [const(model, i).tolist() for i in node.input[1:]]
            assert values == [pads, *([] if value is None else [pytest.approx(value)])]
    return check


PADS = [0, 0, 1, 2, 0, 0, 2, 1]
XP = data((1, 2, 4, 5), 27)
case("Pad-value-down", 13, [N("Pad", ["x", "p", "v"], ["y"], mode="constant")], {"x": XP}, ((11,), (10,), (3,)),
     {"p": np.array(PADS, np.int64), "v": np.array(1.5, F32)}, check=_pad_check(PADS, 1.5))
case("Pad-zero-value-down", 13, [N("Pad", ["x", "p", "v"], ["y"])], {"x": XP}, ((10,),),
     {"p": np.array(PADS, np.int64), "v": np.array(0.0, F32)}, check=_pad_check(PADS, None))
case("Pad-reflect-down", 18, [N("Pad", ["x", "p"], ["y"], mode="reflect")], {"x": XP}, ((17,), (10,)),
     {"p": np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64)}, check=_pad_check(PADS, None, "reflect"))
case("Pad-value-up", 10, [N("Pad", ["x"], ["y"], pads=PADS, value=1.5)], {"x": XP}, ((11,), (18,)),
     check=_pad_check(PADS, 1.5))
case("Pad-edge-up", 10, [N("Pad", ["x"], ["y"], pads=PADS, mode="edge")], {"x": XP}, ((11,),),
     check=_pad_check(PADS, None, "edge"))
case("Pad-1-paddings-up", 1, [N("Pad", ["x"], ["y"], paddings=[0, 1, 0, 2], value=1.5)], {"x": data((2, 3), 28)},
     ((3,),), expect=lambda f: [np.pad(f["x"], [(0, 0), (1, 2)], constant_values=1.5)],
     check=lambda m, t: attrs(m, "Pad") == {"pads": [0, 1, 0, 2], "value": pytest.approx(1.5)})


# Clip -------------------------------------------------------------------------------------------
def _clip_check(low: float | None, high: float | None) -> Check:
    def check(model: onnx.ModelProto, target: int) -> None:
        found, node = attrs(model, "Clip"), node_of(model, "Clip")
        if target < 11:
            assert list(node.input) == ["x"]
            assert found == {k: pytest.approx(v) for k, v in (("min", low), ("max", high)) if v is not None}
        else:
            assert not found
            inputs = list(node.input[1:]) + [""] * (3 - len(node.input))
            got = [None if not i else const(model, i).item() for i in inputs]
            assert got == [None if v is None else pytest.approx(v) for v in (low, high)]
    return check


case("Clip-min-max-down", 13, [N("Clip", ["x", "lo", "hi"], ["y"])], {"x": X4}, ((11,), (10,), (6,), (3,)),
     {"lo": np.array(-0.3, F32), "hi": np.array(0.6, F32)}, check=_clip_check(-0.3, 0.6))
case("Clip-min-down", 12, [N("Clip", ["x", "lo"], ["y"])], {"x": X4}, ((10,),), {"lo": np.array(-0.3, F32)},
     check=_clip_check(-0.3, None))
case("Clip-min-max-up", 10, [N("Clip", ["x"], ["y"], min=-0.3, max=0.6)], {"x": X4}, ((11,), (13,)),
     check=_clip_check(-0.3, 0.6))
case("Clip-consumed-up", 5, [N("Clip", ["x"], ["y"], consumed_inputs=[0], min=-0.3, max=0.6)], {"x": X4},
     ((6,), (11,), (13,)), check=_clip_check(-0.3, 0.6))
case("Clip-max-up", 10, [N("Clip", ["x"], ["y"], max=0.6)], {"x": X4}, ((11,),), check=_clip_check(None, 0.6))


# Cast -------------------------------------------------------------------------------------------
def _cast_check(to: int, name: str) -> Check:
    def check(model: onnx.ModelProto, target: int) -> None:
        assert attrs(model, "Cast") == {"to": name.encode() if target < 6 else to}
    return check


XC = data((3, 4), 29, scale=3.0)
CAST_INPUTS = {"FLOAT": XC.astype(np.int32), "UINT8": np.abs(XC)}  # the rest cast XC (values in +-9)
for _name in ("FLOAT", "UINT8", "INT8", "INT32", "INT64", "BOOL", "FLOAT16", "DOUBLE"):
    _to, _x = getattr(TensorProto, _name), CAST_INPUTS.get(_name, XC)
    case(f"Cast-{_name}-down", 13, [N("Cast", ["x"], ["y"], to=_to)], {"x": _x}, ((6,), (5,)),
         check=_cast_check(_to, _name))
    case(f"Cast-{_name}-up", 5, [N("Cast", ["x"], ["y"], to=_name)], {"x": _x}, ((6,),), check=_cast_check(_to, _name))
case("Cast-int32-down-3", 13, [N("Cast", ["x"], ["y"], to=TensorProto.INT32)], {"x": XC}, ((3,),),
     check=_cast_check(TensorProto.INT32, "INT32"))
case("Cast-lowercase-up", 5, [N("Cast", ["x"], ["y"], to="int32")], {"x": XC}, ((6,), (13,)),
     check=_cast_check(TensorProto.INT32, "INT32"))


# pooling ----------------------------------------------------------------------------------------
def _pool_check(op: str, pads: list[int] | None, dropped: Sequence[str] = ("ceil_mode", "dilations")) -> Check:
    """Below 10: no ``dropped`` attributes, and ``pads`` (ceil_mode turned into end padding)."""
    def check(model: onnx.ModelProto, target: int) -> None:
        found = attrs(model, op)
        if target < 10:
            assert not set(found) & set(dropped), found
            assert found.get("pads") == pads
    return check


XPOOL = data((1, 2, 10, 11), 30)
case("MaxPool-ceil-down", 12, [N("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 0, 1],
                                 ceil_mode=1, dilations=[1, 1], storage_order=1)], {"x": XPOOL},
     ((10,), (9,), (8,), (7,), (3,)),
     check=lambda m, t: attrs(m, "MaxPool") == {"kernel_shape": [3, 3], "strides": [2, 2],
                                                **({"storage_order": 1} if t >= 8 else {}),
                                                **({"ceil_mode": 1, "dilations": [1, 1]} if t >= 10 else {}),
                                                "pads": [1, 0, 0, 2] if t < 10 else [1, 0, 0, 1]})
case("MaxPool-floor-down", 12, [N("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=0)],
     {"x": XPOOL}, ((9,),), check=_pool_check("MaxPool", None))
case("MaxPool-ceil-stride-1-down", 12, [N("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], ceil_mode=1)], {"x": XPOOL},
     ((9,),), check=_pool_check("MaxPool", [0, 0, 0, 0]))
case("MaxPool-empty-indices-down", 8, [N("MaxPool", ["x"], ["y", ""], kernel_shape=[2, 2])], {"x": XPOOL}, ((7,),),
     check=lambda m, t: list(node_of(m, "MaxPool").output) == ["y"])
case("MaxPool-storage-order-down", 8, [N("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], storage_order=1)],
     {"x": XPOOL}, ((7,),), check=lambda m, t: "storage_order" not in attrs(m, "MaxPool"))
case("AveragePool-ceil-down", 12, [N("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1,
                                     count_include_pad=0)], {"x": XPOOL}, ((9,), (7,), (6,)),
     check=_pool_check("AveragePool", [0, 0, 1, 0]))
case("AveragePool-ceil-exact-include-pad-down", 12,
     [N("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1,
        count_include_pad=1)], {"x": data((1, 2, 9, 9), 31)}, ((9,),),
     check=_pool_check("AveragePool", [1, 1, 1, 1], ("ceil_mode",)))


def _include_pad_check(pads: list[int]) -> Check:
    def check(model: onnx.ModelProto, target: int) -> None:
        if target >= 7:
            assert [n.op_type for n in model.graph.node] == ["AveragePool"]
            assert attrs(model, "AveragePool")["count_include_pad"] == 1
            return
        assert [n.op_type for n in model.graph.node] == ["Pad", "AveragePool"]
        pad, pool = model.graph.node
        assert pool.input[0] == pad.output[0] and pad.input[0] == "x"
        assert attrs(model, "Pad") == {"pads": pads, "mode": b"constant", "value": 0.0}
        assert attrs(model, "AveragePool") == {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [0, 0, 0, 0],
                                               "auto_pad": b"NOTSET"}
    return check


case("AveragePool-include-pad-down", 11,
     [N("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 2, 1], count_include_pad=1,
        ceil_mode=0, auto_pad="NOTSET")], {"x": data((1, 2, 7, 7), 32)}, ((10,), (7,), (6,), (3,)),
     check=_include_pad_check([0, 0, 1, 0, 0, 0, 2, 1]))
case("AveragePool-include-no-pads-down", 11,
     [N("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], count_include_pad=1)], {"x": data((1, 2, 7, 7), 33)},
     ((6,),), check=lambda m, t: [n.op_type for n in m.graph.node] == ["AveragePool"]
     and "count_include_pad" not in attrs(m, "AveragePool"))

PATHS = [pytest.param(c, p, id=f"{c.name}:{c.opset}>{'>'.join(map(str, p))}") for c in CASES for p in c.paths]


@pytest.mark.parametrize(("case", "path"), PATHS)
def test_converted_model_computes_what_the_source_computes(case: Case, path: tuple[int, ...]) -> None:
    """Checker-clean at every stop, the target in opset_import, the same outputs, the right attributes."""
    source, expected = case.source()
    onnx.checker.check_model(source, full_check=True)  # the case itself is a valid model at its opset
    moved = source
    for stop in path:
        moved = convert_opset(moved, stop)
        assert opset_imports(moved) == [stop]
        assert_documented_ir(moved, stop)  # not ir_of(stop): that is opset_info, which convert_opset stamps from
        onnx.checker.check_model(moved, full_check=True)
    assert_same(run(moved, case.feeds), expected)
    if case.check is not None:
        assert case.check(moved, path[-1]) is not False  # a check asserts, or returns whether it holds


# -- refusals ------------------------------------------------------------------------------------

@dataclass
class Refusal:
    name: str
    op: str
    step: tuple[int, int]  # the refused step; the model is at step[0] or further from step[1]
    make: Callable[[], onnx.ModelProto]
    words: tuple[str, ...]
    target: int | None = None  # where to convert to; default: step[1]


FLOAT = TensorProto.FLOAT
INT64 = TensorProto.INT64


def one(op: str, opset: int, inputs: Mapping[str, np.ndarray | tuple[int, Shape]], inits: Mapping | None = None,
        outputs: Sequence[str] = ("y",), names: Sequence[str] | None = None, before: Sequence[NodeProto] = (),
        after: Sequence[NodeProto] = (), **kwargs: Any) -> Callable[[], onnx.ModelProto]:
    """A builder of a model with one node named ``n_<op>`` (between the ``before`` and ``after``
    nodes); its inputs are ``names``, by default the keys of ``inputs`` then ``inits``."""
    def make() -> onnx.ModelProto:
        node = N(op, list(names or [*inputs, *(inits or {})]), list(outputs), name=f"n_{op.lower()}", **kwargs)
        graph_outputs = [o for o in outputs if not any(o in n.input for n in after)]
        graph_outputs += [o for n in after for o in n.output]
        return build([*before, node, *after], opset, inputs, inits, graph_outputs)
    return make


REFUSALS = [
    Refusal("MaxPool-indices", "MaxPool", (8, 7),
            one("MaxPool", 8, {"x": X4}, outputs=("y", "idx"), kernel_shape=[2, 2]),
            ("Indices output did not exist before opset 8",)),
    Refusal("MaxPool-dilations", "MaxPool", (10, 9), one("MaxPool", 12, {"x": XPOOL}, kernel_shape=[2, 2],
                                                         dilations=[2, 2]), ("dilations [2, 2]", "before opset 10")),
    Refusal("MaxPool-ceil-dynamic", "MaxPool", (10, 9),
            one("MaxPool", 12, {"x": (FLOAT, [1, 2, "h", "w"])}, kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
            ("ceil_mode=1 needs static spatial shapes",)),
    Refusal("AveragePool-ceil-include-pad", "AveragePool", (10, 9),
            one("AveragePool", 12, {"x": XPOOL}, kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1,
                count_include_pad=1), ("ceil_mode with count_include_pad",)),
    Refusal("AveragePool-include-pad-auto-pad", "AveragePool", (7, 6),  # auto_pad with pads: not even valid
            one("AveragePool", 7, {"x": X4}, kernel_shape=[3, 3], pads=[1, 1, 1, 1], auto_pad="SAME_UPPER",
                count_include_pad=1), ("count_include_pad=1 with auto_pad",)),
    Refusal("BatchNorm-is-test-0", "BatchNormalization", (6, 7),
            one("BatchNormalization", 6, {"x": X4}, BN_INITS, is_test=0), ("is_test=0", "training mode")),
    Refusal("BatchNorm-non-spatial", "BatchNormalization", (8, 9),
            one("BatchNormalization", 8, {"x": X4}, BN_INITS, spatial=0), ("spatial=0", "non-spatial")),
    Refusal("BatchNorm-training-mode", "BatchNormalization", (14, 13),
            one("BatchNormalization", 14, {"x": X4}, BN_INITS, training_mode=1),
            ("training_mode=1", "did not exist before opset 14")),
    Refusal("Gemm-no-C-dynamic-B", "Gemm", (11, 10),
            one("Gemm", 13, {"a": GA, "b": (FLOAT, ["k", "n"])}, transB=1), ("without C", "B's shape")),
    Refusal("Flatten-negative-unknown-rank", "Flatten", (11, 10), one("Flatten", 13, {"x": (FLOAT, None)}, axis=-1),
            ("negative axis -1", "rank")),
    Refusal("Concat-negative-unknown-rank", "Concat", (11, 10),
            one("Concat", 11, {"a": (FLOAT, None), "b": (FLOAT, None)}, axis=-2), ("negative axis -2", "rank")),
    Refusal("PRelu-up-unknown-rank", "PRelu", (6, 7), one("PRelu", 6, {"x": (FLOAT, None)}, {"s": SLOPE3}),
            ("ranks", "PRelu slope", "unknown")),
    Refusal("PRelu-down-not-per-channel", "PRelu", (7, 6), one("PRelu", 9, {"x": X4}, {"s": data((5,), 1)}),
            ("slope [5]", "not one value per channel")),
    Refusal("PRelu-down-block-slope", "PRelu", (7, 6), one("PRelu", 9, {"x": X4}, {"s": data((3, 4, 5), 1)}),
            ("slope [3, 4, 5]", "not one value per channel")),
    Refusal("PRelu-down-unknown-x", "PRelu", (7, 6),
            one("PRelu", 9, {"x": (FLOAT, None)}, {"s": SLOPE3.reshape(3, 1, 1)}),
            ("slope [3, 1, 1] is not one value per channel",)),
    Refusal("PRelu-down-1d-x", "PRelu", (7, 6), one("PRelu", 9, {"x": data((3,), 1)}, {"s": SLOPE3}),
            ("slope [3] is not one value per channel",)),
    Refusal("PRelu-down-unknown-slope", "PRelu", (7, 6), one("PRelu", 9, {"x": X4, "s": (FLOAT, ["c", 1, 1])}),
            ("slope's shape is unknown",)),
    Refusal("Add-up-unknown-shapes", "Add", (6, 7),
            one("Add", 6, {"x": (FLOAT, None), "b": (FLOAT, None)}, broadcast=1, axis=1),
            ("shapes needed to re-align a legacy broadcast", "unknown")),
    Refusal("Sub-down-unknown-shapes", "Sub", (7, 6), one("Sub", 13, {"x": (FLOAT, None), "b": (FLOAT, [3])}),
            ("input shapes needed to express broadcasting", "unknown")),
    Refusal("Add-down-dynamic-B", "Add", (7, 6), one("Add", 13, {"x": X4, "b": (FLOAT, ["c", 1, 1])}),
            ("input shapes needed to express broadcasting", "unknown")),
    Refusal("Mul-down-B-bigger", "Mul", (7, 6), one("Mul", 13, {"x": data((3, 4), 1)}, {"b": data((2, 3, 4), 2)}),
            ("B [2, 3, 4] has more dims than A [3, 4]",)),
    Refusal("Div-down-both-directions", "Div", (7, 6),
            one("Div", 13, {"x": data((2, 1, 4), 1)}, {"b": data((3, 1), 2)}),
            ("B [3, 1] broadcasts in both directions against A [2, 1, 4]",)),
    Refusal("Pow-down-both-directions", "Pow", (7, 6),
            one("Pow", 13, {"x": data((2, 3, 1), 1, True)}, {"e": data((3, 4), 2)}),
            ("B [3, 4] broadcasts in both directions",)),
    Refusal("Softmax-down-not-last", "Softmax", (13, 12), one("Softmax", 13, {"x": X4}, axis=1),
            ("axis 1 of a 4-D input is not the last", "flattens")),
    Refusal("Softmax-down-unknown-rank", "Softmax", (13, 12), one("Softmax", 13, {"x": (FLOAT, None)}),
            ("input rank is unknown",)),
    Refusal("Softmax-up-unknown-rank", "Softmax", (12, 13), one("Softmax", 12, {"x": (FLOAT, None)}),
            ("input rank is unknown",)),
    Refusal("Softmax-up-unknown-dims", "Softmax", (12, 13), one("Softmax", 12, {"x": (FLOAT, [2, "c", 4])}, axis=1),
            ("input shape needed to restore the softmax output is unknown",)),
    Refusal("Softmax-11-negative-unknown-rank", "Softmax", (11, 10), one("Softmax", 11, {"x": (FLOAT, None)}, axis=-1),
            ("negative axis -1", "rank")),
    Refusal("ArgMax-negative-unknown-rank", "ArgMax", (11, 10), one("ArgMax", 11, {"x": (FLOAT, None)}, axis=-1),
            ("negative axis -1", "rank")),
    Refusal("ArgMax-select-last-index", "ArgMax", (12, 11),
            one("ArgMax", 12, {"x": X4}, axis=1, select_last_index=1), ("select_last_index=1", "did not exist")),
    Refusal("Split-num-outputs", "Split", (18, 17),
            one("Split", 18, {"x": XS}, outputs=SPLIT_OUT, axis=2, num_outputs=3), ("num_outputs=3", "before 18")),
    Refusal("Split-computed-sizes", "Split", (13, 12),
            one("Split", 13, {"x": XS, "s": (INT64, [3])}, outputs=SPLIT_OUT, axis=2),
            ("input 's' (split)", "computed")),
    Refusal("Split-negative-unknown-rank", "Split", (11, 10),
            one("Split", 11, {"x": (FLOAT, None)}, outputs=("y0", "y1"), axis=-1), ("negative axis -1", "rank")),
    Refusal("Split-1-sizes-input", "Split", (1, 2),
            one("Split", 1, {"x": data((2, 6), 1), "s": (INT64, [2])}, outputs=("y0", "y1"), axis=1),
            ("split sizes come from an input",), target=3),
    Refusal("Slice-steps", "Slice", (10, 9),
            one("Slice", 13, {"x": XSL}, {"st": np.array([1], np.int64), "en": np.array([4], np.int64),
                                          "ax": np.array([3], np.int64), "sp": np.array([2], np.int64)}),
            ("Slice with steps did not exist before opset 10",)),
    Refusal("Slice-computed-starts", "Slice", (10, 9),
            one("Slice", 13, {"x": XSL, "st": (INT64, [1])}, {"en": np.array([4], np.int64)}),
            ("input 'st' (starts)", "computed, not a constant")),
    Refusal("Slice-computed-axes", "Slice", (10, 9),
            one("Slice", 10, {"x": XSL, "ax": (INT64, [1])},
                {"st": np.array([1], np.int64), "en": np.array([4], np.int64)}, names=["x", "st", "en", "ax"]),
            ("input 'ax' (axes)", "computed")),
    Refusal("Reshape-allowzero", "Reshape", (14, 13), one("Reshape", 14, {"x": X4}, {"s": np.array([0, -1], np.int64)},
                                                          allowzero=1), ("allowzero=1 did not exist before 14",)),
    Refusal("Reshape-computed-shape", "Reshape", (5, 4), one("Reshape", 13, {"x": X4, "s": (INT64, [2])}),
            ("input 's' (shape)", "computed")),
    Refusal("Squeeze-computed-axes", "Squeeze", (13, 12), one("Squeeze", 13, {"x": X4, "a": (INT64, [1])}),
            ("input 'a' (axes)", "computed")),
    Refusal("Unsqueeze-computed-axes", "Unsqueeze", (13, 12), one("Unsqueeze", 13, {"x": X4, "a": (INT64, [1])}),
            ("input 'a' (axes)", "computed")),
    Refusal("Dropout-training", "Dropout", (12, 11),
            one("Dropout", 13, {"x": X4}, {"r": np.array(0.3, F32), "m": np.array(True)}), ("training_mode",)),
    Refusal("Dropout-computed-training", "Dropout", (12, 11),
            one("Dropout", 12, {"x": X4, "m": (TensorProto.BOOL, [])}, {"r": np.array(0.3, F32)},
                names=["x", "r", "m"]),
            ("training_mode is set or computed",)),
    Refusal("Dropout-computed-ratio", "Dropout", (12, 11), one("Dropout", 12, {"x": X4, "r": (FLOAT, [])}),
            ("input 'r' (ratio)", "computed")),
    Refusal("Dropout-mask-output", "Dropout", (10, 9), one("Dropout", 10, {"x": X4}, outputs=("y", "mask")),
            ("mask output is used", "bool to float")),
    Refusal("Dropout-mask-consumed", "Dropout", (10, 9),
            one("Dropout", 10, {"x": X4}, outputs=("y", "mask"), names=["x"],
                after=[N("Cast", ["mask"], ["z"], to=FLOAT)]),
            ("mask output is used",)),
    Refusal("ConstantOfShape-computed", "ConstantOfShape", (9, 8),
            one("ConstantOfShape", 9, {"shape": (INT64, [2])}), ("shape input is computed",)),
    Refusal("Pad-axes", "Pad", (18, 17),
            one("Pad", 18, {"x": XP}, {"p": np.array([1, 2], np.int64), "v": np.array(1.5, F32),
                                       "a": np.array([3], np.int64)}),
            ("Pad with axes did not exist before opset 18",)),
    Refusal("Pad-computed-pads", "Pad", (11, 10), one("Pad", 13, {"x": XP, "p": (INT64, [8])}),
            ("input 'p' (pads)", "computed")),
    Refusal("Pad-computed-value", "Pad", (11, 10),
            one("Pad", 13, {"x": XP, "v": (FLOAT, [])}, {"p": np.array(PADS, np.int64)}, names=["x", "p", "v"]),
            ("input 'v' (value)", "computed")),
    Refusal("Clip-computed-max", "Clip", (11, 10),
            one("Clip", 13, {"x": X4, "h": (FLOAT, [])}, {"lo": np.array(-0.3, F32)}, names=["x", "lo", "hi"],
                before=[N("Relu", ["h"], ["hi"])]), ("input 'hi' (max)", "computed")),
    Refusal("Clip-computed-min", "Clip", (11, 10), one("Clip", 11, {"x": X4, "lo": (FLOAT, [])}),
            ("input 'lo' (min)", "computed")),
    Refusal("Cast-unknown-name", "Cast", (5, 6), one("Cast", 5, {"x": X4}, to="FOO"), ("Cast to 'FOO' is not known",)),
    Refusal("Cast-nameless-type", "Cast", (6, 5), one("Cast", 13, {"x": X4}, to=TensorProto.BFLOAT16),
            ("Cast to type 16 has no name before opset 6",)),
    Refusal("Cast-int16-nameless", "Cast", (6, 5), one("Cast", 6, {"x": X4}, to=TensorProto.INT16),
            ("Cast to type 5 has no name",)),
]


@pytest.mark.parametrize("refusal", REFUSALS, ids=[r.name for r in REFUSALS])
def test_refusal_names_node_step_and_reason(refusal: Refusal) -> None:
    """Each StepRefused reason reaches the user as an OpsetError naming node, operator and step."""
    with pytest.raises(OpsetError) as caught:
        convert_opset(refusal.make(), refusal.target or refusal.step[1])
    message = str(caught.value)
    (start, stop), name = refusal.step, f"n_{refusal.op.lower()}"
    prefix = f"node '{name}' ({refusal.op}) cannot go from opset {start} to {stop}: "
    assert message.startswith(prefix), message
    for words in refusal.words:
        assert words in message, (words, message)


def test_refused_conversion_leaves_the_source_untouched() -> None:
    """convert_opset works on a copy: a refusal half-way down leaves the caller's model as it was."""
    model = build([N("Softmax", ["x"], ["y"], axis=1, name="n_softmax"),
                   N("Clip", ["y", "lo", "hi"], ["z"], name="n_clip")], 13, {"x": X4},
                  {"lo": np.array(0.1, F32), "hi": np.array(0.2, F32)}, ("z",))
    before = model.SerializeToString()
    with pytest.raises(OpsetError, match="n_softmax"):
        convert_opset(model, 6)
    assert model.SerializeToString() == before


# -- the sweep is complete ---------------------------------------------------------------------

UNREACHABLE = {("Pad", 2, "down")}  # opset 2 is below MIN_OPSET: no conversion can target it


def _crossed(op_types: set[str], start: int, stops: Sequence[int]) -> set[tuple[str, int, str]]:
    crossed = set()
    for stop in stops:
        direction = "up" if stop > start else "down"
        low, high = sorted((start, stop))
        crossed |= {(op, version, direction) for op in op_types for version in range(low + 1, high + 1)}
        start = stop
    return crossed


def test_the_sweep_crosses_every_rewriting_change() -> None:
    """Every (op, version, direction) whose rewrite is not ``_same`` is crossed by a value case, and
    every refusal test names a step whose rewrite is not ``_same``."""
    rewriting = {(c.op, c.version, d) for c in changes() for d, f in (("up", c.up), ("down", c.down)) if f is not _same}
    crossed: set[tuple[str, int, str]] = set()
    for item in CASES:
        for path in item.paths:
            crossed |= _crossed({n.op_type for n in item.nodes}, item.opset, path)
    refused = {(r.op, max(r.step), "up" if r.step[1] > r.step[0] else "down") for r in REFUSALS}
    assert rewriting - crossed - UNREACHABLE == set()
    assert refused <= rewriting, refused - rewriting
    assert len(rewriting) >= 81  # as many rewrites as the table has today: a mutant that drops some fails


def test_every_operator_version_has_an_adapter() -> None:
    """Every schema version of a supported operator from opset 2 to the newest has a Change (else
    a model with it cannot cross that opset); the table has no versions the schemas lack."""
    from onnx import defs

    from zooforge.versioning.convert import SUPPORTED_OPS

    table = {(c.op, c.version) for c in changes()}
    schemas = {(s.name, s.since_version) for s in defs.get_all_schemas_with_history()
               if s.domain == "" and s.name in SUPPORTED_OPS and 2 <= s.since_version <= latest_opset()}
    assert table <= schemas, table - schemas
    missing = schemas - table
    assert missing <= KNOWN_MISSING, missing - KNOWN_MISSING


KNOWN_MISSING: set[tuple[str, int]] = set()


# -- bugs found by this sweep: each test states the correct behaviour ----------------------------

def _kept(model: onnx.ModelProto, target: int, feeds: Mapping[str, np.ndarray]) -> None:
    """The adapter converts (a refusal fails the test) and the model keeps its outputs."""
    expected = run(model, feeds)
    moved = convert_opset(model, target)
    onnx.checker.check_model(moved, full_check=True)
    assert_same(run(moved, feeds), expected)


def _refused(model: onnx.ModelProto, target: int, words: str) -> None:
    """The adapter refuses with an OpsetError whose sentence holds ``words`` (written here by hand)."""
    with pytest.raises(OpsetError, match=re.escape(words)):
        convert_opset(model, target)


def _typed(nodes: list[NodeProto], opset: int, feeds: dict[str, np.ndarray],
           inits: dict[str, np.ndarray] | None = None) -> onnx.ModelProto:
    expected = run(build(nodes, opset, feeds, inits), feeds)
    return build(nodes, opset, feeds, inits, typed=expected)


# -- adapter bugs this sweep found (each was a strict xfail until fixed) -------------------------

def test_average_pool_auto_pad_counting_pads_goes_below_7() -> None:
    """AveragePool-7+ with auto_pad=SAME_UPPER and count_include_pad=1 moved to 6: refused (the
    implicit pads cannot be counted there); the adapter once dropped count_include_pad silently."""
    feeds = {"x": data((1, 2, 5, 5), 40)}
    model = _typed([N("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], auto_pad="SAME_UPPER",
                      count_include_pad=1)], 11, feeds)
    _refused(model, 6, "cannot go from opset 7 to 6: count_include_pad=1 with auto_pad (implicit padding)")


@pytest.mark.parametrize("op", ["Squeeze", "Unsqueeze"])
def test_negative_axes_of_squeeze_go_below_11(op: str) -> None:
    """Squeeze/Unsqueeze-11 with axes=[-1] moved to 10: the axes become non-negative (counted on the
    input's rank for Squeeze, the output's for Unsqueeze); the adapter once read ``axis`` instead."""
    feeds = {"x": data((2, 3, 1) if op == "Squeeze" else (2, 3), 41)}
    _kept(_typed([N(op, ["x"], ["y"], axes=[-1])], 11, feeds), 10, feeds)


def test_concat_without_axis_goes_up_to_4() -> None:
    """Concat-1 without ``axis`` (default 1) moved to 4, which requires ``axis``: axis=1 is written."""
    a, b = data((2, 3), 42), data((2, 2), 43)
    model = build([N("Concat", ["a", "b"], ["y"])], 3, {"a": a, "b": b}, typed=[np.concatenate([a, b], 1)])
    moved = convert_opset(model, 4)
    onnx.checker.check_model(moved, full_check=True)


EMPTY_OPTIONAL = {  # op, source opset, target, inputs, initializers
    "Clip-[x,'',max]": ("Clip", 13, 10, ["x", "", "hi"], {"hi": np.array(0.6, F32)}),
    "Dropout-[x,'']": ("Dropout", 13, 11, ["x", ""], {}),
    "Dropout-[x,'',mode]": ("Dropout", 13, 11, ["x", "", "m"], {"m": np.array(False)}),
    "Split-[x,'']": ("Split", 13, 12, ["x", ""], {}),
}


@pytest.mark.parametrize("name", list(EMPTY_OPTIONAL))
def test_an_empty_optional_input_goes_back_to_an_attribute_opset(name: str) -> None:
    """An optional input given as "" (Clip without min, Dropout without ratio, Split without sizes)
    moved below the opset that made it an input: the empty input is dropped with the rest (it once
    stayed, and the old schema got too many inputs)."""
    op, opset, target, inputs, inits = EMPTY_OPTIONAL[name]
    feeds = {"x": data((2, 4), 46)}
    outputs = ["y0", "y1"] if op == "Split" else ["y"]
    node = N(op, inputs, outputs, **({"axis": 1} if op == "Split" else {}))
    expected = run(build([node], opset, feeds, inits, outputs), feeds)
    _kept(build([node], opset, feeds, inits, outputs, typed=expected), target, feeds)


def test_gemm_with_an_empty_c_goes_below_11() -> None:
    """Gemm-11+ with inputs [A, B, ""] moved to 10: the zero C takes the empty slot (it was once
    appended after it, giving Gemm-9 four inputs)."""
    feeds = {"a": GA}
    _kept(_typed([N("Gemm", ["a", "b", ""], ["y"], transB=1)], 13, feeds, {"b": GB}), 10, feeds)


@pytest.mark.parametrize(("x_shape", "slope_shape"), [((2, 3, 3, 5), (3, 1)), ((2, 3, 4, 3), (3,))])
def test_prelu_slope_on_a_non_channel_axis_goes_below_7(x_shape: tuple[int, ...],
                                                        slope_shape: tuple[int, ...]) -> None:
    """PRelu-9 whose slope broadcasts onto H (3,1) or W (3,) moved to 5: refused, as PRelu-6's slope
    is per channel (the adapter once compared only the slope's size with the channel count)."""
    feeds = {"x": data(x_shape, 44)}
    model = _typed([N("PRelu", ["x", "s"], ["y"])], 9, feeds, {"s": data(slope_shape, 45)})
    _refused(model, 5, f"cannot go from opset 7 to 6: slope {list(slope_shape)} is not one value per channel")


def test_cast_reaches_the_newest_opset() -> None:
    """onnx 1.23 has Cast-28 (two more float types): a Cast model moves to the newest opset."""
    if latest_opset() < 28:
        pytest.skip("the installed onnx has no Cast-28")
    feeds = {"x": XC}
    model = _typed([N("Cast", ["x"], ["y"], to=TensorProto.INT32)], 13, feeds)
    try:
        convert_opset(model, latest_opset())
    except OpsetError as exc:
        raise AssertionError(str(exc)) from None


@pytest.mark.parametrize("axis", [2, -2])
def test_softmax_on_a_middle_axis_goes_up_to_13(axis: int) -> None:
    """Softmax-12 with axis 2 of a 4-D input moved to 13: the rows go back to the input's shape (the
    target [0, *shape[1:]] once copied the flattened dim 0, N*C, for N)."""
    feeds = {"x": X4}
    _kept(_typed([N("Softmax", ["x"], ["y"], axis=axis)], 12, feeds), 13, feeds)


def test_a_converted_model_that_fails_the_checker_is_one_sentence() -> None:
    """A model onnx's checker refuses after the move is an OpsetError naming both opsets, not onnx's own error."""
    x, y = (helper.make_tensor_value_info(n, TensorProto.FLOAT, [2]) for n in ("x", "y"))
    model = helper.make_model(helper.make_graph([N("Relu", ["nowhere"], ["y"])], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 12)])
    with pytest.raises(OpsetError, match="moved from opset 12 to 13 fails onnx's checker"):
        convert_opset(model, 13)
