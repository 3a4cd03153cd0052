"""Tests for the mutants that survived the second mutmut run over ``versioning/``.

Expected values never come from the code under test: onnxruntime on the equivalent modern
(opset >= 7) model, the ONNX operator specs (quoted where they decide), hand-computed NumPy,
hand-written names, attributes and sentences. Two tests pin bugs the mutants exposed: a one-element
B of rank 2+ that the legacy broadcasting spec lists but the legacy kernels refused, and a
ConstantOfShape value of several elements that the converter folded although the spec,
onnxruntime and onnx's reference evaluator all take one element only.
"""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from zooforge.versioning import adapters, convert, runtime
from zooforge.versioning.adapters import _reshaped
from zooforge.versioning.convert import convert_opset
from zooforge.versioning.editor import GraphEditor
from zooforge.versioning.errors import OpsetError
from zooforge.versioning.legacy_ops import _LegacyOp, _schema, kernels_for_opset
from zooforge.versioning.opsets import opset_info

N = helper.make_node
F, F32 = TensorProto.FLOAT, np.float32


def model(nodes: list, opset: int, inputs: dict, outputs: dict, inits: dict | None = None, elem: int = F,
          domain: str = "") -> onnx.ModelProto:
    """``inputs``/``outputs``: name -> shape (``None``: unknown) of tensors of type ``elem``."""
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(k, elem, s) for k, s in inputs.items()],
                              [helper.make_tensor_value_info(k, elem, s) for k, s in outputs.items()],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid(domain, opset)])
    m.ir_version = opset_info(opset).ir_version
    return m


def ort(m: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    return onnxruntime.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


def reference(m: onnx.ModelProto, feeds: dict) -> np.ndarray:
    return runtime.run_model(m, feeds, runtime="reference")["y"]


def data(shape: tuple, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(F32)


def conversion_error(m: onnx.ModelProto, target: int) -> str:
    with pytest.raises(OpsetError) as err:
        convert_opset(m, target)
    return str(err.value)


# -- adapters and the converter ----------------------------------------------------------------

def test_reshaped_at_opset_5_feeds_the_shape_as_an_input() -> None:
    """Reshape-5 takes the target shape as its second input; it has no ``shape`` attribute."""
    m = model([N("Relu", ["x"], ["y"])], 5, {"x": (2, 3)}, {"y": (3, 2)})
    out = _reshaped(GraphEditor(m), m.graph.node[0], "x", (3, 2))
    m.graph.node[-1].input[0] = out
    first = m.graph.node[0]
    assert (first.op_type, first.input[0], list(first.output), list(first.attribute)) == ("Reshape", "x", [out], [])
    shape = next(t for t in m.graph.initializer if t.name == first.input[1])
    assert numpy_helper.to_array(shape).tolist() == [3, 2]
    onnx.checker.check_model(m, full_check=True)
    x = data((2, 3))
    np.testing.assert_array_equal(reference(m, {"x": x}), np.maximum(x.reshape(3, 2), 0))


def test_prelu_up_aligns_a_per_channel_slope_of_a_rank_3_input() -> None:
    """PRelu-6's slope (C,) is per channel; at opset 7 it must become (C, 1) against (N, C, L)."""
    x, s = data((2, 3, 4)), np.array([0.5, -2.0, 3.0], F32)
    up = convert_opset(model([N("PRelu", ["x", "s"], ["y"])], 6, {"x": (2, 3, 4)}, {"y": (2, 3, 4)}, {"s": s}), 7)
    np.testing.assert_allclose(ort(up, {"x": x})[0], np.where(x < 0, x * s[None, :, None], x), rtol=1e-6)


def test_prelu_down_refuses_a_slope_of_unknown_shape() -> None:
    m = model([N("PRelu", ["x", "s"], ["y"], name="act")], 7, {"x": (2, 3), "s": None}, {"y": (2, 3)})
    assert conversion_error(m, 6) == "node 'act' (PRelu) cannot go from opset 7 to 6: the PRelu slope's shape is unknown"


def test_a_schema_change_without_adapter_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """A newer onnx may change an operator zooforge converts before the table has an adapter for it."""
    table = adapters.changes_by_key()
    del table[("Relu", 14)]
    monkeypatch.setattr(convert, "changes_by_key", lambda: table)
    m = model([N("Relu", ["x"], ["y"], name="r")], 13, {"x": (2,)}, {"y": (2,)})
    assert conversion_error(m, 14) == ("node 'r' (Relu) cannot go from opset 13 to 14: its schema changed at 14 "
                                       "and zooforge has no adapter for that change")


def test_a_checker_error_without_text_is_named_by_its_class(monkeypatch: pytest.MonkeyPatch) -> None:
    def silent(_model: onnx.ModelProto) -> None:
        raise onnx.checker.ValidationError("")

    monkeypatch.setattr(convert, "check_graph", silent)
    m = model([N("Relu", ["x"], ["y"])], 13, {"x": (2,)}, {"y": (2,)})
    assert conversion_error(m, 14) == ("the model moved from opset 13 to 14 fails onnx's checker (ValidationError); "
                                       "the source model may be invalid, or an adapter is wrong")


def test_an_opset_imported_as_ai_onnx_is_restamped() -> None:
    """"ai.onnx" names the default domain too (onnx's checker and onnxruntime accept the import)."""
    moved = convert_opset(model([N("Relu", ["x"], ["y"])], 13, {"x": (2,)}, {"y": (2,)}, domain="ai.onnx"), 14)
    assert [(o.domain, o.version) for o in moved.opset_import] == [("ai.onnx", 14)]
    assert moved.ir_version == opset_info(14).ir_version


def _constant_of_shape(value: np.ndarray) -> onnx.ModelProto:
    node = N("ConstantOfShape", ["s"], ["c"], value=numpy_helper.from_array(value, "value"))
    m = model([node, N("Identity", ["c"], ["y"])], 9, {}, {"y": (2, 3)}, {"s": np.array([2, 3], np.int64)},
              elem=TensorProto.INT64)
    m.ir_version = 4  # the shape initializer is not a graph input
    return m


def test_a_constant_of_shape_value_of_two_elements_is_refused() -> None:
    """The spec: "value ... Should be a one-element tensor"; onnxruntime refuses two, so folding the first is wrong."""
    m = _constant_of_shape(np.array([7, 8], np.int64))
    with pytest.raises(onnxruntime.capi.onnxruntime_pybind11_state.Fail, match="single-element tensor"):
        ort(m, {})
    assert GraphEditor(m).constant("c") is None
    assert conversion_error(m, 8) == ("node 'c' (ConstantOfShape) cannot go from opset 9 to 8: its value has 2 "
                                      "elements; ConstantOfShape takes one")


def test_a_one_element_constant_of_shape_value_still_folds() -> None:
    m = _constant_of_shape(np.array([7], np.int64))
    expected = ort(m, {})[0]
    down = convert_opset(m, 8)
    assert [n.op_type for n in down.graph.node] == ["Identity"]
    np.testing.assert_array_equal(numpy_helper.to_array(next(t for t in down.graph.initializer if t.name == "c")),
                                  expected)


# -- editor ------------------------------------------------------------------------------------

def test_an_initializer_added_after_inference_has_its_shape() -> None:
    editor = GraphEditor(model([N("Relu", ["x"], ["y"])], 13, {"x": (2, 3)}, {"y": (2, 3)}))
    assert editor.shape("x") == (2, 3)  # shapes inferred for this step
    name = editor.add_initializer("w", np.zeros((4, 5), F32))
    assert (editor.shape(name), editor.rank(name)) == ((4, 5), 2)


# -- legacy kernels ----------------------------------------------------------------------------

def test_a_kernel_with_its_own_schema_keeps_it() -> None:
    class Gemm(_LegacyOp):
        op_type, since_version, op_schema = "Gemm", 6, _schema("Gemm", 9)

    assert Gemm.op_schema.since_version == 9


@pytest.mark.parametrize("a_shape, b_shape", [((2, 3, 4, 5), (1, 1)), ((2, 3, 4), (1, 1, 1)), ((2, 3), (1, 1))])
def test_legacy_broadcast_of_a_one_element_b_of_any_rank_up_to_a(a_shape: tuple, b_shape: tuple) -> None:
    """Add-6's spec lists "shape(A) = (2, 3, 4, 5), shape(B) = (1, 1), i.e. B is an 1-element tensor"."""
    a, b = data(a_shape), np.full(b_shape, 1.5, F32)
    legacy = model([N("Add", ["a", "b"], ["y"], broadcast=1)], 6, {"a": a_shape, "b": b_shape}, {"y": a_shape})
    modern = model([N("Add", ["a", "b"], ["y"])], 7, {"a": a_shape, "b": b_shape}, {"y": a_shape})
    expected = ort(modern, {"a": a, "b": b})[0]
    np.testing.assert_allclose(expected, a + F32(1.5), rtol=1e-6)
    np.testing.assert_allclose(reference(legacy, {"a": a, "b": b}), expected, rtol=1e-6)


def test_legacy_broadcast_refuses_a_one_element_b_of_higher_rank() -> None:
    """The spec allows a one-element B of "rank equal to or smaller than the first tensor" only."""
    m = model([N("Add", ["a", "b"], ["y"], broadcast=1)], 6, {"a": (3,), "b": (1, 1)}, {"y": None})
    with pytest.raises(ValueError, match=r"^legacy broadcast cannot place shape \(1, 1\) onto \(3,\) at axis -1$"):
        reference(m, {"a": data((3,)), "b": np.ones((1, 1), F32)})


def test_div6_of_doubles_keeps_the_fraction() -> None:
    m = model([N("Div", ["a", "b"], ["y"])], 6, {"a": (3,), "b": (3,)}, {"y": (3,)}, elem=TensorProto.DOUBLE)
    got = reference(m, {"a": np.array([7.0, -7.0, 1.0]), "b": np.array([2.0, 2.0, 4.0])})
    assert got.dtype == np.float64 and got.tolist() == [3.5, -3.5, 0.25]


@pytest.mark.parametrize("shape", [(2, 1, 4), (2, 3, 4)])
def test_prelu1_slope_that_is_not_per_channel_keeps_the_input_shape(shape: tuple) -> None:
    """PRelu applies elementwise: Y has X's shape even for a slope (L,) that matches no channel count."""
    x = data(shape)
    m = model([N("PRelu", ["x", "s"], ["y"])], 5, {"x": shape, "s": (4,)}, {"y": shape})  # PRelu-1: 6 runs on onnx's kernel
    assert reference(m, {"x": x, "s": np.arange(4, dtype=F32)}).shape == shape


def test_gemm6_without_broadcast_names_the_c_it_needs() -> None:
    m = model([N("Gemm", ["a", "b", "c"], ["y"], broadcast=0)], 6, {"a": (2, 3), "b": (3, 4), "c": (4,)}, {"y": None})
    feeds = {"a": data((2, 3)), "b": data((3, 4), 1), "c": data((4,), 2)}
    with pytest.raises(ValueError, match=r"^Gemm without broadcast needs C of shape \(2, 4\), got \(4,\)$"):
        reference(m, feeds)


def test_concat1_honours_a_given_axis() -> None:
    m = model([N("Concat", ["a", "b"], ["y"], axis=0)], 3, {"a": (1, 2), "b": (1, 2)}, {"y": (2, 2)})
    got = reference(m, {"a": np.ones((1, 2), F32), "b": np.zeros((1, 2), F32)})
    assert got.tolist() == [[1.0, 1.0], [0.0, 0.0]]


def test_reshape1_without_shape_says_so() -> None:
    m = model([N("Reshape", ["x"], ["y"])], 4, {"x": (2, 3)}, {"y": None})
    with pytest.raises(ValueError, match=r"^Reshape-1 needs its 'shape' attribute$"):
        reference(m, {"x": data((2, 3))})


def test_cast1_kernel_takes_the_type_name_as_bytes() -> None:
    """An onnx STRING attribute is bytes in the proto (``AttributeProto.s``); the kernel reads both forms."""
    m = model([N("Cast", ["x"], ["y"], to="DOUBLE")], 5, {"x": (2,)}, {"y": (2,)})
    kernel = ReferenceEvaluator(m, new_ops=list(kernels_for_opset(5))).rt_nodes_[0]
    (got,) = kernel._run(np.array([1.5, -2.0], F32), to=b"DOUBLE")
    assert got.dtype == np.float64 and got.tolist() == [1.5, -2.0]


def test_averagepool1_valid_ignores_pads_as_onnxruntime_does() -> None:
    """auto_pad VALID means no padding (spec); onnxruntime's AveragePool-7 ignores pads given with it."""
    x = np.arange(16, dtype=F32).reshape(1, 1, 4, 4)
    node = N("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2], auto_pad="VALID", pads=[1, 1, 1, 1])
    expected = ort(model([node], 7, {"x": x.shape}, {"y": None}), {"x": x})[0]
    np.testing.assert_array_equal(expected, [[[[2.5, 4.5], [10.5, 12.5]]]])
    np.testing.assert_array_equal(reference(model([node], 6, {"x": x.shape}, {"y": None}), {"x": x}), expected)


# -- runtime.Session ---------------------------------------------------------------------------

def _relu() -> onnx.ModelProto:
    return model([N("Relu", ["x"], ["y"])], 13, {"x": (1, 3)}, {"y": (1, 3)})


def test_onnxruntime_session_is_on_the_cpu_provider_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # onnxruntime warns about a provider name it does not know
        session = runtime.Session(runtime.ONNXRUNTIME, _relu())
    assert session._ort.get_providers() == ["CPUExecutionProvider"]


def test_onnxruntime_session_still_logs_errors(capfd: pytest.CaptureFixture) -> None:
    """Level 3 is onnxruntime's ERROR: warnings are muted, a failing kernel is still reported."""
    m = model([N("Add", ["a", "b"], ["y"])], 13, {"a": ["n"], "b": ["m"]}, {"y": None})
    session = runtime.Session(runtime.ONNXRUNTIME, m)
    capfd.readouterr()
    with pytest.raises(onnxruntime.capi.onnxruntime_pybind11_state.Fail):
        session.run({"a": np.ones(2, F32), "b": np.ones(3, F32)})
    assert "Non-zero status code returned while running Add node" in capfd.readouterr().err


@pytest.mark.parametrize("name", [runtime.REFERENCE, runtime.ONNXRUNTIME, runtime.ONNXRUNTIME_LIFTED])
def test_a_model_given_as_proto_is_not_loaded_again(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Re-loading serializes the proto, which protobuf cannot do past 2 GiB (and costs a copy)."""
    def no_load(_model: object) -> None:
        raise AssertionError("a ModelProto was loaded again")

    m = _relu() if name != runtime.ONNXRUNTIME_LIFTED else model([N("Relu", ["x"], ["y"])], 6, {"x": (1, 3)},
                                                                 {"y": (1, 3)})
    monkeypatch.setattr(runtime, "_load", no_load)
    x = np.array([[-1.0, 0.5, 2.0]], F32)
    assert runtime.Session(name, m).run({"x": x})["y"].tolist() == [[0.0, 0.5, 2.0]]
