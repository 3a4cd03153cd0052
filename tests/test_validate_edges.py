"""zoo-validate edge cases: whole reports and whole sentences, written out by hand.

Every expected value here is a literal (or plain arithmetic on exactly representable numbers,
shown beside it): reports round-trip through JSON field by field, rethreshold decides exactly at
its boundaries and refuses what the stored figures cannot settle, test data that does not fit the
graph fails the set with one sentence per problem, and unusable input raises one sentence naming
the file. Models are built with ``onnx.helper``; nothing here needs ``../shared``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import re
import shutil
import tarfile
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from zooforge.artifacts.validation import parity as validate
from zooforge.artifacts.validation.parity import (
    OutputReport,
    RethresholdError,
    SetReport,
    Tolerance,
    ValidationReport,
    compare_output,
    read_bounded,
    validate_path,
)
from zooforge.converters.errors import InputFileError

INF = math.inf
NAN = math.nan
FORMAT = "zooforge.validation/1"
VALUE = np.array([[0.25, 1.5, -3.0]], np.float32)  # exactly representable


# --------------------------------------------------------------------------- builders


def write_model(folder: Path, *, inputs=("x",), outputs=("y",), opset: int = 13, nodes=None,
                opsets=None, name: str = "model.onnx") -> Path:
    """A float model of [1, 3] tensors; by default y = Identity(x) (output k copies input k or x)."""
    folder.mkdir(parents=True, exist_ok=True)
    if nodes is None:
        nodes = [helper.make_node("Identity", [inputs[min(k, len(inputs) - 1)]], [out])
                 for k, out in enumerate(outputs)]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3]) for n in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3]) for n in outputs])
    model = helper.make_model(graph, opset_imports=opsets or [helper.make_opsetid("", opset)])
    model.ir_version = 7 if opset >= 7 else 3
    path = folder / name
    onnx.save(model, str(path))
    return path


def write_tensor(path: Path, array: np.ndarray, name: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_tensor(numpy_helper.from_array(array, name), str(path))


def identity_folder(folder: Path, fed: np.ndarray = VALUE, expected: np.ndarray = VALUE, opset: int = 13,
                    sets: int = 1) -> Path:
    write_model(folder, opset=opset)
    for k in range(sets):
        write_tensor(folder / f"test_data_set_{k}" / "input_0.pb", fed, "x")
        write_tensor(folder / f"test_data_set_{k}" / "output_0.pb", expected, "y")
    return folder


def make_tarball(archive: Path, members: dict[str, Path]) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        for arcname, source in members.items():
            tar.add(source, arcname=arcname)
    return archive


def input_error(call) -> str:
    with pytest.raises(InputFileError) as info:
        call()
    return str(info.value)


# --------------------------------------------------------------------------- Tolerance


def test_tolerance_overrides_and_their_dict_form() -> None:
    tol = Tolerance(0.01, 0.5, per_output={"z": Tolerance(0.25, 0.125), "a": Tolerance(0.5, 0.0)})
    assert tol.for_output("z") == Tolerance(0.25, 0.125)
    assert tol.for_output("y") == Tolerance(0.01, 0.5)
    data = {"rtol": 0.01, "atol": 0.5, "per_output": {"a": {"rtol": 0.5, "atol": 0.0},
                                                       "z": {"rtol": 0.25, "atol": 0.125}}}
    assert tol.to_dict() == data
    assert list(tol.to_dict()["per_output"]) == ["a", "z"]
    assert Tolerance.from_dict(data) == tol
    assert Tolerance.from_dict(data).for_output("z") == Tolerance(0.25, 0.125)
    assert Tolerance.from_dict({"rtol": 0.5, "atol": 0.25}) == Tolerance(0.5, 0.25)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"rtol": -1.0}, "rtol must be a finite number >= 0, got -1.0"),
    ({"atol": INF}, "atol must be a finite number >= 0, got inf"),
    ({"atol": NAN}, "atol must be a finite number >= 0, got nan"),
    ({"rtol": "0.1"}, "rtol must be a finite number >= 0, got '0.1'"),
])
def test_tolerance_refuses_what_is_not_a_finite_number_at_least_0(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError) as info:
        Tolerance(**kwargs)
    assert str(info.value) == message
    assert Tolerance(0, 0) == Tolerance(0.0, 0.0)


# --------------------------------------------------------------------------- OutputReport JSON


NON_FINITE = OutputReport(
    name="y", expected_dtype="float32", got_dtype="float32", expected_shape=(2,), got_shape=(2,),
    passed=False, reason="r", compared=True, rtol=0.001, atol=1e-7, max_abs=INF, max_rel=NAN,
    mean_abs=-INF, worst_index=(1,), worst_expected=-INF, worst_got=NAN, needed_rtol=INF, needed_atol=0.5)

NON_FINITE_DICT = {
    "name": "y", "passed": False, "reason": "r", "compared": True,
    "expected_dtype": "float32", "got_dtype": "float32", "expected_shape": [2], "got_shape": [2],
    "rtol": 0.001, "atol": 1e-7, "max_abs": "inf", "max_rel": "nan", "mean_abs": "-inf",
    "worst_index": [1], "worst_expected": "-inf", "worst_got": "nan", "needed_rtol": "inf", "needed_atol": 0.5,
}


def test_output_report_writes_non_finite_figures_as_strings_and_reads_them_back() -> None:
    assert NON_FINITE.to_dict() == NON_FINITE_DICT
    back = OutputReport.from_dict(NON_FINITE_DICT)
    assert back.to_dict() == NON_FINITE_DICT  # NaN != NaN, so compare the dict forms
    assert back.max_abs == INF and back.mean_abs == -INF and back.worst_expected == -INF
    assert math.isnan(back.max_rel) and math.isnan(back.worst_got)


def test_output_report_with_nothing_compared_round_trips() -> None:
    report = OutputReport("z", None, "int64", None, (2, 3), passed=False,
                          reason="the model produces this output but the test set has no expected value for it")
    data = {
        "name": "z", "passed": False,
        "reason": "the model produces this output but the test set has no expected value for it",
        "compared": False, "expected_dtype": None, "got_dtype": "int64", "expected_shape": None,
        "got_shape": [2, 3], "rtol": 0.0, "atol": 0.0, "max_abs": 0.0, "max_rel": 0.0, "mean_abs": 0.0,
        "worst_index": None, "worst_expected": None, "worst_got": None, "needed_rtol": 0.0, "needed_atol": 0.0,
    }
    assert report.to_dict() == data
    assert OutputReport.from_dict(data) == report
    missing_got = OutputReport("y", "float32", None, (1, 3), None, passed=False, reason="gone")
    assert missing_got.to_dict()["expected_shape"] == [1, 3] and missing_got.to_dict()["got_shape"] is None
    assert OutputReport.from_dict(missing_got.to_dict()) == missing_got


def test_output_report_from_a_minimal_dict_takes_the_documented_defaults() -> None:
    assert OutputReport.from_dict({"name": "y", "passed": True}) == OutputReport(
        name="y", expected_dtype=None, got_dtype=None, expected_shape=None, got_shape=None, passed=True,
        reason="", compared=False, rtol=0.0, atol=0.0, max_abs=0.0, max_rel=0.0, mean_abs=0.0,
        worst_index=None, worst_expected=None, worst_got=None, needed_rtol=0.0, needed_atol=0.0)
    assert OutputReport.from_dict({"name": "y", "passed": False, "reason": "kept"}).reason == "kept"


# --------------------------------------------------------------------------- rethreshold


# expected [2], got [3], judged at rtol=0.25, atol=0.25: |err| = 1, |exp| = 2, so
# max_rel = 1/2, needed_rtol = (1 - 0.25) / 2 = 0.375, needed_atol = 1 - 0.25 * 2 = 0.5,
# and an element passes at (rtol, atol) exactly when 1 <= atol + 2 * rtol.
STORED = OutputReport(
    name="y", expected_dtype="float32", got_dtype="float32", expected_shape=(1,), got_shape=(1,), passed=False,
    reason="values differ beyond rtol=0.25, atol=0.25: 1 of 1 elements differ; max abs error 1 at [0] "
           "(got 3, expected 2), max rel error 0.5",
    compared=True, rtol=0.25, atol=0.25, max_abs=1.0, max_rel=0.5, mean_abs=1.0, worst_index=(0,),
    worst_expected=2.0, worst_got=3.0, needed_rtol=0.375, needed_atol=0.5)


def test_the_stored_report_is_what_compare_output_computes() -> None:
    got = compare_output("y", np.array([2.0], np.float32), np.array([3.0], np.float32), Tolerance(0.25, 0.25))
    assert got == STORED


@pytest.mark.parametrize(("rtol", "atol", "passes"), [
    (0.0, 1.0, True),      # max_abs <= atol, exactly
    (0.5, 0.0, True),      # max_rel <= rtol, exactly
    (0.375, 0.25, True),   # atol kept: needed_rtol <= rtol, exactly
    (0.25, 0.5, True),     # rtol kept: needed_atol <= atol, exactly
    (0.25, 0.4375, False),  # rtol kept: needed_atol > atol
    (0.375, 0.375, True),  # atol raised, needed_rtol <= rtol (exactly)
    (0.3125, 0.5, True),   # rtol raised, needed_atol <= atol (exactly)
    (0.3125, 0.125, False),  # atol lowered and needed_rtol > rtol
    (0.125, 0.375, False),  # rtol lowered and needed_atol > atol
])
def test_rethreshold_decides_exactly_at_the_boundaries(rtol: float, atol: float, passes: bool) -> None:
    assert passes == (1.0 <= atol + 2.0 * rtol)  # the truth, by hand
    judged = STORED.rethreshold(rtol, atol)
    assert (judged.passed, judged.rtol, judged.atol) == (passes, rtol, atol)
    if passes:
        assert judged.reason == ""
    else:
        assert judged.reason == (f"values differ beyond rtol={rtol:g}, atol={atol:g}: max abs error 1 at [0] "
                                 "(got 3, expected 2), max rel error 0.5")
    assert judged.max_abs == 1.0 and judged.needed_rtol == 0.375 and judged.needed_atol == 0.5


@pytest.mark.parametrize(("rtol", "atol"), [(0.375, 0.125), (0.125, 0.5)])
def test_rethreshold_refuses_what_the_figures_cannot_settle(rtol: float, atol: float) -> None:
    with pytest.raises(RethresholdError) as info:
        STORED.rethreshold(rtol, atol)
    assert str(info.value) == (f"output 'y': the saved figures (computed at rtol=0.25, atol=0.25) cannot decide "
                               f"rtol={rtol:g}, atol={atol:g}; keep one of the two unchanged or validate again")


def test_rethreshold_without_a_worst_index_names_no_element() -> None:
    legacy = OutputReport.from_dict({"name": "y", "passed": True, "compared": True, "rtol": 0.25, "atol": 0.25,
                                     "max_abs": 1.0, "max_rel": 0.5, "needed_rtol": 0.375, "needed_atol": 0.5})
    assert legacy.worst_index is None
    assert legacy.rethreshold(0.3125, 0.125).reason == (
        "values differ beyond rtol=0.3125, atol=0.125: max abs error 1, max rel error 0.5")
    mismatch = OutputReport("y", "float32", "float64", (1,), (1,), passed=False, reason="dtype")
    assert mismatch.rethreshold(1.0, 1.0) is mismatch


def test_report_rethreshold_uses_the_new_tolerance_and_its_overrides() -> None:
    z = OutputReport.from_dict({**STORED.to_dict(), "name": "z"})
    report = ValidationReport("p", Tolerance(0.25, 0.25),
                              (SetReport("m", "test_data_set_0", "reference", 13, (STORED, z)),))
    new = Tolerance(0.25, 0.5, per_output={"z": Tolerance(0.25, 0.25)})
    judged = report.rethreshold(new)
    assert judged.tolerance == new
    (y_out, z_out) = judged.sets[0].outputs
    assert (y_out.passed, y_out.rtol, y_out.atol) == (True, 0.25, 0.5)
    assert (z_out.passed, z_out.rtol, z_out.atol) == (False, 0.25, 0.25)
    assert judged.failures() == [
        ("m / test_data_set_0 / z: values differ beyond rtol=0.25, atol=0.25: max abs error 1 at [0] "
         "(got 3, expected 2), max rel error 0.5 (reference)")]


# --------------------------------------------------------------------------- SetReport, ValidationReport


def _compared(name: str, max_abs: float) -> OutputReport:
    return OutputReport(name, "float32", "float32", (1,), (1,), passed=True, compared=True, max_abs=max_abs)


def test_set_report_worst_is_the_compared_output_with_the_largest_error() -> None:
    not_compared = OutputReport("a", "float32", "float64", (1,), (1,), passed=False, max_abs=9.0)
    outputs = (not_compared, _compared("b", 0.5), _compared("c", 2.0), _compared("d", 1.0))
    assert SetReport("m", "s", "reference", 13, outputs).worst().name == "c"
    assert SetReport("m", "s", "reference", 13, (not_compared,)).worst() is None
    assert SetReport("m", "s", "reference", 13).worst() is None


def test_set_report_dict_form() -> None:
    failed = SetReport("m", "test_data_set_0", "reference", 9, error="boom")
    data = {"model": "m", "test_set": "test_data_set_0", "runtime": "reference", "opset": 9, "passed": False,
            "error": "boom", "outputs": []}
    assert failed.to_dict() == data
    assert SetReport.from_dict(data) == failed
    assert SetReport.from_dict({"model": "m", "test_set": "test_data_set_1", "runtime": "onnxruntime",
                                "opset": "13"}) == SetReport("m", "test_data_set_1", "onnxruntime", 13)
    ok = SetReport("m", "test_data_set_0", "onnxruntime", 13, (_compared("y", 0.0),))
    assert ok.to_dict()["passed"] is True and ok.to_dict()["error"] is None
    assert SetReport.from_dict(ok.to_dict()) == ok


def test_failures_list_every_set_after_an_error() -> None:
    bad = OutputReport("y", "float32", "float64", (1,), (1,), passed=False, reason="dtype float64 where float32 is expected")
    report = ValidationReport("rel", Tolerance(), (
        SetReport("rel/a", "test_data_set_0", "reference", 13, error="boom"),
        SetReport("rel/a", "test_data_set_1", "reference", 13, (bad, _compared("z", 0.0))),
        SetReport("rel/b", "test_data_set_0", "onnxruntime", 13, error="bang"),
    ), model_failures=("rel/x.onnx: standalone model differs from the one in the tarball x.tar.gz",))
    assert report.failures() == [
        "rel/x.onnx: standalone model differs from the one in the tarball x.tar.gz",
        "rel/a / test_data_set_0: boom (reference)",
        "rel/a / test_data_set_1 / y: dtype float64 where float32 is expected (reference)",
        "rel/b / test_data_set_0: bang (onnxruntime)",
    ]


def test_validation_report_json_text_is_strict_and_indented() -> None:
    report = ValidationReport("p", Tolerance(0.5, 0.25), warnings=("w",), model_failures=("f",))
    assert report.to_json() == (
        '{\n  "format": "zooforge.validation/1",\n  "path": "p",\n  "passed": false,\n'
        '  "tolerance": {\n    "rtol": 0.5,\n    "atol": 0.25,\n    "per_output": {}\n  },\n'
        '  "warnings": [\n    "w"\n  ],\n  "model_failures": [\n    "f"\n  ],\n  "sets": []\n}\n')
    back = ValidationReport.from_json(report.to_json())
    assert back == report and back.model_failures == ("f",) and not back.passed
    # Strict JSON has no NaN or Infinity token: a figure that is not stored as a string is refused.
    odd = ValidationReport("p", Tolerance(), (SetReport("m", "s", "reference", 13, (
        OutputReport("y", None, None, None, None, passed=False, rtol=NAN),)),))
    with pytest.raises(ValueError):
        odd.to_json()


def test_validation_report_from_a_minimal_dict_and_bad_input() -> None:
    assert ValidationReport.from_dict({"format": FORMAT, "path": "p", "tolerance": {"rtol": 0.5, "atol": 0.25}}) \
        == ValidationReport("p", Tolerance(0.5, 0.25), (), (), ())
    full = {"format": FORMAT, "path": "p", "passed": False, "tolerance": {"rtol": 0.5, "atol": 0.25, "per_output": {}},
            "warnings": ["w1", "w2"], "model_failures": ["f1"],
            "sets": [{"model": "m", "test_set": "s", "runtime": "reference", "opset": 7, "passed": False,
                      "error": "e", "outputs": []}]}
    report = ValidationReport.from_dict(full)
    assert report == ValidationReport("p", Tolerance(0.5, 0.25), (SetReport("m", "s", "reference", 7, error="e"),),
                                      ("w1", "w2"), ("f1",))
    assert report.to_dict() == full
    assert input_error(lambda: ValidationReport.from_dict({"format": "other/2"})) == (
        "not a zooforge validation report (format 'other/2', expected 'zooforge.validation/1')")
    assert input_error(lambda: ValidationReport.from_dict({})) == (
        "not a zooforge validation report (format None, expected 'zooforge.validation/1')")
    assert input_error(lambda: ValidationReport.from_json("{not json")) == (
        "the validation report is not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)")


# --------------------------------------------------------------------------- compare_output


@pytest.mark.filterwarnings("error")  # no RuntimeWarning may leak out (0/0, x/0, inf - inf, overflow)
def test_compare_output_figures_by_hand() -> None:
    tol = Tolerance(0.125, 0.25)
    expected = np.array([1.0, -2.0, 4.0, 0.0], np.float32)
    got = np.array([1.0, -2.5, 5.0, 0.0], np.float32)
    # |err| = [0, 0.5, 1, 0]; bound atol + rtol*|exp| = [0.375, 0.5, 0.75, 0.25]: only element 2 fails
    # (element 1 sits exactly on its bound). max rel = max(0, 0.5/2, 1/4, 0/0 := 0) = 0.25;
    # needed_rtol = max((|err| - 0.25)+ / |exp|) = max(0, 0.125, 0.1875, 0) = 0.1875;
    # needed_atol = max((|err| - 0.125*|exp|)+) = max(0, 0.25, 0.5, 0) = 0.5; mean = 1.5 / 4.
    assert compare_output("y", expected, got, tol) == OutputReport(
        name="y", expected_dtype="float32", got_dtype="float32", expected_shape=(4,), got_shape=(4,),
        passed=False,
        reason="values differ beyond rtol=0.125, atol=0.25: 1 of 4 elements differ; max abs error 1 at [2] "
               "(got 5, expected 4), max rel error 0.25",
        compared=True, rtol=0.125, atol=0.25, max_abs=1.0, max_rel=0.25, mean_abs=0.375, worst_index=(2,),
        worst_expected=4.0, worst_got=5.0, needed_rtol=0.1875, needed_atol=0.5)
    # On the bound passes; 0/0 counts as a relative error of 0.
    assert compare_output("y", np.array([[0.0, 2.0]], np.float32), np.array([[0.0, 2.25]], np.float32),
                          Tolerance(0.125, 0.0)) == OutputReport(
        name="y", expected_dtype="float32", got_dtype="float32", expected_shape=(1, 2), got_shape=(1, 2),
        passed=True, reason="", compared=True, rtol=0.125, atol=0.0, max_abs=0.25, max_rel=0.125, mean_abs=0.125,
        worst_index=(0, 1), worst_expected=2.0, worst_got=2.25, needed_rtol=0.125, needed_atol=0.0)
    # A difference where 0 is expected: an infinite relative error (x/0), no warning.
    assert compare_output("y", np.array([0.0], np.float32), np.array([0.5], np.float32), tol) == OutputReport(
        name="y", expected_dtype="float32", got_dtype="float32", expected_shape=(1,), got_shape=(1,),
        passed=False,
        reason="values differ beyond rtol=0.125, atol=0.25: 1 of 1 elements differ; max abs error 0.5 at [0] "
               "(got 0.5, expected 0), max rel error inf",
        compared=True, rtol=0.125, atol=0.25, max_abs=0.5, max_rel=INF, mean_abs=0.5, worst_index=(0,),
        worst_expected=0.0, worst_got=0.5, needed_rtol=INF, needed_atol=0.5)


@pytest.mark.filterwarnings("error")
def test_compare_output_non_finite_values_by_hand() -> None:
    tol = Tolerance()
    expected = np.array([1.0, INF, -INF, NAN])
    got = np.array([1.0, INF, 0.0, NAN])
    # Elements 1..3 never match (inf == inf included); 3 expected and 2 produced values are non-finite.
    assert compare_output("y", expected, got, tol) == OutputReport(
        name="y", expected_dtype="float64", got_dtype="float64", expected_shape=(4,), got_shape=(4,),
        passed=False,
        reason="non-finite values: 3 expected and 2 produced elements are NaN or infinite (first at [1]); "
               "NaN never matches",
        compared=True, rtol=0.001, atol=1e-7, max_abs=INF, max_rel=INF, mean_abs=INF, worst_index=(1,),
        worst_expected=INF, worst_got=INF, needed_rtol=INF, needed_atol=INF)
    # A NaN produced where a finite value is expected: a failure whose figures are written as strings.
    report = compare_output("y", np.array([0.5, -1.0, 2.0], np.float32), np.array([0.5, NAN, 2.0], np.float32), tol)
    assert report.to_dict() == {
        "name": "y", "passed": False,
        "reason": "non-finite values: 0 expected and 1 produced elements are NaN or infinite (first at [1]); "
                  "NaN never matches",
        "compared": True, "expected_dtype": "float32", "got_dtype": "float32", "expected_shape": [3],
        "got_shape": [3], "rtol": 0.001, "atol": 1e-7, "max_abs": "inf", "max_rel": "inf", "mean_abs": "inf",
        "worst_index": [1], "worst_expected": -1.0, "worst_got": "nan", "needed_rtol": "inf", "needed_atol": "inf"}
    # Two finite values whose difference overflows: a failure, not a warning.
    assert compare_output("y", np.array([1e308]), np.array([-1e308]), tol) == OutputReport(
        name="y", expected_dtype="float64", got_dtype="float64", expected_shape=(1,), got_shape=(1,),
        passed=False,
        reason="values differ beyond rtol=0.001, atol=1e-07: 1 of 1 elements differ; max abs error inf at [0] "
               "(got -1e+308, expected 1e+308), max rel error inf",
        compared=True, rtol=0.001, atol=1e-7, max_abs=INF, max_rel=INF, mean_abs=INF, worst_index=(0,),
        worst_expected=1e308, worst_got=-1e308, needed_rtol=INF, needed_atol=INF)


@pytest.mark.parametrize(("values", "dtype"), [
    (np.array(["a", "bc"]), "<U2"), (np.array([b"a", b"bc"]), "|S2"), (np.array(["a", "bc"], dtype=object), "object")])
def test_equal_strings_pass_with_zero_figures(values: np.ndarray, dtype: str) -> None:
    assert compare_output("s", values, values.copy(), Tolerance()) == OutputReport(
        name="s", expected_dtype=dtype, got_dtype=dtype, expected_shape=(2,), got_shape=(2,), passed=True,
        reason="", compared=True, rtol=0.001, atol=1e-7, max_abs=0.0, max_rel=0.0, mean_abs=0.0, worst_index=(0,),
        worst_expected=None, worst_got=None, needed_rtol=0.0, needed_atol=0.0)


def test_compare_output_empty_dtype_and_shape_reports() -> None:
    tol = Tolerance(0.125, 0.25)
    empty = np.zeros((0, 3), np.float32)
    assert compare_output("e", empty, empty.copy(), tol) == OutputReport(
        "e", "float32", "float32", (0, 3), (0, 3), passed=True, compared=True, rtol=0.125, atol=0.25)
    two = np.array([1.0, 2.0], np.float32)
    assert compare_output("y", two, two.astype(np.float64), tol) == OutputReport(
        "y", "float32", "float64", (2,), (2,), passed=False, reason="dtype float64 where float32 is expected",
        rtol=0.125, atol=0.25)
    assert compare_output("y", two, two.reshape(2, 1), tol) == OutputReport(
        "y", "float32", "float32", (2,), (2, 1), passed=False, reason="shape [2, 1] where [2] is expected",
        rtol=0.125, atol=0.25)


# --------------------------------------------------------------------------- test sets that do not fit


def _set_error(folder: Path) -> list[str]:
    report = validate_path(folder, runtimes=["reference"])
    assert [s.outputs for s in report.sets] == [()]
    return report.failures()


def test_unnamed_tensors_beyond_the_graph_are_each_reported(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    write_model(folder)
    data = folder / "test_data_set_0"
    write_tensor(data / "input_0.pb", VALUE, "x")
    write_tensor(data / "input_1.pb", VALUE)
    write_tensor(data / "input_2.pb", VALUE)
    write_tensor(data / "output_0.pb", VALUE, "y")
    assert _set_error(folder) == [
        (f"{folder} / test_data_set_0: input_1.pb has no tensor name and the graph has only 1 input(s); "
         "input_2.pb has no tensor name and the graph has only 1 input(s) (reference)")]


def test_misnamed_outputs_are_each_reported_with_the_graph_names(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    write_model(folder, outputs=("y", "z"))
    data = folder / "test_data_set_0"
    write_tensor(data / "input_0.pb", VALUE, "x")
    write_tensor(data / "output_0.pb", VALUE, "p")
    write_tensor(data / "output_1.pb", VALUE, "q")
    assert _set_error(folder) == [
        (f"{folder} / test_data_set_0: output_0.pb names output 'p', which the graph does not have "
         "(graph outputs: 'y', 'z'); output_1.pb names output 'q', which the graph does not have "
         "(graph outputs: 'y', 'z') (reference)")]


def test_a_repeated_input_is_reported_and_hides_the_missing_one(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    write_model(folder, inputs=("a", "b"), outputs=("y", "z"))
    data = folder / "test_data_set_0"
    for k in range(3):
        write_tensor(data / f"input_{k}.pb", VALUE, "a")
    write_tensor(data / "output_0.pb", VALUE, "y")
    write_tensor(data / "output_1.pb", VALUE, "z")
    assert _set_error(folder) == [
        (f"{folder} / test_data_set_0: input_1.pb gives input 'a' a second time; "
         "input_2.pb gives input 'a' a second time (reference)")]


def test_unnamed_tensors_map_by_position_in_index_order(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    write_model(folder, inputs=("a", "b"), outputs=("y", "z"))
    data = folder / "test_data_set_0"
    write_tensor(data / "input_1.pb", VALUE + 1)
    write_tensor(data / "input_0.pb", VALUE)
    write_tensor(data / "output_0.pb", VALUE)
    write_tensor(data / "output_1.pb", VALUE + 1, "z")
    report = validate_path(folder, runtimes=["reference"])
    assert report.passed, report.failures()
    assert report.warnings == (
        (f"{folder} / test_data_set_0: tensors without names (pre-2019 test data) mapped by position: "
         "input_0.pb -> 'a', input_1.pb -> 'b', output_0.pb -> 'y'"),)


def test_a_model_folder_without_sets(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    write_model(folder)
    (folder / "test_data").mkdir()
    assert input_error(lambda: validate_path(folder)) == f"{folder} has model.onnx but no test_data_set_N folder"


def test_a_set_without_outputs_or_without_inputs(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    write_model(empty)
    (empty / "test_data_set_0").mkdir()
    assert _set_error(empty) == [f"{empty} / test_data_set_0: the test set has no output_K.pb (reference)"]

    no_inputs = tmp_path / "no_inputs"
    write_model(no_inputs, inputs=("a", "b"), outputs=("y", "z"))
    write_tensor(no_inputs / "test_data_set_0" / "output_0.pb", VALUE, "y")
    write_tensor(no_inputs / "test_data_set_0" / "output_1.pb", VALUE, "z")
    assert _set_error(no_inputs) == [
        f"{no_inputs} / test_data_set_0: the test set gives no value for graph input(s) 'a', 'b' (reference)"]


def test_unreadable_tensors_raise_naming_the_file(tmp_path: Path) -> None:
    folder = identity_folder(tmp_path / "m")
    pb = folder / "test_data_set_0" / "input_0.pb"
    pb.write_bytes(b"\xff\xff\xff\xff")
    assert re.fullmatch(re.escape(f"{pb} is not a readable serialized TensorProto (") + r".+\)",
                        input_error(lambda: validate_path(folder)))
    tensor = TensorProto(name="x", data_type=TensorProto.FLOAT, dims=[1, 3], raw_data=b"abc")
    pb.write_bytes(tensor.SerializeToString())
    assert re.fullmatch(re.escape(f"{pb} holds a tensor numpy cannot read (") + r".+\)",
                        input_error(lambda: validate_path(folder)))


# --------------------------------------------------------------------------- runtimes


def test_model_outputs_without_expected_values_fail_by_name(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    write_model(folder, outputs=("y", "z"))
    write_tensor(folder / "test_data_set_0" / "input_0.pb", VALUE, "x")
    write_tensor(folder / "test_data_set_0" / "output_0.pb", VALUE, "y")
    report = validate_path(folder)
    assert [s.runtime for s in report.sets] == ["onnxruntime", "reference"]
    for s in report.sets:
        y, z = s.outputs
        assert (y.name, y.passed, y.compared, y.max_abs) == ("y", True, True, 0.0)
        assert z == OutputReport("z", None, "float32", None, (1, 3), passed=False,
                                 reason="the model produces this output but the test set has no expected value for it")
    assert report.failures() == [
        f"{folder} / test_data_set_0 / z: the model produces this output but the test set has no expected value "
        f"for it ({runtime})" for runtime in ("onnxruntime", "reference")]


def test_per_output_tolerance_reaches_the_comparison(tmp_path: Path) -> None:
    fed = np.array([[1.0, 2.0, 4.0]], np.float32)
    folder = identity_folder(tmp_path / "m", fed, np.array([[1.25, 2.0, 4.0]], np.float32))
    # |err| = 0.25 at |exp| = 1.25: rtol 0.25 covers it (0.3125), rtol 0 does not.
    assert not validate_path(folder, Tolerance(0.0, 0.0), runtimes=["reference"]).passed
    report = validate_path(folder, Tolerance(0.0, 0.0, per_output={"y": Tolerance(0.25, 0.0)}), runtimes=["reference"])
    assert report.passed, report.failures()
    (out,) = report.sets[0].outputs
    assert (out.rtol, out.atol, out.max_abs, out.max_rel) == (0.25, 0.0, 0.25, 0.2)


def test_onnxruntime_reads_the_model_file_itself_so_external_data_works(tmp_path: Path) -> None:
    folder = tmp_path / "ext"
    weights = numpy_helper.from_array(np.array([[1.0, 2.0, 3.0]], np.float32), "w")
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    folder.mkdir()
    onnx.save_model(model, str(folder / "model.onnx"), save_as_external_data=True, location="weights.bin",
                    size_threshold=0)
    assert (folder / "weights.bin").is_file()
    write_tensor(folder / "test_data_set_0" / "input_0.pb", VALUE, "x")
    write_tensor(folder / "test_data_set_0" / "output_0.pb", np.array([[1.25, 3.5, 0.0]], np.float32), "y")
    report = validate_path(folder, runtimes=["onnxruntime"])
    assert report.passed, report.failures()


def test_runtimes_a_model_cannot_use_are_named_in_one_warning(tmp_path: Path) -> None:
    folder = identity_folder(tmp_path / "m")
    report = validate_path(folder, runtimes=["reference", "onnxruntime-lifted"])
    assert report.warnings == (f"{folder}: onnxruntime-lifted cannot run opset 13 models; skipped",)
    assert [s.runtime for s in report.sets] == ["reference"]
    report = validate_path(folder, runtimes=("reference", "onnxruntime"))
    assert [s.runtime for s in report.sets] == ["onnxruntime", "reference"] and report.warnings == ()
    assert report.tolerance == Tolerance() and report.path == str(folder)


def test_nothing_to_run_is_an_input_error_quoting_the_warnings(tmp_path: Path) -> None:
    # An operator outside ai.onnx at opset 6: only onnxruntime could run it, and not below opset 7.
    folder = tmp_path / "custom"
    write_model(folder, opset=6, nodes=[helper.make_node("Foo", ["x"], ["y"], domain="com.example")],
                opsets=[helper.make_opsetid("", 6), helper.make_opsetid("com.example", 1)])
    write_tensor(folder / "test_data_set_0" / "input_0.pb", VALUE, "x")
    write_tensor(folder / "test_data_set_0" / "output_0.pb", VALUE, "y")
    assert input_error(lambda: validate_path(folder)) == f"nothing in {folder} could be validated"
    assert input_error(lambda: validate_path(folder, runtimes=["onnxruntime", "reference"])) == (
        f"nothing in {folder} could be validated "
        f"({folder}: onnxruntime, reference cannot run opset 6 models; skipped)")


def test_unknown_runtimes_are_refused_by_name(tmp_path: Path) -> None:
    folder = identity_folder(tmp_path / "m")
    assert input_error(lambda: validate_path(folder, runtimes=["reference", "tensorrt", "tvm"])) == (
        "unknown runtime(s) tensorrt, tvm: choose from onnxruntime, onnxruntime-lifted, reference")


class _Fake:
    """Stands in for zooforge.versioning.runtime.Session: per runtime, refuse to load, fail to run, or return."""

    plan: ClassVar[dict] = {}

    def __init__(self, runtime: str, model) -> None:
        kind, value = self.plan[runtime]
        if kind == "load":
            raise value
        self.kind, self.value = kind, value

    def run(self, feeds):
        if self.kind == "run":
            raise self.value
        return self.value


@pytest.mark.parametrize(("load", "run", "load_words", "run_words"), [
    (RuntimeError("  \n  first line of the refusal\nsecond line\n"), ValueError(""),
     "RuntimeError: first line of the refusal", "ValueError: "),
    (RuntimeError(""), OSError("boom\nmore"), "RuntimeError: ", "OSError: boom"),
])
def test_a_runtime_refusing_or_crashing_fails_each_set(tmp_path: Path, monkeypatch, load, run, load_words,
                                                       run_words) -> None:
    folder = identity_folder(tmp_path / "m", sets=2)
    monkeypatch.setattr(_Fake, "plan", {"onnxruntime": ("load", load), "reference": ("run", run)})
    monkeypatch.setattr(validate, "Session", _Fake)
    report = validate_path(folder)
    loading = f"onnxruntime could not load the model: {load_words}"
    running = f"reference could not run the model: {run_words}"
    assert report.sets == (
        SetReport(str(folder), "test_data_set_0", "onnxruntime", 13, error=loading),
        SetReport(str(folder), "test_data_set_1", "onnxruntime", 13, error=loading),
        SetReport(str(folder), "test_data_set_0", "reference", 13, error=running),
        SetReport(str(folder), "test_data_set_1", "reference", 13, error=running),
    )
    assert report.failures()[0] == f"{folder} / test_data_set_0: {loading} (onnxruntime)"


def test_a_runtime_that_omits_an_output_or_adds_one(tmp_path: Path, monkeypatch) -> None:
    folder = identity_folder(tmp_path / "m")
    extra = np.array([4, 5], np.int64)
    monkeypatch.setattr(_Fake, "plan", {"onnxruntime": ("out", {"y": VALUE.copy(), "extra": extra}),
                                        "reference": ("out", {})})
    monkeypatch.setattr(validate, "Session", _Fake)
    onnxruntime, reference = validate_path(folder).sets
    assert onnxruntime.outputs == (
        OutputReport("y", "float32", "float32", (1, 3), (1, 3), passed=True, compared=True, rtol=0.001, atol=1e-7,
                     worst_index=(0, 0), worst_expected=0.25, worst_got=0.25),
        OutputReport("extra", None, "int64", None, (2,), passed=False,
                     reason="the model produces this output but the test set has no expected value for it"))
    assert reference.outputs == (
        OutputReport("y", "float32", None, (1, 3), None, passed=False, reason="the model produced no output of this name"),)


def test_lifted_onnxruntime_refusing_is_a_warning_unless_asked_for(tmp_path: Path, monkeypatch) -> None:
    folder = identity_folder(tmp_path / "m", opset=6)
    monkeypatch.setattr(_Fake, "plan", {"reference": ("out", {"y": VALUE.copy()}),
                                        "onnxruntime-lifted": ("load", RuntimeError("cannot lift Foo"))})
    monkeypatch.setattr(validate, "Session", _Fake)
    error = "onnxruntime-lifted could not load the model: RuntimeError: cannot lift Foo"
    report = validate_path(folder)
    assert report.passed and [(s.runtime, s.opset) for s in report.sets] == [("reference", 6)]
    assert report.warnings == (f"{folder}: not run on onnxruntime-lifted: {error}",)
    asked = validate_path(folder, runtimes=["reference", "onnxruntime-lifted"])
    assert asked.warnings == ()
    assert asked.sets[1] == SetReport(str(folder), "test_data_set_0", "onnxruntime-lifted", 6, error=error)
    assert asked.sets[0].passed and not asked.passed


# --------------------------------------------------------------------------- what PATH can be


def test_model_onnx_path_beside_its_sets_and_bare_models(tmp_path: Path) -> None:
    folder = identity_folder(tmp_path / "m")
    report = validate_path(folder / "model.onnx", runtimes=["reference"])
    assert report.passed and report.path == str(folder / "model.onnx")
    assert [(s.model, s.test_set) for s in report.sets] == [(str(folder), "test_data_set_0")]
    other = folder / "other.onnx"
    shutil.copyfile(folder / "model.onnx", other)
    assert input_error(lambda: validate_path(other)) == (
        f"{other} is a bare model without test data: give its folder, its tarball or the release folder")
    lonely = write_model(tmp_path / "lonely")
    assert input_error(lambda: validate_path(lonely)) == (
        f"{lonely} is a bare model without test data: give its folder, its tarball or the release folder")
    text = tmp_path / "notes.txt"
    text.write_text("x")
    assert input_error(lambda: validate_path(text)) == (
        f"{text} is neither a folder, a .tar.gz/.tgz tarball nor an .onnx model")
    assert input_error(lambda: validate_path(tmp_path / "gone")) == f"{tmp_path / 'gone'} does not exist"


def test_only_real_set_folders_count(tmp_path: Path) -> None:
    folder = identity_folder(tmp_path / "m")
    (folder / "test_data_set_1").write_text("a file, not a set")
    elsewhere = identity_folder(tmp_path / "elsewhere", expected=VALUE + 1)  # would fail if it were read
    (folder / "test_data_set_2").symlink_to(elsewhere / "test_data_set_0", target_is_directory=True)
    (folder / "test_data_set_x").mkdir()
    report = validate_path(folder, runtimes=["reference"])
    assert report.passed and [s.test_set for s in report.sets] == ["test_data_set_0"]


@pytest.mark.parametrize("case", ["no nodes", "no opset import", "no graph", "custom domain only", "garbage"])
def test_models_that_cannot_be_validated(tmp_path: Path, case: str) -> None:
    folder = identity_folder(tmp_path / "m")
    path = folder / "model.onnx"
    model = onnx.load(str(path))
    if case == "no nodes":
        del model.graph.node[:]
    elif case == "no opset import":
        del model.opset_import[:]
    elif case == "no graph":
        model = onnx.ModelProto(ir_version=7, opset_import=[helper.make_opsetid("", 13)])
    elif case == "custom domain only":
        del model.opset_import[:]
        model.opset_import.append(helper.make_opsetid("com.example", 1))
    path.write_bytes(b"\x0fnot a model\xff" if case == "garbage" else model.SerializeToString())
    message = input_error(lambda: validate_path(folder))
    if case == "garbage":
        assert re.fullmatch(re.escape(f"{path} is not a readable ONNX model (DecodeError: ") + r".+\)", message)
    elif case == "custom domain only":
        assert message == f"{path} imports no default-domain (ai.onnx) opset"
    else:
        assert message == f"{path} is not an ONNX model (no graph or no opset import)"


def test_read_bounded_limits(tmp_path: Path, monkeypatch) -> None:
    four = tmp_path / "four"
    four.write_bytes(b"abcd")
    assert read_bounded(four, limit=4) == b"abcd"
    assert input_error(lambda: read_bounded(four, limit=3)) == (
        f"refusing to read {four}: 4 bytes is more than the 3 allowed")
    assert input_error(lambda: read_bounded(tmp_path / "gone")) == (
        f"cannot read {tmp_path / 'gone'}: No such file or directory")
    link = tmp_path / "link"
    link.symlink_to(four)
    assert input_error(lambda: read_bounded(link)) == (
        f"refusing to read {link}: it is not a regular file (a link, device or FIFO)")

    class Growing(type(Path())):
        """Says it holds 1 byte when checked; the file holds 4 when read."""

        def lstat(self):
            return SimpleNamespace(st_mode=Path(self).lstat().st_mode, st_size=1)

    assert input_error(lambda: read_bounded(Growing(four), limit=3)) == (
        f"refusing to read {four}: it grew past the 3 bytes allowed")

    def refused(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(validate, "open", refused, raising=False)
    assert input_error(lambda: read_bounded(four)) == f"cannot read {four}: Permission denied"


def test_a_linked_model_file_in_a_folder_is_refused(tmp_path: Path) -> None:
    real = identity_folder(tmp_path / "real")
    folder = identity_folder(tmp_path / "m")
    (folder / "model.onnx").unlink()
    (folder / "model.onnx").symlink_to(real / "model.onnx")
    assert input_error(lambda: validate_path(folder)) == (
        f"refusing to read {folder / 'model.onnx'}: it is not a regular file (a link, device or FIFO)")


# --------------------------------------------------------------------------- tarballs


def test_tarball_layouts(tmp_path: Path) -> None:
    folder = identity_folder(tmp_path / "m")
    flat = make_tarball(tmp_path / "flat.tar.gz", {"model.onnx": folder / "model.onnx",
                                                   "test_data_set_0": folder / "test_data_set_0"})
    report = validate_path(flat, runtimes=["reference"])
    assert report.passed and [s.model for s in report.sets] == [str(flat)]

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "README.txt").write_text("notes")
    with_docs = make_tarball(tmp_path / "docs.tgz", {"docs": docs, "top": folder})
    assert validate_path(with_docs, runtimes=["reference"]).passed

    two = make_tarball(tmp_path / "two.tar.gz", {"one": folder, "two": folder})
    assert input_error(lambda: validate_path(two)) == (
        f"{two} should hold one top folder with model.onnx and test_data_set_N/, found 2 such folders")
    none = make_tarball(tmp_path / "none.tar.gz", {"docs": docs})
    assert input_error(lambda: validate_path(none)) == (
        f"{none} should hold one top folder with model.onnx and test_data_set_N/, found 0 such folders")


def test_tarball_read_errors_and_the_temporary_folder(tmp_path: Path, monkeypatch) -> None:
    folder = identity_folder(tmp_path / "m")
    archive = make_tarball(tmp_path / "m.tar.gz", {"top": folder})
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    (folder / "test_data_set_0" / "input_0.pb").write_bytes(b"\xff\xff\xff\xff")
    corrupt = make_tarball(tmp_path / "corrupt.tar.gz", {"top": folder})
    assert re.fullmatch(re.escape(f"{scratch}/zoo-validate-") + r"[^/]+" +
                        re.escape("/archive/top/test_data_set_0/input_0.pb is not a readable serialized "
                                  "TensorProto (") + r".+\)",
                        input_error(lambda: validate_path(corrupt)))
    assert list(scratch.iterdir()) == []  # the extracted copy is gone

    from zooforge.artifacts.release import tarball

    def broken(archive, dest, **kwargs):
        raise tarfile.TarError("boom")

    monkeypatch.setattr(tarball, "safe_extract", broken)
    assert input_error(lambda: validate_path(archive)) == f"{archive} is not a readable tar.gz archive (boom)"


# --------------------------------------------------------------------------- release folders, manifest


def test_release_folder_validates_model_folders_and_ignores_other_folders(tmp_path: Path) -> None:
    release = tmp_path / "release"
    identity_folder(release / "identity")
    (release / "docs").mkdir()
    (release / "docs" / "notes.txt").write_text("not a model")
    report = validate_path(release, runtimes=["reference"])
    assert report.passed, report.failures()
    assert [s.model for s in report.sets] == [f"{release}/identity"] and report.warnings == ()


def test_release_of_only_standalone_models_validates_nothing(tmp_path: Path) -> None:
    release = tmp_path / "release"
    write_model(release, name="lonely.onnx")
    write_model(release, name="other.onnx")
    assert input_error(lambda: validate_path(release)) == (
        f"nothing in {release} could be validated ({release}/lonely.onnx: no test data (no tarball of the same "
        f"name); checked only that it loads; {release}/other.onnx: no test data (no tarball of the same name); "
        "checked only that it loads)")


def test_manifest_entries_are_checked_file_by_file(tmp_path: Path) -> None:
    release = tmp_path / "release"
    lonely = write_model(release, name="lonely.onnx")
    sha = hashlib.sha256(lonely.read_bytes()).hexdigest()
    entries = [
        {"model": "a", "model_path": "missing.onnx"},  # no metadata at all
        {"model": "b", "metadata": {"model_with_data_path": "gone.tar.gz"}},  # no model_path
        {"model": "c", "model_path": "lonely.onnx",
         "metadata": {"model_sha": sha, "model_with_data_path": "lonely.onnx", "model_with_data_sha": "0" * 64}},
        {"model": "d", "model_path": "lonely.onnx", "metadata": {"model_sha": ""}},  # no sha recorded: not checked
    ]
    (release / "manifest.json").write_text(json.dumps(entries))
    report = validate_path(release)
    assert report.model_failures == (
        f"{release}/manifest.json: lists missing.onnx, which does not exist",
        f"{release}/manifest.json: lists gone.tar.gz, which does not exist",
        f"{release}/manifest.json: sha256 of lonely.onnx differs from the manifest",
    )
    assert report.warnings == (
        f"{release}/lonely.onnx: no test data (no tarball of the same name); checked only that it loads",)
    assert report.sets == () and not report.passed
    assert report.failures() == list(report.model_failures)


@pytest.mark.parametrize(("text", "failure"), [
    ("{not json", "unreadable (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"),
    ('{"model_path": "lonely.onnx"}', "expected a list of model entries"),
])
def test_unusable_manifest_is_one_failure(tmp_path: Path, text: str, failure: str) -> None:
    release = tmp_path / "release"
    write_model(release, name="lonely.onnx")
    (release / "manifest.json").write_text(text)
    assert validate_path(release).model_failures == (f"{release}/manifest.json: {failure}",)


# -- found by the tests above, fixed: each once let a wrong output through or crashed ------------


def test_nan_never_matches_even_where_the_tolerance_bound_overflows():
    """rtol * |1e308| overflows to inf; an infinite error must still fail (it passed before)."""
    report = compare_output("y", np.array([1e308]), np.array([np.nan]), Tolerance(2.0, 0.0))
    assert not report.passed
    assert report.reason == ("non-finite values: 0 expected and 1 produced elements are NaN or infinite "
                             "(first at [0]); NaN never matches")


def test_differing_strings_are_one_sentence_not_a_crash():
    report = compare_output("y", np.array(["a", "b"]), np.array(["a", "c"]), Tolerance(1e-3, 1e-7))
    assert not report.passed
    assert report.reason == "values differ: 1 of 2 elements differ; strings must be equal, first difference at [1]"


def test_a_manifest_entry_that_is_not_an_object_is_a_failure_not_a_crash(tmp_path):
    (tmp_path / "manifest.json").write_text('["x", {"model_path": "missing.onnx"}]')
    collector = validate._Collector(Tolerance(1e-3, 1e-7), None)
    validate._check_manifest(tmp_path, "rel", collector)
    assert collector.model_failures == ["rel/manifest.json: entry 0 is not an object",
                                        "rel/manifest.json: lists missing.onnx, which does not exist"]


def test_huge_values_compare_without_numpy_warnings():
    """Overflowing bounds are expected there and handled; the user sees no RuntimeWarning."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = compare_output("y", np.array([1e308, 1.0]), np.array([-1e308, np.nan]), Tolerance(2.0, 0.0))
    assert not report.passed and report.needed_atol == float("inf")
