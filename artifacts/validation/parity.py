"""Validate released models against their test data, in every runtime their opset allows.

``validate_path`` accepts three kinds of PATH:

* a **model folder**: ``model.onnx`` beside ``test_data_set_N/`` folders of ``input_K.pb`` /
  ``output_K.pb`` (serialized ``TensorProto``), or, as the zoo's own scripts accept, any single
  ``*.onnx`` beside them (``<name>/<name>.onnx``); two or more ``.onnx`` files there are refused,
  naming them (macOS ``._*`` companions are not models and are ignored);
* a **tarball** (``.tar.gz`` / ``.tgz``) holding one such folder (the Caffe2-era layout
  ``top/model.onnx``, ``top/test_data_set_N/``, and the later ``<name>/<name>.onnx``,
  ``model/<name>.onnx``), unpacked with ``safe_extract`` into a temporary folder;
* a **release folder**: every ``<stem>.tar.gz`` / ``<stem>.tgz`` and every model sub-folder is
  validated; a standalone ``<stem>.onnx`` beside a tarball of the same stem must
  be byte-identical to the tarball's model; a standalone ``.onnx`` without a tarball is
  only checked for loadability (and reported as a "no test data" warning); when a
  ``manifest.json`` (the hub's form, see :mod:`zooforge.artifacts.release.manifest`) is present, the sha256 of
  every file it lists must match.

Each (model, test set, runtime) is run and compared output by output. Below opset 7 the runtimes
are the reference evaluator and ``onnxruntime-lifted`` (onnxruntime on the model lifted to opset
7 in memory by zooforge's converter; a model the converter cannot lift gets a warning instead,
unless that runtime was asked for by name). An element passes when
``|got - exp| <= atol + rtol * |exp|`` and both are finite: NaN never matches, not even NaN, and
an infinity is a failure wherever it appears (expected or produced), since a model that computes
one proves nothing about its numbers. Names, dtypes and shapes must match exactly. Every output report carries, like
Polygraphy's comparator, the max absolute error, the max relative error (``|got-exp| / |exp|``),
the mean absolute error and the index of the worst element.

Saved reports can be re-thresholded (:meth:`ValidationReport.rethreshold`) without re-running
the models: each output stores ``needed_rtol`` (the smallest rtol that passes at the atol used)
and ``needed_atol`` (the smallest atol that passes at the rtol used). The answer is exact when
either rtol or atol is unchanged, or when ``max_abs <= atol`` or ``max_rel <= rtol``; when both
change in a direction the stored figures cannot settle, :class:`RethresholdError` says so and the
models must be validated again.
"""

from __future__ import annotations

import gc
import json
import math
import re
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import numpy_helper

from zooforge.artifacts.validation.detections import align_rows, detection_tolerance
from zooforge.converters.api import detection_rows
from zooforge.artifacts.validation.listing import listed_file
from zooforge.artifacts.validation.quantized import (
    OutputStep, QuantizedRule, bounds, output_steps, quantized_format, steps_needed, top1_problem,
)
from zooforge.converters.errors import InputFileError, ZooforgeError
from zooforge.converters.fileio import sha256_file
from zooforge.versioning.runtime import ONNXRUNTIME, ONNXRUNTIME_LIFTED, RUNTIMES, Session, available_runtimes, model_opset

__all__ = [
    "OutputReport",
    "RethresholdError",
    "SetReport",
    "Tolerance",
    "ValidationReport",
    "QuantizedRule",
    "compare_output",
    "compare_quantized",
    "validate_path",
]

REPORT_FORMAT = "zooforge.validation/1"
_SET_RE = re.compile(r"^test_data_set_(\d+)$")
_TENSOR_RE = re.compile(r"^(input|output)_(\d+)\.pb$")
_TARBALL_SUFFIXES = (".tar.gz", ".tgz")


class RethresholdError(ZooforgeError):
    """The stored error figures cannot decide pass/fail at the requested tolerance."""


# --------------------------------------------------------------------------- tolerances


@dataclass(frozen=True)
class Tolerance:
    """``|got - exp| <= atol + rtol * |exp|``, with optional per-output overrides."""

    rtol: float = 1e-3
    atol: float = 1e-7
    per_output: Mapping[str, Tolerance] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        for label, value in (("rtol", self.rtol), ("atol", self.atol)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{label} must be a finite number >= 0, got {value!r}")

    def for_output(self, name: str) -> Tolerance:
        """The tolerance that applies to output ``name`` (an override, else this one)."""
        override = self.per_output.get(name)
        return Tolerance(override.rtol, override.atol) if override else Tolerance(self.rtol, self.atol)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rtol": self.rtol,
            "atol": self.atol,
            "per_output": {k: {"rtol": v.rtol, "atol": v.atol} for k, v in sorted(self.per_output.items())},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Tolerance:
        per_output = {k: Tolerance(float(v["rtol"]), float(v["atol"])) for k, v in data.get("per_output", {}).items()}
        return cls(float(data["rtol"]), float(data["atol"]), per_output)


# --------------------------------------------------------------------------- reports


def _json_float(value: float | None) -> float | str | None:
    """Strict JSON has no inf/nan: write them as strings."""
    if value is None or math.isfinite(value):
        return value
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def _from_json_float(value: float | str | None) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class OutputReport:
    """One output of one test set on one runtime.

    ``compared`` is True when names, dtypes and shapes matched and the values were compared; only
    then are the error figures meaningful and can the report be re-thresholded.
    ``worst_index`` is the index of the element with the largest absolute error (``None`` for
    empty tensors or when nothing was compared).
    """

    name: str
    expected_dtype: str | None
    got_dtype: str | None
    expected_shape: tuple[int, ...] | None
    got_shape: tuple[int, ...] | None
    passed: bool
    reason: str = ""
    compared: bool = False
    rtol: float = 0.0
    atol: float = 0.0
    max_abs: float = 0.0
    max_rel: float = 0.0
    mean_abs: float = 0.0
    worst_index: tuple[int, ...] | None = None
    worst_expected: float | None = None
    worst_got: float | None = None
    needed_rtol: float = 0.0
    needed_atol: float = 0.0
    rule: str = "strict"              # "strict" (rtol/atol) or the quantized rule's bound for this output
    needed_steps: float | None = None  # quantized outputs with a known scale: the steps the data need

    def to_dict(self) -> dict[str, Any]:
        """The report as strict JSON; ``rule`` and ``needed_steps`` only for quantized outputs."""
        quantized = {} if self.rule == "strict" else {"rule": self.rule,
                                                      "needed_steps": _json_float(self.needed_steps)}
        return {
            "name": self.name,
            **quantized,
            "passed": self.passed,
            "reason": self.reason,
            "compared": self.compared,
            "expected_dtype": self.expected_dtype,
            "got_dtype": self.got_dtype,
            "expected_shape": None if self.expected_shape is None else list(self.expected_shape),
            "got_shape": None if self.got_shape is None else list(self.got_shape),
            "rtol": self.rtol,
            "atol": self.atol,
            "max_abs": _json_float(self.max_abs),
            "max_rel": _json_float(self.max_rel),
            "mean_abs": _json_float(self.mean_abs),
            "worst_index": None if self.worst_index is None else list(self.worst_index),
            "worst_expected": _json_float(self.worst_expected),
            "worst_got": _json_float(self.worst_got),
            "needed_rtol": _json_float(self.needed_rtol),
            "needed_atol": _json_float(self.needed_atol),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OutputReport:
        def shape(key: str) -> tuple[int, ...] | None:
            return None if data.get(key) is None else tuple(int(d) for d in data[key])

        return cls(
            name=data["name"],
            expected_dtype=data.get("expected_dtype"),
            got_dtype=data.get("got_dtype"),
            expected_shape=shape("expected_shape"),
            got_shape=shape("got_shape"),
            passed=bool(data["passed"]),
            reason=data.get("reason", ""),
            compared=bool(data.get("compared", False)),
            rtol=float(data.get("rtol", 0.0)),
            atol=float(data.get("atol", 0.0)),
            max_abs=_from_json_float(data.get("max_abs", 0.0)),
            max_rel=_from_json_float(data.get("max_rel", 0.0)),
            mean_abs=_from_json_float(data.get("mean_abs", 0.0)),
            worst_index=shape("worst_index"),
            worst_expected=_from_json_float(data.get("worst_expected")),
            worst_got=_from_json_float(data.get("worst_got")),
            needed_rtol=_from_json_float(data.get("needed_rtol", 0.0)),
            needed_atol=_from_json_float(data.get("needed_atol", 0.0)),
            rule=data.get("rule", "strict"),
            needed_steps=_from_json_float(data.get("needed_steps")),
        )

    def rethreshold(self, rtol: float, atol: float) -> OutputReport:
        """This report judged at ``rtol``/``atol`` from the stored figures (see the module doc).
        Outputs of quantized variants keep their verdict: their rule is not rtol/atol."""
        if not self.compared or self.rule != "strict":
            return self  # a name, dtype or shape mismatch fails at any tolerance
        passed = _decide(self, rtol, atol)
        return replace(self, rtol=rtol, atol=atol, passed=passed,
                       reason="" if passed else _value_reason(self, rtol, atol))


def _decide(out: OutputReport, rtol: float, atol: float) -> bool:
    if out.max_abs <= atol or out.max_rel <= rtol:
        return True  # every element is within atol alone, or within rtol * |exp| alone
    if atol == out.atol:
        return out.needed_rtol <= rtol
    if rtol == out.rtol:
        return out.needed_atol <= atol
    # Both changed: monotonicity settles some cases.
    if atol >= out.atol and out.needed_rtol <= rtol:
        return True
    if rtol >= out.rtol and out.needed_atol <= atol:
        return True
    if atol <= out.atol and out.needed_rtol > rtol:
        return False
    if rtol <= out.rtol and out.needed_atol > atol:
        return False
    raise RethresholdError(
        f"output {out.name!r}: the saved figures (computed at rtol={out.rtol:g}, atol={out.atol:g}) cannot "
        f"decide rtol={rtol:g}, atol={atol:g}; keep one of the two unchanged or validate again"
    )


def _value_reason(out: OutputReport, rtol: float, atol: float, mismatched: int | None = None,
                  total: int | None = None) -> str:
    count = f"{mismatched} of {total} elements differ; " if mismatched is not None else ""
    where = ""
    if out.worst_index is not None and out.worst_got is None:  # strings: equal or not, no figures
        return f"values differ: {count}strings must be equal, first difference at {list(out.worst_index)}"
    if out.worst_index is not None:
        where = f" at {list(out.worst_index)} (got {out.worst_got:.9g}, expected {out.worst_expected:.9g})"
    return (f"values differ beyond rtol={rtol:g}, atol={atol:g}: {count}max abs error {out.max_abs:.3g}{where}, "
            f"max rel error {out.max_rel:.3g}")


@dataclass(frozen=True)
class SetReport:
    """One model on one test set with one runtime. ``error`` is set when the set could not be
    run at all (the runtime refused the model, or the test data does not fit the graph)."""

    model: str
    test_set: str
    runtime: str
    opset: int
    outputs: tuple[OutputReport, ...] = ()
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and bool(self.outputs) and all(o.passed for o in self.outputs)

    def worst(self) -> OutputReport | None:
        """The compared output with the largest max abs error."""
        compared = [o for o in self.outputs if o.compared]
        return max(compared, key=lambda o: o.max_abs) if compared else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "test_set": self.test_set,
            "runtime": self.runtime,
            "opset": self.opset,
            "passed": self.passed,
            "error": self.error,
            "outputs": [o.to_dict() for o in self.outputs],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SetReport:
        return cls(data["model"], data["test_set"], data["runtime"], int(data["opset"]),
                   tuple(OutputReport.from_dict(o) for o in data.get("outputs", ())), data.get("error"))


@dataclass(frozen=True)
class ValidationReport:
    """Everything ``validate_path`` found. ``model_failures`` are failures that belong to no test
    set ("release/alexnet-7.onnx: standalone model differs from the one in the tarball")."""

    path: str
    tolerance: Tolerance
    sets: tuple[SetReport, ...] = ()
    warnings: tuple[str, ...] = ()
    model_failures: tuple[str, ...] = ()
    quantized: QuantizedRule | None = None  # the rule for quantized variants; None: strict for all

    @property
    def passed(self) -> bool:
        return not self.model_failures and all(s.passed for s in self.sets)

    def failures(self) -> list[str]:
        """One line per failure: ``model / test set / output: reason (runtime)``."""
        lines = list(self.model_failures)
        for s in self.sets:
            if s.error is not None:
                lines.append(f"{s.model} / {s.test_set}: {s.error} ({s.runtime})")
                continue
            lines.extend(f"{s.model} / {s.test_set} / {o.name}: {o.reason} ({s.runtime})"
                         for o in s.outputs if not o.passed)
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": REPORT_FORMAT,
            "path": self.path,
            "passed": self.passed,
            "tolerance": self.tolerance.to_dict(),
            **({} if self.quantized is None else {"quantized_rule": self.quantized.to_dict()}),
            "warnings": list(self.warnings),
            "model_failures": list(self.model_failures),
            "sets": [s.to_dict() for s in self.sets],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ValidationReport:
        if data.get("format") != REPORT_FORMAT:
            raise InputFileError(f"not a zooforge validation report (format {data.get('format')!r}, "
                                 f"expected {REPORT_FORMAT!r})")
        rule = data.get("quantized_rule")
        quantized = None if rule is None else QuantizedRule(float(rule["steps"]), float(rule["fallback"]))
        return cls(data["path"], Tolerance.from_dict(data["tolerance"]),
                   tuple(SetReport.from_dict(s) for s in data.get("sets", ())),
                   tuple(data.get("warnings", ())), tuple(data.get("model_failures", ())), quantized)

    @classmethod
    def from_json(cls, text: str | bytes) -> ValidationReport:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InputFileError(f"the validation report is not JSON: {exc}") from None
        return cls.from_dict(data)

    def rethreshold(self, tolerance: Tolerance) -> ValidationReport:
        """The same report judged at ``tolerance``, from the stored error figures."""
        sets = tuple(
            replace(s, outputs=tuple(o.rethreshold(tolerance.for_output(o.name).rtol,
                                                   tolerance.for_output(o.name).atol) for o in s.outputs))
            for s in self.sets
        )
        return replace(self, tolerance=tolerance, sets=sets)


# --------------------------------------------------------------------------- comparison


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den for num >= 0, with 0/x = 0, x/0 = inf and inf/inf = inf."""
    out = np.zeros_like(num)
    pos = num > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        q = num[pos] / den[pos]
    q[np.isnan(q)] = np.inf
    out[pos] = q
    return out


def _needed_atol(err: np.ndarray, rtol: float, mag: np.ndarray) -> float:
    """The smallest atol that passes at ``rtol`` (inf where an error is infinite)."""
    with np.errstate(over="ignore", invalid="ignore"):
        slack = np.maximum(err - rtol * mag, 0.0)
    return float(np.where(np.isinf(err), np.inf, slack).max())


def _describe_dtype(a: np.ndarray) -> str:
    return str(a.dtype)


def compare_output(name: str, expected: np.ndarray, got: np.ndarray, tolerance: Tolerance) -> OutputReport:
    """Compare one output; ``tolerance`` is the one for this output (overrides resolved)."""
    rtol, atol = tolerance.rtol, tolerance.atol
    base = dict(name=name, expected_dtype=_describe_dtype(expected), got_dtype=_describe_dtype(got),
                expected_shape=tuple(int(d) for d in expected.shape), got_shape=tuple(int(d) for d in got.shape),
                rtol=rtol, atol=atol)
    if expected.dtype != got.dtype:
        return OutputReport(**base, passed=False, reason=f"dtype {got.dtype} where {expected.dtype} is expected")
    if expected.shape != got.shape:
        return OutputReport(**base, passed=False,
                            reason=f"shape {list(got.shape)} where {list(expected.shape)} is expected")
    if expected.size == 0:
        return OutputReport(**base, passed=True, compared=True)
    if expected.dtype.kind in "OSU":  # strings: exact equality only
        equal = np.asarray(expected == got, dtype=bool)
        err = np.where(equal, 0.0, np.inf)
        mag = np.zeros(expected.shape)
        exp_f = got_f = None
    else:
        exp_f = expected.astype(np.float64)
        got_f = got.astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            diff = np.abs(got_f - exp_f)
        finite = np.isfinite(exp_f) & np.isfinite(got_f)
        err = np.where(finite, diff, np.inf)  # NaN and infinities never match (see the module docstring)
        mag = np.where(np.isfinite(exp_f), np.abs(exp_f), 0.0)

    with np.errstate(over="ignore"):
        bound = atol + rtol * mag  # may overflow to inf for huge values: an infinite error still fails
    bad = np.isinf(err) | (err > bound)
    worst = np.unravel_index(int(np.argmax(err)), err.shape)
    max_abs = float(err[worst])
    # Relative error: |exp| of an infinity is infinite (an exact match gives 0, a mismatch inf).
    mag_rel = np.where(np.isfinite(exp_f), mag, np.inf) if exp_f is not None else mag
    report = OutputReport(
        **base,
        passed=not bool(bad.any()),
        compared=True,
        max_abs=max_abs,
        max_rel=float(_ratio(err, mag_rel).max()),
        mean_abs=float(err.mean()),
        worst_index=tuple(int(i) for i in worst),
        worst_expected=None if exp_f is None else float(exp_f[worst]),
        worst_got=None if got_f is None else float(got_f[worst]),
        needed_rtol=float(_ratio(np.maximum(err - atol, 0.0), mag_rel).max()),
        needed_atol=_needed_atol(err, rtol, mag),
    )
    if report.passed:
        return report
    if exp_f is not None and not finite.all():
        bad_exp, bad_got = int((~np.isfinite(exp_f)).sum()), int((~np.isfinite(got_f)).sum())
        return replace(report, reason=f"non-finite values: {bad_exp} expected and {bad_got} produced elements are "
                                      f"NaN or infinite (first at {list(report.worst_index)}); NaN never matches")
    return replace(report, reason=_value_reason(report, rtol, atol, int(bad.sum()), int(bad.size)))


def compare_quantized(name: str, expected: np.ndarray, got: np.ndarray, step: OutputStep,
                      rule: QuantizedRule) -> OutputReport:
    """Compare one output of a quantized variant with the cross-CPU rule
    (:mod:`zooforge.artifacts.validation.quantized`): a bound in output quantization steps, and
    the same top-1 class for classifier outputs."""
    if expected.dtype.kind not in "fiu":
        return compare_output(name, expected, got, Tolerance(0.0, 0.0))
    rtol, atol, described = bounds(step, rule, expected)
    report = compare_output(name, expected, got, Tolerance(rtol, atol))
    needed = steps_needed(step, expected, got) if report.compared else None
    report = replace(report, rule=f"quantized ({described}; top-1)", needed_steps=needed)
    if report.passed and (problem := top1_problem(expected, got)):
        return replace(report, passed=False, reason=problem)
    if not report.passed and report.compared and report.reason.startswith("values differ"):
        drift = "" if needed is None else f" ({needed:.3g} steps)"
        return replace(report, reason=f"beyond the quantized rule, {described}{drift}: {report.reason}")
    return report


# --------------------------------------------------------------------------- test data


@dataclass(frozen=True)
class _TestSet:
    name: str
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    warning: str | None = None
    problem: str | None = None  # the test data does not fit the graph: the set fails


def _set_folders(folder: Path) -> list[Path]:
    found = [(int(m.group(1)), p) for p in folder.iterdir()
             if p.is_dir() and not p.is_symlink() and (m := _SET_RE.match(p.name))]
    return [p for _, p in sorted(found)]


MODEL_FILE = "model.onnx"


def model_file(folder: Path) -> Path | None:
    """The model of a model folder, or None when ``folder`` is not one.

    A model folder holds ``model.onnx``, or test_data_set_N folders beside ``*.onnx`` files (the zoo's
    ``<name>/<name>.onnx``); it must hold exactly one ``.onnx`` file (macOS ``._*`` companions aside).
    """
    if not folder.is_dir():
        return None
    models = sorted(p for p in folder.iterdir()
                    if p.name.endswith(".onnx") and not p.name.startswith("._") and not p.is_dir())
    if not models or (MODEL_FILE not in {p.name for p in models} and not _set_folders(folder)):
        return None
    if len(models) > 1:
        raise InputFileError(f"{folder} holds {len(models)} .onnx files ({', '.join(p.name for p in models)}); "
                             "a model folder holds one model beside its test_data_set_N folders")
    return models[0]


MAX_FILE_BYTES = 2**31 - 1  # protobuf's own limit for one message; tarball members have the same cap


def read_bounded(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """A file's bytes, only if it is a regular file (not a link, device or FIFO) of at most ``limit``
    bytes: the limits tarball members get, for folders too."""
    try:
        info = path.lstat()
    except OSError as exc:
        raise InputFileError(f"cannot read {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise InputFileError(f"refusing to read {path}: it is not a regular file (a link, device or FIFO)")
    if info.st_size > limit:
        raise InputFileError(f"refusing to read {path}: {info.st_size} bytes is more than the {limit} allowed")
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise InputFileError(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > limit:
        raise InputFileError(f"refusing to read {path}: it grew past the {limit} bytes allowed")
    return data


def _read_tensor(path: Path) -> onnx.TensorProto:
    payload = read_bounded(path)
    try:
        tensor = onnx.TensorProto()
        tensor.ParseFromString(payload)
    except DecodeError as exc:
        raise InputFileError(f"{path} is not a readable serialized TensorProto ({exc})") from None
    return tensor


def _to_array(tensor: onnx.TensorProto, path: Path) -> np.ndarray:
    try:
        return numpy_helper.to_array(tensor)
    except (ValueError, TypeError, KeyError) as exc:
        raise InputFileError(f"{path} holds a tensor numpy cannot read ({exc})") from None


def _graph_inputs(model: onnx.ModelProto) -> list[str]:
    initializers = {t.name for t in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in initializers]


def _read_set(folder: Path, model: onnx.ModelProto, label: str) -> _TestSet:
    """Read ``test_data_set_N``; tensors without names are mapped to the graph by position."""
    files: dict[str, list[tuple[int, Path]]] = {"input": [], "output": []}
    for p in folder.iterdir():
        if m := _TENSOR_RE.match(p.name):
            files[m.group(1)].append((int(m.group(2)), p))
    ports = {"input": _graph_inputs(model), "output": [o.name for o in model.graph.output]}
    mapped: dict[str, dict[str, np.ndarray]] = {"input": {}, "output": {}}
    positional: list[str] = []
    problems: list[str] = []
    for kind in ("input", "output"):
        for index, path in sorted(files[kind]):
            tensor = _read_tensor(path)
            name = tensor.name
            if not name:
                if index >= len(ports[kind]):
                    problems.append(f"{path.name} has no tensor name and the graph has only "
                                    f"{len(ports[kind])} {kind}(s)")
                    continue
                name = ports[kind][index]
                positional.append(f"{path.name} -> {name!r}")
            elif name not in ports[kind]:
                problems.append(f"{path.name} names {kind} {name!r}, which the graph does not have "
                                f"(graph {kind}s: {', '.join(map(repr, ports[kind]))})")
                continue
            if name in mapped[kind]:
                problems.append(f"{path.name} gives {kind} {name!r} a second time")
                continue
            mapped[kind][name] = _to_array(tensor, path)
    if not files["output"]:
        problems.append("the test set has no output_K.pb")
    missing = [n for n in ports["input"] if n not in mapped["input"]]
    if missing and not problems:
        problems.append(f"the test set gives no value for graph input(s) {', '.join(map(repr, missing))}")
    warning = None
    if positional:
        warning = (f"{label} / {folder.name}: tensors without names (pre-2019 test data) mapped by position: "
                   f"{', '.join(positional)}")
    return _TestSet(folder.name, mapped["input"], mapped["output"], warning, "; ".join(problems) or None)


# --------------------------------------------------------------------------- models


def _load_model(path: Path) -> onnx.ModelProto:
    payload = read_bounded(path)
    try:
        model = onnx.load_from_string(payload)
    except (OSError, DecodeError, ValueError, onnx.checker.ValidationError) as exc:
        raise InputFileError(f"{path} is not a readable ONNX model ({type(exc).__name__}: {exc})") from None
    if not model.HasField("graph") or not model.graph.node or not model.opset_import:
        raise InputFileError(f"{path} is not an ONNX model (no graph or no opset import)")
    try:
        model_opset(model)
    except ZooforgeError:
        raise InputFileError(f"{path} imports no default-domain (ai.onnx) opset") from None
    return model


@dataclass
class _Collector:
    tolerance: Tolerance
    runtimes: Sequence[str] | None
    quantized: QuantizedRule | None = None
    sets: list[SetReport] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    model_failures: list[str] = field(default_factory=list)

    def model_folder(self, folder: Path, label: str) -> Path:
        """Validate the model folder ``folder``; returns its model file."""
        model_path = model_file(folder)
        if model_path is None:
            raise InputFileError(f"{label} holds no .onnx model beside test_data_set_N folders")
        model = _load_model(model_path)
        set_folders = _set_folders(folder)
        if not set_folders:
            raise InputFileError(f"{label} has {model_path.name} but no test_data_set_N folder")
        opset = model_opset(model)
        runtimes = available_runtimes(model)
        if self.runtimes is not None:
            refused = [r for r in self.runtimes if r not in runtimes]
            if refused:
                self.warnings.append(f"{label}: {', '.join(refused)} cannot run opset {opset} models; skipped")
            runtimes = [r for r in runtimes if r in self.runtimes]
        test_sets = [_read_set(set_folder, model, label) for set_folder in set_folders]
        self.warnings.extend(t.warning for t in test_sets if t.warning)
        steps = output_steps(model) if self.quantized is not None and quantized_format(model) else None
        detections = frozenset(detection_rows(model))  # compared row by row
        for runtime in runtimes:
            # One session per runtime for all sets; onnxruntime reads the file itself.
            session, error = self._open(runtime, model_path if runtime == ONNXRUNTIME else model)
            if session is None and runtime == ONNXRUNTIME_LIFTED and self.runtimes is None:
                # Not asked for by name: a model zooforge's converter cannot lift is not a failure.
                self.warnings.append(f"{label}: not run on {runtime}: {error}")
                continue
            for test_set in test_sets:
                self.sets.append(self._run(session, error, opset, test_set, runtime, label, steps, detections))
            # The reference evaluator's objects form cycles; collect them now, not after the next
            # model has been loaded beside them.
            del session
            gc.collect()
        return model_path

    @staticmethod
    def _open(runtime: str, model: onnx.ModelProto | Path) -> tuple[Session | None, str | None]:
        try:
            return Session(runtime, model), None
        # A runtime refusing a released model is a finding about that model, not an input error:
        # it is recorded for each (set, runtime) and the other runtimes still run.
        except Exception as exc:  # noqa: BLE001
            first_line = (str(exc).strip().splitlines() or [""])[0]
            return None, f"{runtime} could not load the model: {type(exc).__name__}: {first_line}"

    def _compare(self, name: str, expected: np.ndarray, got: np.ndarray,
                 steps: Mapping[str, OutputStep] | None, detections: frozenset[str] = frozenset()) -> OutputReport:
        tolerance = self.tolerance.for_output(name)
        if name in detections:
            got = align_rows(expected, got)
            if name not in self.tolerance.per_output:  # an explicit per-output tolerance is the user's word
                tolerance = detection_tolerance(tolerance)
        if steps is not None and self.quantized is not None:
            return compare_quantized(name, expected, got, steps.get(name, OutputStep("unknown")), self.quantized)
        return compare_output(name, expected, got, tolerance)

    def _run(self, session: Session | None, load_error: str | None, opset: int, test_set: _TestSet,
             runtime: str, label: str, steps: Mapping[str, OutputStep] | None = None,
             detections: frozenset[str] = frozenset()) -> SetReport:
        report = SetReport(label, test_set.name, runtime, opset)
        if test_set.problem:
            return replace(report, error=test_set.problem)
        if session is None:
            return replace(report, error=load_error)
        try:
            got = session.run(test_set.inputs)
        # A runtime crashing on a released model is likewise recorded for this (set, runtime).
        except Exception as exc:  # noqa: BLE001
            first_line = (str(exc).strip().splitlines() or [""])[0]
            return replace(report, error=f"{runtime} could not run the model: {type(exc).__name__}: {first_line}")
        outputs = [self._compare(name, expected, np.asarray(got[name]), steps, detections)
                   if name in got else
                   OutputReport(name, str(expected.dtype), None, tuple(expected.shape), None, passed=False,
                                reason="the model produced no output of this name")
                   for name, expected in test_set.outputs.items()]
        outputs += [OutputReport(name, None, str(np.asarray(value).dtype), None, tuple(np.shape(value)),
                                 passed=False, reason="the model produces this output but the test set has no "
                                                      "expected value for it")
                    for name, value in got.items() if name not in test_set.outputs]
        return replace(report, outputs=tuple(outputs))

    def tarball(self, archive: Path, label: str) -> bytes:
        """Validate ``archive``; returns the bytes of its model."""
        from zooforge.artifacts.release.tarball import safe_extract  # noqa: PLC0415 - only tarballs need it

        with tempfile.TemporaryDirectory(prefix="zoo-validate-") as temp:
            dest = Path(temp) / "archive"  # safe_extract stages beside dest: keep that inside temp
            if not archive.is_file() or not tarfile.is_tarfile(archive):
                raise InputFileError(f"{archive} is not a readable tar or tar.gz archive")
            try:
                safe_extract(archive, dest)
            except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
                raise InputFileError(f"{archive} is not a readable tar.gz archive ({exc})") from None
            return read_bounded(self.model_folder(_archive_root(dest, archive), label))

    def standalone(self, model_path: Path, label: str) -> None:
        _load_model(model_path)
        self.warnings.append(f"{label}: no test data (no tarball of the same name); checked only that it loads")


def _archive_root(dest: Path, archive: Path) -> Path:
    if model_file(dest) is not None:
        return dest
    tops = [p for p in sorted(dest.iterdir()) if not p.is_symlink() and model_file(p) is not None]
    if len(tops) != 1:
        raise InputFileError(
            f"{archive} should hold one top folder with one .onnx model and test_data_set_N/, "
            f"found {len(tops)} such folders")
    return tops[0]


def _tarball_stem(path: Path) -> str | None:
    for suffix in _TARBALL_SUFFIXES:
        if path.name.endswith(suffix) and len(path.name) > len(suffix):
            return path.name[: -len(suffix)]
    return None


def _check_manifest(folder: Path, label: str, collector: _Collector) -> None:
    """Every file ``manifest.json`` lists must exist with the recorded sha256."""
    path = folder / "manifest.json"
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        collector.model_failures.append(f"{label}/manifest.json: unreadable ({exc})")
        return
    if not isinstance(entries, list):
        collector.model_failures.append(f"{label}/manifest.json: expected a list of model entries")
        return
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            collector.model_failures.append(f"{label}/manifest.json: entry {index} is not an object")
            continue
        meta = entry.get("metadata", {})
        for path_key, sha_key in (("model_path", "model_sha"), ("model_with_data_path", "model_with_data_sha")):
            rel = entry.get(path_key) if path_key == "model_path" else meta.get(path_key)
            if not rel:
                continue
            target = listed_file(folder, rel)  # a --model-path-prefix is the zoo's folder, not the release's
            if target is None or not target.is_file():
                collector.model_failures.append(f"{label}/manifest.json: lists {rel}, which does not exist")
            elif meta.get(sha_key) and sha256_file(target) != meta[sha_key]:
                collector.model_failures.append(f"{label}/manifest.json: sha256 of {rel} differs from the manifest")


def _release_folder(folder: Path, label: str, collector: _Collector) -> None:
    children = sorted(folder.iterdir())
    tarballs = {stem: p for p in children if p.is_file() and (stem := _tarball_stem(p))}
    model_dirs = [p for p in children if p.is_dir() and not p.is_symlink() and model_file(p) is not None]
    standalone = [p for p in children if p.is_file() and p.suffix == ".onnx"]
    if not (tarballs or model_dirs or standalone):
        raise InputFileError(f"{label} holds no model: no model folder, no .tar.gz/.tgz and no .onnx file")
    for sub in model_dirs:
        collector.model_folder(sub, f"{label}/{sub.name}")
    models_in_tarballs = {stem: collector.tarball(p, f"{label}/{p.name}") for stem, p in tarballs.items()}
    for path in standalone:
        if path.stem in models_in_tarballs:
            _load_model(path)
            if path.read_bytes() != models_in_tarballs[path.stem]:
                collector.model_failures.append(
                    f"{label}/{path.name}: standalone model differs from the one in the tarball "
                    f"{tarballs[path.stem].name}")
        else:
            collector.standalone(path, f"{label}/{path.name}")
    if (folder / "manifest.json").is_file():
        _check_manifest(folder, label, collector)


def validate_path(path: str | Path, tolerance: Tolerance | None = None,
                  runtimes: Sequence[str] | None = None,
                  quantized: QuantizedRule | None = QuantizedRule()) -> ValidationReport:
    """Validate a model folder, a tarball or a release folder (see the module doc).

    Quantized variants (int8 QOperator and QDQ) are judged by ``quantized``, a rule that holds
    across CPUs (:mod:`zooforge.artifacts.validation.quantized`), fp32 ones by ``tolerance``;
    ``quantized=None`` judges every model by ``tolerance``.

    ``runtimes`` restricts the runtimes ("onnxruntime", "reference"); by default every runtime
    that can run a model's opset runs it (onnxruntime and the reference evaluator from opset 7,
    the reference evaluator with zooforge's legacy kernels below). Raises ``InputFileError`` for
    unusable input: a missing path, no model, no test sets, an unreadable model or archive.
    """
    tolerance = tolerance or Tolerance()
    if runtimes is not None:
        unknown = [r for r in runtimes if r not in RUNTIMES]
        if unknown:
            raise InputFileError(f"unknown runtime(s) {', '.join(unknown)}: choose from {', '.join(RUNTIMES)}")
    path = Path(path)
    label = str(path)
    collector = _Collector(tolerance, None if runtimes is None else tuple(runtimes), quantized)
    if not path.exists():
        raise InputFileError(f"{path} does not exist")
    if path.is_dir():
        if model_file(path) is not None:
            collector.model_folder(path, label)
        else:
            _release_folder(path, label, collector)
    elif _tarball_stem(path):
        collector.tarball(path, label)
    elif path.suffix == ".onnx":
        if _set_folders(path.parent) and model_file(path.parent) == path:
            collector.model_folder(path.parent, str(path.parent))
        else:
            raise InputFileError(f"{path} is a bare model without test data: give its folder, its tarball "
                                 f"or the release folder")
    else:
        raise InputFileError(f"{path} is neither a folder, a .tar.gz/.tgz tarball nor an .onnx model")
    if not collector.sets and not collector.model_failures:
        detail = f" ({'; '.join(collector.warnings)})" if collector.warnings else ""
        raise InputFileError(f"nothing in {path} could be validated{detail}")
    return ValidationReport(label, tolerance, tuple(collector.sets), tuple(collector.warnings),
                            tuple(collector.model_failures), quantized)

