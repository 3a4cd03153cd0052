"""The cross-CPU rule of quantized variants, case by case (mutation-testing survivors of
``zooforge.artifacts.validation.quantized``): the rule's settings, the detection of quantized
models (lineage first, then operators), each output's step kind, integer outputs, the fallback
bound, and the ``needed_steps`` figure for one-element, empty and zero-probability outputs.

Oracles: hand-built ONNX graphs whose scales are chosen here, onnxruntime (through
``validate_path``), and bounds worked by hand from the documented rule with numbers written out.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from zooforge.artifacts.validation.parity import (
    OutputReport,
    QuantizedRule,
    ValidationReport,
    validate_path,
)
from zooforge.artifacts.validation.quantized import (
    OutputStep,
    bounds,
    output_steps,
    quantized_format,
    steps_needed,
)

FLOAT, UINT8 = TensorProto.FLOAT, TensorProto.UINT8


def make_model(nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto],
               initializers: tuple | list = (), settings: dict | None = None) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    if settings is not None:
        helper.set_model_props(model, {"zooforge.settings": json.dumps(settings)})
    onnx.checker.check_model(model)
    return model


def scale_zero(scale: float) -> list[onnx.TensorProto]:
    return [numpy_helper.from_array(np.array(scale, np.float32), "s"),
            numpy_helper.from_array(np.array(0, np.uint8), "z")]


def qdq_model(shape: list[int], scale: float = 0.1, tail: list | None = None, out: str = "y",
              settings: dict | None = None, extra: tuple = ()) -> onnx.ModelProto:
    """y = DequantizeLinear(QuantizeLinear(x, scale, 0), scale, 0), then the ``tail`` nodes
    (reading ``dq`` and the ``extra`` initializers)."""
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq" if tail else out])] + list(tail or [])
    return make_model(nodes, [helper.make_tensor_value_info("x", FLOAT, shape)],
                      [helper.make_tensor_value_info(out, FLOAT, shape)], scale_zero(scale) + list(extra), settings)


def folder(root: Path, model: onnx.ModelProto, x: np.ndarray, expected: np.ndarray) -> Path:
    """A model folder: model.onnx and test_data_set_0 with ``x`` and the expected output."""
    (root / "test_data_set_0").mkdir(parents=True)
    onnx.save(model, str(root / "model.onnx"))
    onnx.save_tensor(numpy_helper.from_array(x, "x"), str(root / "test_data_set_0" / "input_0.pb"))
    name = model.graph.output[0].name
    onnx.save_tensor(numpy_helper.from_array(expected, name), str(root / "test_data_set_0" / "output_0.pb"))
    return root


def only_output(report: ValidationReport) -> OutputReport:
    """The one output of the one onnxruntime test set."""
    (s,) = [s for s in report.sets if s.runtime == "onnxruntime"]
    (out,) = s.outputs
    return out


# ------------------------------------------------------------------ the rule's settings


@pytest.mark.parametrize("kwargs, message", [
    ({"fallback": -0.5}, "quantized fallback must be a finite number >= 0, got -0.5"),
    ({"fallback": math.inf}, "quantized fallback must be a finite number >= 0, got inf"),
    ({"steps": -1.0}, "quantized steps must be a finite number >= 0, got -1.0"),
])
def test_a_bad_setting_is_refused_by_its_name(kwargs, message):
    with pytest.raises(ValueError) as caught:
        QuantizedRule(**kwargs)
    assert str(caught.value) == message


def test_zero_steps_and_zero_fallback_are_a_rule(tmp_path):
    """0 steps: only float32 rounding (1/64 step) is allowed; one step off fails."""
    rule = QuantizedRule(0, 0)
    assert (rule.steps, rule.fallback) == (0, 0)
    x = np.array([[[0.0, 1.0], [2.0, 5.0]]], np.float32)  # on the 0.1 grid: the model reproduces it
    exact = validate_path(folder(tmp_path / "a", qdq_model([1, 2, 2]), x, x), quantized=rule)
    assert exact.passed, exact.failures()
    assert only_output(exact).atol == pytest.approx(0.1 / 64)
    off = validate_path(folder(tmp_path / "b", qdq_model([1, 2, 2]), x, x + np.float32(0.1)), quantized=rule)
    assert not off.passed and "beyond the quantized rule, dequantized: 0 steps" in only_output(off).reason


# ------------------------------------------------------------------ which models are quantized


RELU = make_model([helper.make_node("Relu", ["x"], ["y"])], [helper.make_tensor_value_info("x", FLOAT, [1, 4])],
                  [helper.make_tensor_value_info("y", FLOAT, [1, 4])])


def with_settings(model: onnx.ModelProto, value: str) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    helper.set_model_props(copy, {"zooforge.settings": value})
    return copy


def test_the_lineage_names_the_format_before_the_operators():
    assert quantized_format(RELU) is None
    lineage = {"target_opset": 13, "quantization": {"format": "qdq", "samples": 8}}
    assert quantized_format(with_settings(RELU, json.dumps(lineage))) == "qdq"
    # A Q/DQ graph whose lineage says int8: the lineage wins.
    int8 = {"quantization": {"format": "int8"}}
    assert quantized_format(with_settings(qdq_model([1, 4]), json.dumps(int8))) == "int8"
    # No format, an empty format, a settings object without quantization: the operators decide.
    for settings in ({"target_opset": 13}, {"quantization": {}}, {"quantization": {"format": ""}}):
        assert quantized_format(with_settings(RELU, json.dumps(settings))) is None
        assert quantized_format(with_settings(qdq_model([1, 4]), json.dumps(settings))) == "qdq"


@pytest.mark.parametrize("value", ["{not json", "[1, 2]", "\"qdq\"", "null"])
def test_an_unreadable_lineage_leaves_the_operators_to_decide(value):
    assert quantized_format(with_settings(RELU, value)) is None
    assert quantized_format(with_settings(qdq_model([1, 4]), value)) == "qdq"


def test_a_lineage_format_puts_an_fp32_looking_graph_under_the_quantized_rule(tmp_path):
    x = np.array([[0.5, -1.0, 2.0, 3.0]], np.float32)
    expected = np.array([[0.5, 0.0, 2.0, 3.1]], np.float32)  # 0.1 off: strict fails, 0.05 x 3.1 = 0.155 passes
    lineage = json.dumps({"quantization": {"format": "int8"}})
    report = validate_path(folder(tmp_path / "q", with_settings(RELU, lineage), x, expected))
    assert report.passed, report.failures()
    assert only_output(report).rule == "quantized (no output scale: 0.05 x max|expected|; top-1)"
    strict = validate_path(folder(tmp_path / "f", RELU, x, expected))
    assert not strict.passed and only_output(strict).rule == "strict"


def test_operators_name_the_format_of_models_from_elsewhere():
    assert quantized_format(qdq_model([1, 4])) == "qdq"
    integer = make_model(
        [helper.make_node("MatMulInteger", ["a", "b"], ["y"])],
        [helper.make_tensor_value_info("a", UINT8, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [1, 2])],
        [numpy_helper.from_array(np.array([[1, 2], [3, 4]], np.uint8), "b")])
    assert quantized_format(integer) == "int8"
    only_quantize = make_model(
        [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])],
        [helper.make_tensor_value_info("x", FLOAT, [1, 4])], [helper.make_tensor_value_info("y", UINT8, [1, 4])],
        scale_zero(0.1))
    assert quantized_format(only_quantize) is None  # a QuantizeLinear alone is not a Q/DQ pair


# ------------------------------------------------------------------ each output's step


def test_output_steps_name_each_kind_with_its_scale():
    both = make_model(
        [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
         helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"]),
         helper.make_node("Flatten", ["dq"], ["flat"]),
         helper.make_node("Add", ["dq", "x"], ["sum"])],
        [helper.make_tensor_value_info("x", FLOAT, [1, 4])],
        [helper.make_tensor_value_info("q", UINT8, [1, 4]), helper.make_tensor_value_info("flat", FLOAT, [1, 4]),
         helper.make_tensor_value_info("sum", FLOAT, [1, 4])], scale_zero(0.25))
    steps = output_steps(both)
    assert steps == {"q": OutputStep("quantized", 1.0), "flat": OutputStep("dequantized", 0.25),
                     "sum": OutputStep("unknown", None)}
    assert {k: v.to_dict() for k, v in steps.items()} == {
        "q": {"kind": "quantized", "scale": 1.0}, "flat": {"kind": "dequantized", "scale": 0.25},
        "sum": {"kind": "unknown", "scale": None}}


def test_a_scale_held_by_a_constant_node_is_found():
    scale = helper.make_node("Constant", [], ["s"], value=numpy_helper.from_array(np.array([0.25], np.float32)))
    model = make_model(
        [scale, helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
         helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])],
        [helper.make_tensor_value_info("x", FLOAT, [1, 4])], [helper.make_tensor_value_info("y", FLOAT, [1, 4])],
        [numpy_helper.from_array(np.array(0, np.uint8), "z")])
    assert output_steps(model) == {"y": OutputStep("dequantized", 0.25)}


def quantize_model() -> onnx.ModelProto:
    return make_model([helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"])],
                      [helper.make_tensor_value_info("x", FLOAT, [1, 2, 2])],
                      [helper.make_tensor_value_info("q", UINT8, [1, 2, 2])], scale_zero(0.1),
                      {"quantization": {"format": "qdq"}})


@pytest.mark.parametrize("offset, passes", [(3, True), (4, False)])
def test_an_integer_output_is_judged_in_integer_units(tmp_path, offset, passes):
    """q = [0, 10, 20, 50]; 3 steps allow |got - exp| <= 3 + 1/64 (a fallback of 0.05 x 47 would not)."""
    x = np.array([[[0.0, 1.0], [2.0, 5.0]]], np.float32)
    expected = (np.array([[[0, 10], [20, 50]]]) + offset * np.array([[[1, -1], [1, -1]]])).astype(np.uint8)
    report = validate_path(folder(tmp_path, quantize_model(), x, expected), quantized=QuantizedRule(3))
    out = only_output(report)
    assert out.rule == "quantized (quantized: 3 steps; top-1)"
    assert out.atol == 3 + 1 / 64
    assert out.needed_steps == offset - 1 / 64
    assert report.passed is passes, report.failures()


# ------------------------------------------------------------------ no known scale: the fallback


def test_the_fallback_bound_is_a_share_of_the_largest_finite_expected_value():
    expected = np.array([np.inf, 1.0, -2.0, np.nan], np.float32)
    assert bounds(OutputStep("unknown"), QuantizedRule(3, 0.05), expected) == (
        0.0, 0.05 * 2.0, "no output scale: 0.05 x max|expected|")
    assert bounds(OutputStep("unknown"), QuantizedRule(3, 0.05), np.array([3, -7], np.int32))[1] == 0.05 * 7


def plus_one_model() -> onnx.ModelProto:
    one = numpy_helper.from_array(np.array(1.0, np.float32), "one")
    return qdq_model([1, 2, 2], tail=[helper.make_node("Add", ["dq", "one"], ["y"])], extra=(one,))


@pytest.mark.parametrize("delta, passes", [(0.25, True), (0.35, False)])
def test_an_output_without_a_scale_is_judged_by_the_fallback(tmp_path, delta, passes):
    """y = DQ(Q(x)) + 1 (Add is no pass-through): max|exp| = 6, so 0.05 x 6 = 0.3 is allowed."""
    model = plus_one_model()
    x = np.array([[[0.0, 1.0], [2.0, 5.0]]], np.float32)
    expected = np.array([[[1.0, 2.0], [3.0, 6.0]]], np.float32) + np.float32(delta) * np.array([[[1, -1], [-1, 0]]],
                                                                                               np.float32)
    report = validate_path(folder(tmp_path, model, x, expected), quantized=QuantizedRule(3, 0.05))
    out = only_output(report)
    assert out.rule == "quantized (no output scale: 0.05 x max|expected|; top-1)"
    assert out.atol == pytest.approx(0.05 * 6.0)
    assert out.needed_steps is None
    assert report.passed is passes, report.failures()


def test_an_infinite_expected_value_leaves_the_fallback_finite(tmp_path):
    """The infinity fails (it never matches); the bound and the JSON report stay finite."""
    model = plus_one_model()
    x = np.array([[[0.0, 1.0], [2.0, 5.0]]], np.float32)
    expected = np.array([[[1.0, 2.0], [3.0, np.inf]]], np.float32)
    report = validate_path(folder(tmp_path, model, x, expected), quantized=QuantizedRule(3, 0.05))
    out = only_output(report)
    assert out.atol == pytest.approx(0.05 * 3.0)
    assert not report.passed and out.reason.startswith("non-finite values")
    assert json.loads(report.to_json())["sets"][0]["outputs"][0]["atol"] == pytest.approx(0.15)


# ------------------------------------------------------------------ needed_steps


def test_a_one_element_output_reports_its_needed_steps(tmp_path):
    x = np.array([0.5], np.float32)
    expected = np.array([0.7], np.float32)  # two steps of 0.1 above the model's 0.5
    report = validate_path(folder(tmp_path, qdq_model([1]), x, expected), quantized=QuantizedRule(3))
    assert report.passed, report.failures()
    assert only_output(report).needed_steps == pytest.approx(2 - 1 / 64, abs=1e-5)


def test_an_empty_output_needs_no_steps(tmp_path):
    empty = np.zeros((0, 3), np.float32)
    assert steps_needed(OutputStep("dequantized", 0.1), empty, empty) is None
    assert steps_needed(OutputStep("softmax", 0.1), empty, empty) is None
    report = validate_path(folder(tmp_path, qdq_model([0, 3]), empty, empty), quantized=QuantizedRule(3))
    assert report.passed, report.failures()
    assert only_output(report).needed_steps is None


def test_a_zero_probability_met_exactly_needs_no_steps():
    step = OutputStep("softmax", 0.1)
    probs = np.array([[0.5, 0.5, 0.0]])
    assert steps_needed(step, probs, probs) == 0.0
    moved = np.array([[0.55, 0.45, 0.0]])  # 10% off each nonzero probability
    assert steps_needed(step, probs, moved) == pytest.approx(math.log1p(0.1 - 1e-5) / (2 * 0.1), rel=1e-9)


def test_a_softmax_with_an_underflowed_probability_needs_no_steps(tmp_path):
    """Logits [0, 200, 199] (scale 1): exp(-200) underflows float32, so the first probability is 0."""
    model = qdq_model([1, 3], scale=1.0, tail=[helper.make_node("Softmax", ["dq"], ["y"])])
    x = np.array([[0.0, 200.0, 199.0]], np.float32)
    z = x.astype(np.float64)[0]
    expected = (np.exp(z - z.max()) / np.exp(z - z.max()).sum()).astype(np.float32)[None]
    assert expected[0, 0] == 0.0
    report = validate_path(folder(tmp_path, model, x, expected), quantized=QuantizedRule(3))
    out = only_output(report)
    assert report.passed, report.failures()
    assert out.rule.startswith("quantized (softmax of dequantized logits: 3 logit steps of 1")
    assert out.needed_steps == 0.0
