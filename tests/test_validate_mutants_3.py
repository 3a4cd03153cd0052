"""zoo-validate, third round of mutants: the quantized rule's JSON fields and their reading back, the
rule on outputs that are not numbers, have no scale or are not finite, and the command's printed
lines (PASS/FAIL with the worst output, warnings on stderr, the closing "passed:" line with and
without the quantized rule).

Models are built with ``onnx.helper``; the values they produce are fixed by the ONNX operator
definitions (Identity copies; QuantizeLinear rounds x / scale to the nearest integer), and every
expected line, reason and figure below is written out by hand. Nothing here needs ``../shared``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper
from zooforge.artifacts.validation.parity import (
    Tolerance,
    ValidationReport,
    compare_quantized,
)
from zooforge.artifacts.validation.quantized import OutputStep, QuantizedRule
from zooforge.artifacts.validation.validate_cli import main

FED = np.array([[0.2, 1.5, -3.0]], np.float32)
QUANTIZED_RULE_TEXT = ("quantized variants: within 3 output quantization steps (a softmax of dequantized logits "
                       "within exp(2 x 3 x scale) of each probability; 0.05 x max|expected| where no scale is "
                       "known) and the same top-1 class")


def _save(folder: Path, nodes: list, initializers: list = ()) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
                              initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.save(model, str(folder / "model.onnx"))


def _test_set(folder: Path, fed: np.ndarray, expected: np.ndarray, named: bool = True) -> None:
    data = folder / "test_data_set_0"
    data.mkdir(parents=True, exist_ok=True)
    onnx.save_tensor(numpy_helper.from_array(fed, "x" if named else ""), str(data / "input_0.pb"))
    onnx.save_tensor(numpy_helper.from_array(expected, "y" if named else ""), str(data / "output_0.pb"))


def identity_folder(folder: Path, expected: np.ndarray, named: bool = True) -> Path:
    """fp32 y = Identity(x), fed ``FED``."""
    _save(folder, [helper.make_node("Identity", ["x"], ["y"])])
    _test_set(folder, FED, expected, named)
    return folder


def qdq_folder(folder: Path, expected: np.ndarray) -> Path:
    """A QDQ model, y = DequantizeLinear(QuantizeLinear(x, 0.5, 0), 0.5, 0): fed ``FED`` it gives
    [0, 1.5, -3] (0.2 / 0.5 = 0.4 rounds to 0)."""
    _save(folder,
          [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
           helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])],
          [numpy_helper.from_array(np.array(0.5, np.float32), "s"),
           numpy_helper.from_array(np.array(0, np.int8), "z")])
    _test_set(folder, FED, expected)
    return folder


def validate(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


# --------------------------------------------------------------------------- JSON of quantized outputs


def test_quantized_output_json_carries_rule_and_needed_steps_and_reads_back(tmp_path: Path) -> None:
    """The produced 0 sits one step (0.5) from the expected 0.5: needed steps 1 - 1/64 = 0.984375."""
    folder = qdq_folder(tmp_path / "m", np.array([[0.5, 1.5, -3.0]], np.float32))
    report_path = tmp_path / "report.json"
    result = validate(folder, "--runtime", "onnxruntime", "--json", report_path)
    assert result.exit_code == 0, result.output
    text = report_path.read_text()
    (out,) = json.loads(text)["sets"][0]["outputs"]
    assert out["name"] == "y"
    assert out["rule"] == "quantized (dequantized: 3 steps of 0.5; top-1)"
    assert out["needed_steps"] == 0.984375
    assert out["max_abs"] == 0.5 and out["atol"] == 1.5078125  # (3 + 1/64) x 0.5

    loaded = ValidationReport.from_json(text)
    (back,) = loaded.sets[0].outputs
    assert back.rule == "quantized (dequantized: 3 steps of 0.5; top-1)"
    assert back.needed_steps == 0.984375
    # Re-thresholding at rtol=atol=0 keeps the quantized verdict: its rule is not rtol/atol.
    strict = loaded.rethreshold(Tolerance(0.0, 0.0))
    assert strict.passed and strict.sets[0].outputs[0].passed
    # And the loaded report writes the same quantized fields again.
    assert json.loads(strict.to_json())["sets"][0]["outputs"][0]["rule"] == out["rule"]


# --------------------------------------------------------------------------- compare_quantized


def test_quantized_rule_on_a_bool_output_keeps_its_name_and_compares_exactly() -> None:
    flags = np.array([[True, False, True]])
    same = compare_quantized("flags", flags, flags.copy(), OutputStep("unknown"), QuantizedRule())
    assert (same.name, same.passed, same.compared) == ("flags", True, True)
    other = compare_quantized("flags", flags, np.array([[True, True, True]]), OutputStep("unknown"), QuantizedRule())
    assert (other.name, other.passed) == ("flags", False)
    assert other.reason == ("values differ beyond rtol=0, atol=0: 1 of 3 elements differ; max abs error 1 at [0, 1] "
                            "(got 1, expected 0), max rel error inf")


def test_quantized_rule_without_a_scale_uses_the_fallback_and_says_so() -> None:
    """No scale: |got - exp| <= 0.05 x max|exp| = 0.15; an error of 0.25 fails, no steps in the reason."""
    expected = np.array([[0.25, 1.5, -3.0]], np.float32)
    close = compare_quantized("y", expected, np.array([[0.25, 1.5, -2.875]], np.float32), OutputStep("unknown"),
                              QuantizedRule())
    assert close.passed and math.isclose(close.atol, 0.15) and close.needed_steps is None
    far = compare_quantized("y", expected, np.array([[0.25, 1.5, -2.75]], np.float32), OutputStep("unknown"),
                            QuantizedRule())
    assert not far.passed
    assert far.reason == ("beyond the quantized rule, no output scale: 0.05 x max|expected|: values differ beyond "
                          "rtol=0, atol=0.15: 1 of 3 elements differ; max abs error 0.25 at [0, 2] (got -2.75, "
                          "expected -3), max rel error 0.0833")


def test_quantized_rule_reports_non_finite_values_as_such() -> None:
    """A NaN is not a drift in steps: the reason is the non-finite sentence, without the rule's prefix."""
    expected = np.array([[0.5, 1.5, -3.0]], np.float32)
    got = np.array([[math.nan, 1.5, -3.0]], np.float32)
    report = compare_quantized("y", expected, got, OutputStep("dequantized", 0.5), QuantizedRule())
    assert not report.passed
    assert report.reason == ("non-finite values: 0 expected and 1 produced elements are NaN or infinite "
                             "(first at [0, 0]); NaN never matches")


# --------------------------------------------------------------------------- printed lines


def test_failing_run_prints_its_fail_line_with_the_worst_output(tmp_path: Path) -> None:
    folder = identity_folder(tmp_path / "m", np.array([[0.45, 1.5, -3.0]], np.float32))
    result = validate(folder, "--runtime", "onnxruntime", "--strict-quantized")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        (f"FAIL  {folder} / test_data_set_0  onnxruntime (opset 13)  worst 'y': max abs 0.25, max rel 0.556, "
         "mean abs 0.0833"),
        "FAILED: 1 failure(s):",
        (f"  {folder} / test_data_set_0 / y: values differ beyond rtol=0.001, atol=1e-07: 1 of 3 elements differ; "
         "max abs error 0.25 at [0, 0] (got 0.200000003, expected 0.449999988), max rel error 0.556 (onnxruntime)"),
    ]


def test_passing_strict_run_prints_the_worst_output_and_a_bare_passed_line(tmp_path: Path) -> None:
    folder = identity_folder(tmp_path / "m", FED)
    result = validate(folder, "--runtime", "onnxruntime", "--strict-quantized")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"PASS  {folder} / test_data_set_0  onnxruntime (opset 13)  worst 'y': max abs 0, max rel 0, mean abs 0",
        "passed: 1 model/test set/runtime run(s) at rtol=0.001, atol=1e-07",
    ]


def test_passing_run_with_the_quantized_rule_names_it(tmp_path: Path) -> None:
    folder = qdq_folder(tmp_path / "m", np.array([[0.5, 1.5, -3.0]], np.float32))
    result = validate(folder, "--runtime", "onnxruntime")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        (f"PASS  {folder} / test_data_set_0  onnxruntime (opset 13)  worst 'y': max abs 0.5, max rel 1, "
         "mean abs 0.167"),
        f"passed: 1 model/test set/runtime run(s) at rtol=0.001, atol=1e-07; {QUANTIZED_RULE_TEXT}",
    ]


def test_warnings_go_to_stderr_not_stdout(tmp_path: Path) -> None:
    folder = identity_folder(tmp_path / "m", FED, named=False)
    result = validate(folder, "--runtime", "onnxruntime", "--strict-quantized")
    assert result.exit_code == 0, result.output
    warning = (f"warning: {folder} / test_data_set_0: tensors without names (pre-2019 test data) mapped by "
               "position: input_0.pb -> 'x', output_0.pb -> 'y'")
    assert result.stderr.splitlines() == [warning]
    assert result.stdout.splitlines() == [
        f"PASS  {folder} / test_data_set_0  onnxruntime (opset 13)  worst 'y': max abs 0, max rel 0, mean abs 0",
        "passed: 1 model/test set/runtime run(s) at rtol=0.001, atol=1e-07",
    ]
