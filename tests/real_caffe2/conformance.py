"""The conformance table: every (operator, argument set) zooforge's translator writes, on real Caffe2.

Every layer case of ``layer_cases`` and every SSD head of ``detection_cases.CONFORMANCE`` is
translated; each operator of its NetDef becomes a net of its own, fed with the values our executor
computed for its inputs (bool ones included: LT's mask), and is run on real Caffe2 and through the
historical onnx-caffe2 frontend (whose ONNX then runs on onnxruntime). A row of the
table is one operator signature: its type, its input and output counts, and its argument names
(with the values of the arguments that switch semantics, such as ``legacy_pad``). Every output
is compared on real Caffe2; through the frontend only the first, the operator's result.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zooforge.converters.caffe2 import schema
from zooforge.converters.caffe2.executor import run_net
from zooforge.converters.caffe2.netdef import Caffe2Model, op_args, write_caffe2
from real_caffe2 import RealCaffe2, RealCaffe2Error

TOLERANCE = 1e-5  # max|ours - theirs| <= 1e-5 * max(1, max|ours|), as the layer tests
TABLE = Path(__file__).resolve().parents[2] / "docs" / "caffe2-conformance.md"
MODE_ARGS = frozenset({"legacy_pad", "global_pooling", "count_include_pad", "broadcast", "is_test", "order"})
# Operators the historical frontend cannot export and no other real Caffe2 operator stands in for.
FRONTEND_GAPS = {
    "Pow(exponent) 1->1": "the frontend keeps Caffe2's exponent argument and gives ONNX Pow one input "
                          "(Caffe's Power layer with power != 1)",
    # SSD's DetectionOutput: zooforge's own export writes ONNX Less, and NonMaxSuppression from opset 10
    "LT() 2->1": "the frontend copies Caffe2's LT into the ONNX graph unchanged, an operator ONNX lacks "
                 "(DetectionOutput's pre-NMS top_k mask)",
    "BoxWithNMSLimit(cls_agnostic_bbox_reg, detections_per_im, legacy_plus_one, nms, score_thresh) 2->3":
        "the frontend copies Caffe2's BoxWithNMSLimit into the ONNX graph unchanged, an operator ONNX lacks "
        "(DetectionOutput's NMS)",
}
_ONNX_TYPES = {np.dtype(np.float32): 1, np.dtype(np.int32): 6, np.dtype(np.int64): 7, np.dtype(np.bool_): 9}


def signature(op: Any) -> str:
    args = op_args(op)
    names = [f"{name}={args[name]}" if name in MODE_ARGS else name for name in sorted(args)]
    return f"{op.type}({', '.join(names)}) {len(op.input)}->{len(op.output)}"


def bound(reference: np.ndarray) -> float:
    scale = float(np.max(np.abs(reference))) if reference.size else 0.0
    return TOLERANCE * max(1.0, scale)


def max_error(ours: np.ndarray, theirs: np.ndarray) -> float:
    if ours.shape != theirs.shape:
        return float("inf")
    if not ours.size:
        return 0.0
    error = np.abs(ours.astype(np.float64) - theirs.astype(np.float64))
    return float("inf") if not np.all(np.isfinite(error)) else float(error.max())


@dataclass
class OpCheck:
    """One operator of one case on real Caffe2 and through the historical frontend."""

    case: str
    index: int
    signature: str
    caffe2_error: float | None = None      # None: real Caffe2 refused or crashed (see caffe2_failure)
    caffe2_failure: str = ""
    frontend_error: float | None = None    # None: the frontend or onnxruntime refused (frontend_failure)
    frontend_failure: str = ""
    bound: float = TOLERANCE
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems


def single_op_models(model: Caffe2Model, workspace: Mapping[str, np.ndarray]
                     ) -> Iterator[tuple[int, Any, Caffe2Model, dict[str, np.ndarray]]]:
    """Each operator as a net of its own, its non-weight inputs fed with the executor's values."""
    for index, op in enumerate(model.predict_net.op):
        net = schema.NetDef(name=f"op{index}")
        net.op.append(op)
        inputs = list(dict.fromkeys(op.input))
        weights = {name: model.weights[name] for name in inputs if name in model.weights}
        feeds = {name: workspace[name] for name in inputs if name not in weights}
        net.external_input.extend(inputs)
        net.external_output.extend(name for name in op.output if name in workspace)
        yield index, op, Caffe2Model(net, weights, {k: v.shape for k, v in feeds.items()}), feeds


def check_op(real: RealCaffe2, case: str, index: int, op: Any, model: Caffe2Model,
             feeds: Mapping[str, np.ndarray], expected: Mapping[str, np.ndarray], onnx_runner) -> OpCheck:  # noqa: ANN001
    """Compare our executor's outputs for ``op`` with real Caffe2's and the frontend's ONNX's."""
    check = OpCheck(case, index, signature(op))
    outputs = list(model.predict_net.external_output)
    check.bound = max((bound(expected[name]) for name in outputs), default=TOLERANCE)
    with tempfile.TemporaryDirectory(prefix="zooforge-conformance-") as folder:
        paths = write_caffe2(model, Path(folder))
        try:
            theirs = real.run_files(paths["predict_net"], paths["init_net"], feeds, fetch="*")
        except RealCaffe2Error as exc:
            check.caffe2_failure = str(exc)
            check.problems.append(f"real Caffe2 refuses it: {exc}")
        else:
            written = sorted(theirs)
            if written != sorted(expected):
                check.problems.append(f"real Caffe2 writes {written}, the executor {sorted(expected)}")
            errors = []
            for name in outputs:
                if name not in theirs:
                    continue
                if theirs[name].dtype != expected[name].dtype:
                    check.problems.append(f"{name}: real Caffe2 gives {theirs[name].dtype}, "
                                          f"the executor {expected[name].dtype}")
                errors.append(max_error(expected[name], theirs[name]))
            check.caffe2_error = max(errors, default=0.0)
            if check.caffe2_error > check.bound:
                check.problems.append(f"max abs error {check.caffe2_error:.3g} against real Caffe2 "
                                      f"exceeds {check.bound:.3g}")
        _frontend(real, check, paths, feeds, expected, outputs, Path(folder), onnx_runner)
    return check


def _frontend(real: RealCaffe2, check: OpCheck, paths: Mapping[str, Path], feeds: Mapping[str, np.ndarray],
              expected: Mapping[str, np.ndarray], outputs: list[str], folder: Path, onnx_runner) -> None:  # noqa: ANN001
    value_info = {name: (_ONNX_TYPES[value.dtype], list(value.shape)) for name, value in feeds.items()}
    try:
        real.frontend(paths["predict_net"], paths["init_net"], value_info, folder / "frontend.onnx")
        values = onnx_runner(folder / "frontend.onnx", feeds)
    except Exception as exc:  # noqa: BLE001 - the frontend's and onnxruntime's errors share no type
        check.frontend_failure = " ".join(str(exc).split())[:300]
    else:
        # The result only: the frontend gets bookkeeping outputs wrong (Reshape's old shape becomes
        # Shape of the new tensor), and nothing zooforge writes reads them.
        check.frontend_error = max_error(expected[outputs[0]], values[0])
        if check.frontend_error > check.bound:
            check.frontend_failure = f"its ONNX differs by {check.frontend_error:.3g}"
    gap = FRONTEND_GAPS.get(check.signature)
    if check.frontend_failure and gap is None:
        check.problems.append(f"the historical frontend fails: {check.frontend_failure}")
    if not check.frontend_failure and gap is not None:
        check.problems.append("the historical frontend now converts it: drop it from FRONTEND_GAPS")


def run_case(real: RealCaffe2, case: str, model: Caffe2Model, feeds: Mapping[str, np.ndarray],
             onnx_runner) -> list[OpCheck]:  # noqa: ANN001
    workspace = run_net(model, feeds, keep_all=True)
    checks = []
    for index, op, single, op_feeds in single_op_models(model, workspace):
        expected = {name: workspace[name] for name in op.output if name in workspace}
        checks.append(check_op(real, case, index, op, single, op_feeds, expected, onnx_runner))
    return checks


def render_table(checks: Iterable[OpCheck], versions: Mapping[str, str]) -> str:
    """The table as committed in ``docs/caffe2-conformance.md``: one row per signature."""
    rows: dict[str, list[OpCheck]] = {}
    for check in checks:
        rows.setdefault(check.signature, []).append(check)
    lines = [
        "# Caffe2 conformance: what zooforge writes, on real Caffe2",
        "",
        "Generated by `python scripts/caffe2_conformance.py` (the test `tests/test_caffe2_conformance.py` "
        "recomputes every figure and fails when the translator emits a signature this table lacks).",
        f"Real Caffe2: torch {versions.get('torch', '?')}, onnx {versions.get('onnx', '?')} (historical frontend, "
        f"opset 9), Python {versions.get('python', '?')}.",
        "",
        "Each operator of each layer case in `tests/layer_cases.py` and of each SSD DetectionOutput head in "
        "`tests/detection_cases.py` runs alone on real Caffe2, fed with the "
        "executor's values for its inputs; *error* is the largest max-abs difference from zooforge's executor "
        f"over the cases (bound: {TOLERANCE:g} x max(1, max|output|)). *Frontend* runs the same net through "
        "the historical onnx-caffe2 frontend and the ONNX it writes on onnxruntime.",
        "",
        "| operator (arguments) inputs->outputs | cases | real Caffe2 max abs error | historical frontend |",
        "|---|---|---|---|",
    ]
    for sig in sorted(rows):
        group = rows[sig]
        errors = [c.caffe2_error for c in group if c.caffe2_error is not None]
        caffe2 = f"{max(errors):.1e}" if len(errors) == len(group) else "refused: " + group[0].caffe2_failure[:80]
        failures = [c.frontend_failure for c in group if c.frontend_failure]
        if failures:
            front = "gap: " + FRONTEND_GAPS.get(sig, failures[0][:120])
        else:
            front = f"ok, {max(c.frontend_error or 0.0 for c in group):.1e}"
        cases = sorted({c.case for c in group})
        shown = ", ".join(cases[:3]) + (f" (+{len(cases) - 3})" if len(cases) > 3 else "")
        lines.append(f"| `{sig}` | {shown} | {caffe2} | {front} |")
    return "\n".join(lines) + "\n"


def table_signatures(text: str) -> set[str]:
    """The signatures listed in a rendered table."""
    found = set()
    for line in text.splitlines():
        if line.startswith("| `"):
            found.add(line.split("`")[1])
    return found
