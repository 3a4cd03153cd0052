"""Every operator and argument set zooforge's translator writes means on real Caffe2 what it means
in zooforge's executor, and the historical onnx-caffe2 frontend accepts it (see
``real_caffe2.conformance`` and the committed table ``docs/caffe2-conformance.md``).

Also: the executor's operator arities are real Caffe2's schemas, and NetDef forms zooforge reads
but does not write (caffe_translator's and the Caffe2 model zoo's) behave as on real Caffe2, both
where real Caffe2 computes and where it refuses.
"""

from __future__ import annotations


import numpy as np
import pytest

from zooforge.converters.caffe2 import schema
from zooforge.converters.caffe2.executor import OPERATORS, run_net
from zooforge.converters.caffe2.netdef import Caffe2Model, make_op
from zooforge.converters.caffe2.translate import TRANSLATORS
from zooforge.converters.errors import ZooforgeError

from zooforge.converters.onnx.frontend import ExportOptions, caffe2_to_onnx

from conftest import ort_session, run_onnx_file
from detection_cases import CONFORMANCE as DETECTION, detection_feeds_for, detection_model
from layer_cases import COVERED_ELSEWHERE, CASES, layer_types, prepare
from real_caffe2 import RealCaffe2, RealCaffe2Error
from real_caffe2.conformance import TABLE, bound, max_error, render_table, run_case, table_signatures


class _Checks:
    """Each layer case's operators checked on real Caffe2 when first asked for, then kept.

    Lazy on purpose: the work for a case happens inside the test that asks for it, so a failure
    (and mutation testing's map of which test runs which code) belongs to that case's test.
    """

    def __init__(self, real: RealCaffe2, tmp_path_factory) -> None:
        self.real, self.tmp_path_factory, self.done = real, tmp_path_factory, {}

    def __getitem__(self, case_id: str) -> list:
        if case_id not in self.done:
            if case_id in DETECTION:  # an SSD head (tests/detection_cases.py)
                _, model = detection_model(self.tmp_path_factory.mktemp(case_id), DETECTION[case_id])
                feeds = detection_feeds_for(DETECTION[case_id])
            else:
                prepared = prepare(next(c for c in CASES if c.id == case_id), self.tmp_path_factory)
                model, feeds = prepared.conversion(12).caffe2, prepared.feeds
            self.done[case_id] = run_case(self.real, case_id, model, feeds, run_onnx_file)
        return self.done[case_id]

    def all(self) -> dict[str, list]:
        return {case_id: self[case_id] for case_id in CASE_IDS}


CASE_IDS = [case.id for case in CASES] + list(DETECTION)


@pytest.fixture(scope="module")
def checks(real_caffe2, tmp_path_factory) -> _Checks:
    """Every operator of every layer case, checked once (about 150 single-operator nets)."""
    return _Checks(real_caffe2, tmp_path_factory)


@pytest.mark.parametrize("case", CASE_IDS)
def test_every_operator_of_the_case_agrees_with_real_caffe2(case: str, checks) -> None:
    failures = [f"op {c.index} {c.signature}: {'; '.join(c.problems)}" for c in checks[case] if not c.passed]
    assert not failures, "\n".join(failures)


def test_whole_case_nets_run_the_same_on_real_caffe2(real_caffe2, tmp_path_factory) -> None:
    worst = {}
    for case in CASES:
        prepared = prepare(case, tmp_path_factory)
        model = prepared.conversion(12).caffe2
        ours = run_net(model, prepared.feeds)
        theirs = real_caffe2.run(model, prepared.feeds)
        for name, value in ours.items():
            error = max_error(value, theirs[name])
            assert error <= bound(value), f"{case.id} {name}: {error:.3g}"
            worst[case.id] = max(worst.get(case.id, 0.0), error)
    print(f"\n[real caffe2] whole layer-case nets: worst max abs error {max(worst.values()):.2e}")


def test_the_committed_table_lists_exactly_what_the_translator_writes(checks) -> None:
    everything = checks.all()
    table = render_table([c for group in everything.values() for c in group], checks.real.versions())
    (checks.tmp_path_factory.getbasetemp() / "caffe2-conformance.md").write_text(table)  # to compare by eye
    emitted = {c.signature for group in everything.values() for c in group}
    listed = table_signatures(TABLE.read_text()) if TABLE.is_file() else set()
    assert emitted - listed == set(), (
        f"signatures without a row in {TABLE.name}: {sorted(emitted - listed)}; run "
        "`python scripts/caffe2_conformance.py` (needs real Caffe2) and commit the table")
    assert listed - emitted == set(), f"rows for signatures nothing emits any more: {sorted(listed - emitted)}"


def test_every_translator_has_a_conformance_case() -> None:
    covered = set().union(*(layer_types(case) for case in CASES), COVERED_ELSEWHERE)
    assert set(TRANSLATORS) <= covered
    assert DETECTION and "DetectionOutput" in COVERED_ELSEWHERE  # its heads: detection_cases.CONFORMANCE


def test_the_detection_heads_write_every_operator_detection_output_uses(checks) -> None:
    """Decode (both codes, with and without variances, clipped), the top_k mask, the background
    reorder and filler, NMS and the padded sort: each operator type reaches the table."""
    types = {c.signature.split("(")[0] for case in DETECTION for c in checks[case]}
    assert {"Split", "Mul", "Add", "Sub", "Exp", "Concat", "Clip", "TopK", "Slice", "LT", "Cast",
            "BoxWithNMSLimit", "Gather", "Reshape", "Transpose"} <= types


def test_executor_arities_are_real_caffe2_schemas(real_caffe2) -> None:
    real = real_caffe2.schemas(OPERATORS)
    assert set(real) == set(OPERATORS), f"operators real Caffe2 lacks: {sorted(set(OPERATORS) - set(real))}"
    wrong = []
    for name, spec in OPERATORS.items():
        low_in, high_in, low_out, high_out = real[name]
        # ours may be narrower (a form we refuse), never wider than what real Caffe2 accepts
        if spec.inputs[0] < low_in or spec.inputs[1] > high_in or spec.outputs[0] < low_out \
                or spec.outputs[1] > high_out:
            wrong.append(f"{name}: ours in {spec.inputs} out {spec.outputs}, real {real[name]}")
    assert not wrong, "; ".join(wrong)


# -- forms zooforge reads but does not write ------------------------------------------------------

RNG = np.random.default_rng(7)
X = RNG.normal(size=(1, 4, 10, 11)).astype(np.float32)  # H = 10: Caffe's ceil rounding adds a row
W3 = RNG.normal(size=(2, 4, 3, 3)).astype(np.float32)

READ = [
    # (id, op type, inputs, weights, outputs, name, args)
    ("conv-legacy-valid", "Conv", ["x", "w"], {"w": W3}, 1, "", dict(kernel=3, stride=2, legacy_pad=1)),
    ("conv-legacy-same", "Conv", ["x", "w"], {"w": W3}, 1, "", dict(kernel=3, stride=2, legacy_pad=2)),
    ("conv-legacy-caffe", "Conv", ["x", "w"], {"w": W3}, 1, "", dict(kernel=3, stride=2, pad=1, legacy_pad=3)),
    ("conv-pads-list", "Conv", ["x", "w"], {"w": W3}, 1, "", dict(kernels=[3, 3], strides=[2, 2], pads=[1, 0, 0, 1])),
    ("conv-no-kernel", "Conv", ["x", "w"], {"w": W3}, 1, "", {}),
    ("conv-kernel-mismatch", "Conv", ["x", "w"], {"w": W3}, 1, "", dict(kernel=2)),
    ("max-legacy-same", "MaxPool", ["x"], {}, 1, "", dict(kernel=3, stride=2, legacy_pad=2)),
    ("max-legacy-caffe-asymmetric", "MaxPool", ["x"], {}, 1, "",
     dict(kernel=3, stride=2, pad_t=1, pad_l=0, pad_b=0, pad_r=2, legacy_pad=3)),
    ("ave-legacy-caffe-exclude-pad", "AveragePool", ["x"], {}, 1, "", dict(kernel=3, stride=2, pad=1, legacy_pad=3)),
    ("ave-legacy-caffe-include-pad", "AveragePool", ["x"], {}, 1, "",
     dict(kernel=3, stride=2, pad=1, legacy_pad=3, count_include_pad=1)),
    ("ave-notset-include-pad", "AveragePool", ["x"], {}, 1, "", dict(kernel=2, stride=2, pad=1, count_include_pad=1)),
    ("ave-global-kernel0-unnamed", "AveragePool", ["x"], {}, 1, "", dict(global_pooling=1, kernel=0, stride=1, pad=0)),
    ("ave-global-named-pool-no-kernel", "AveragePool", ["x"], {}, 1, "Pooling1", dict(global_pooling=1)),
    ("max-dilation", "MaxPool", ["x"], {}, 1, "", dict(kernel=2, stride=2, dilation=2)),
    ("max-pad-not-below-kernel", "MaxPool", ["x"], {}, 1, "", dict(kernel=2, stride=1, pad=2)),
    ("mul-numpy-broadcast", "Mul", ["x", "w"], {"w": RNG.normal(size=(4, 1, 11)).astype(np.float32)}, 1, "", {}),
    ("add-numpy-broadcast-enlarges", "Add", ["x", "w"], {"w": RNG.normal(size=(3, 1, 1, 1)).astype(np.float32)},
     1, "", {}),
    ("mul-legacy-axis", "Mul", ["x", "w"], {"w": RNG.normal(size=(4, 10)).astype(np.float32)}, 1, "",
     dict(broadcast=1, axis=1)),
    ("mul-mismatch", "Mul", ["x", "w"], {"w": RNG.normal(size=(5,)).astype(np.float32)}, 1, "", {}),
    ("pow-exponent-input", "Pow", ["x", "e"], {"e": np.array([2.0], np.float32)}, 1, "", dict(broadcast=1)),
    ("pow-exponent-input-no-broadcast", "Pow", ["x", "e"], {"e": np.array([2.0], np.float32)}, 1, "", {}),
    ("concat-order", "Concat", ["x", "x"], {}, 2, "", dict(order="NCHW")),
    ("concat-axis-and-order", "Concat", ["x", "x"], {}, 2, "", dict(axis=1, order="NCHW")),
    ("concat-one-output", "Concat", ["x", "x"], {}, 1, "", dict(axis=1)),
    ("reshape-one-output", "Reshape", ["x"], {}, 1, "", dict(shape=[0, -1])),
    ("slice-two-axes", "Slice", ["x"], {}, 1, "", dict(starts=[0, 0, 1, 2], ends=[-1, -1, 5, 6])),
    ("fc-axis-w", "FC", ["x", "w", "b"], {"w": RNG.normal(size=(3, 10, 11)).astype(np.float32),
                                          "b": RNG.normal(size=(3,)).astype(np.float32)}, 1, "",
     dict(axis=2, axis_w=1)),
    ("fc-no-bias", "FC", ["x", "w"], {"w": RNG.normal(size=(3, 440)).astype(np.float32)}, 1, "", {}),
    ("dropout-mask-output", "Dropout", ["x"], {}, 2, "", dict(ratio=0.5, is_test=1)),
    ("lrn-scale-output", "LRN", ["x"], {}, 2, "", dict(size=3, alpha=0.1, beta=0.75, bias=2.0, order="NCHW")),
    ("prelu-slope-1d", "PRelu", ["x", "s"], {"s": RNG.normal(size=(4,)).astype(np.float32)}, 1, "", {}),
    ("softmax-axis2", "Softmax", ["x"], {}, 1, "", dict(axis=2)),
    # arguments left to their defaults (Caffe2's, which the executor must know)
    ("lrn-defaults", "LRN", ["x"], {}, 1, "", dict(size=3)),
    ("spatialbn-default-epsilon", "SpatialBN", ["x", "s", "b", "m", "v"],
     {"s": RNG.normal(size=(4,)).astype(np.float32), "b": RNG.normal(size=(4,)).astype(np.float32),
      "m": RNG.normal(size=(4,)).astype(np.float32), "v": np.array([1e-6, 1e-5, 0.5, 2.0], np.float32)},
     1, "", dict(is_test=1)),
    ("flatten-default-axis", "Flatten", ["x"], {}, 1, "", {}),
    ("split-default-axis", "Split", ["x"], {}, 2, "", {}),
    ("split-default-axis-three", "Split", ["x"], {}, 3, "", {}),
    ("argmax-default-axis", "ArgMax", ["x"], {}, 1, "", {}),
    ("concat-default-axis", "Concat", ["x", "x"], {}, 2, "", {}),
    ("concat-nhwc", "Concat", ["x", "x"], {}, 2, "", dict(order="NHWC")),
    ("concat-bad-order", "Concat", ["x", "x"], {}, 2, "", dict(order="HWCN")),
    # ConvTranspose forms: adjustments, a non-square kernel, no bias, a weight that does not fit
    ("convtranspose-adj", "ConvTranspose", ["x", "wt"], {"wt": RNG.normal(size=(4, 2, 3, 3)).astype(np.float32)},
     1, "", dict(kernel=3, stride=2, adj=1)),
    ("convtranspose-adj-h", "ConvTranspose", ["x", "wt"], {"wt": RNG.normal(size=(4, 2, 3, 3)).astype(np.float32)},
     1, "", dict(kernel=3, stride=2, adj_h=1, adj_w=0)),
    ("convtranspose-kernel-hw", "ConvTranspose", ["x", "wt", "bt"],
     {"wt": RNG.normal(size=(4, 2, 3, 2)).astype(np.float32), "bt": RNG.normal(size=(2,)).astype(np.float32)},
     1, "", dict(kernel_h=3, kernel_w=2, stride=1, pad_t=1, pad_b=0, pad_l=0, pad_r=1)),
    ("convtranspose-wrong-weight", "ConvTranspose", ["x", "wt"],
     {"wt": RNG.normal(size=(3, 2, 3, 3)).astype(np.float32)}, 1, "", dict(kernel=3)),
    ("pow-exponent-mismatch", "Pow", ["x", "e"], {"e": np.array([2.0, 3.0, 1.0], np.float32)}, 1, "", {}),
]


@pytest.mark.parametrize("row", READ, ids=[row[0] for row in READ])
def test_read_forms_compute_or_fail_as_on_real_caffe2(row, real_caffe2) -> None:
    _, op_type, inputs, weights, n_out, name, args = row
    net = schema.NetDef(name="read")
    outputs = ["y"] + [f"y{i}" for i in range(1, n_out)]
    net.op.append(make_op(op_type, inputs, outputs, name=name, **args))
    net.external_input.extend(dict.fromkeys(inputs))
    net.external_output.append("y")
    model = Caffe2Model(net, weights, {"x": X.shape})
    try:
        theirs = real_caffe2.run(model, {"x": X}, fetch="*")
    except RealCaffe2Error as exc:
        with pytest.raises(ZooforgeError):
            run_net(model, {"x": X})
        print(f"\n[read] {row[0]}: both refuse (real Caffe2: {str(exc)[:120]})")
        return
    ours = run_net(model, {"x": X}, keep_all=True)
    assert sorted(theirs) == sorted(name for name in outputs if name in ours)
    for blob, value in theirs.items():
        assert ours[blob].dtype == value.dtype, blob
        assert max_error(ours[blob], value) <= bound(value), f"{blob}: {max_error(ours[blob], value):.3g}"
    # and zooforge's ONNX of the same NetDef computes it too (opset 12, onnxruntime)
    exported = caffe2_to_onnx(model, ExportOptions(opset=12))
    (onnx_y, *_) = ort_session(exported.to_proto()).run(None, {"x_0": X})
    assert max_error(onnx_y, theirs["y"]) <= bound(theirs["y"]), f"ONNX: {max_error(onnx_y, theirs['y']):.3g}"
