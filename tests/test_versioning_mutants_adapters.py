"""Tests for the mutants of the versioning adapters, checker and converter that survived the third run.

Expected values never come from the code under test: onnxruntime on the converted model against
hand-computed NumPy, onnx's checker on the source model, and hand-written sentences (the
refusals name the node, its operator, the step and what is missing).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from test_checker import LARGE, _checked_probe, _conv_model
from test_versioning_mutants import F32, N, conversion_error, data, model, ort

from zooforge.versioning.convert import convert_opset


def test_a_non_constant_prelu_slope_is_realigned_under_an_ai_onnx_import() -> None:
    """The Reshape inserted for a slope fed at run time reads the opset of an "ai.onnx" import too."""
    m = model([N("PRelu", ["x", "s"], ["y"])], 6, {"x": (2, 3, 4), "s": (3,)}, {"y": (2, 3, 4)}, domain="ai.onnx")
    up = convert_opset(m, 7)
    assert [n.op_type for n in up.graph.node] == ["Reshape", "PRelu"]
    x, s = data((2, 3, 4)), np.array([0.5, -2.0, 3.0], F32)
    np.testing.assert_allclose(ort(up, {"x": x, "s": s})[0], np.where(x < 0, x * s[None, :, None], x), rtol=1e-6)


@pytest.mark.parametrize("m, target, sentence", [
    (model([N("PRelu", ["x", "s"], ["y"], name="act")], 6, {"x": None}, {"y": None}, {"s": np.ones(3, F32)}), 7,
     "node 'act' (PRelu) cannot go from opset 6 to 7: input ranks needed to re-align the PRelu slope are unknown"),
    (model([N("Softmax", ["x"], ["y"], name="sm")], 12, {"x": None}, {"y": None}), 13,
     "node 'sm' (Softmax) cannot go from opset 12 to 13: the input rank is unknown"),
    (model([N("Softmax", ["x"], ["y"], name="sm", axis=1)], 12, {"x": (2, "n", 4)}, {"y": None}), 13,
     ("node 'sm' (Softmax) cannot go from opset 12 to 13: the input shape needed to restore the softmax output "
      "is unknown")),
    (model([N("Gemm", ["a", "b"], ["y"], name="fc")], 11, {"a": (2, 3), "b": None}, {"y": None}), 10,
     "node 'fc' (Gemm) cannot go from opset 11 to 10: Gemm without C needs B's shape to make a zero C"),
], ids=["prelu_rank", "softmax_rank", "softmax_shape", "gemm_b_shape"])
def test_a_step_refused_for_want_of_shapes_says_what_is_missing(m: onnx.ModelProto, target: int,
                                                                 sentence: str) -> None:
    assert conversion_error(m, target) == sentence


def test_a_cast1_with_an_integer_to_is_refused_by_name() -> None:
    """Cast-1's ``to`` is a STRING (spec); an INT one, the opset-6 form, is invalid and is named, not crashed on."""
    m = model([N("Cast", ["x"], ["y"], name="c", to=TensorProto.INT64)], 5, {"x": (2,)}, {"y": (2,)})
    with pytest.raises(onnx.checker.ValidationError, match="Mismatched attribute type"):
        onnx.checker.check_model(m)
    assert conversion_error(m, 6) == "node 'c' (Cast) cannot go from opset 5 to 6: Cast to '7' is not known"


def test_a_model_without_a_default_domain_opset_is_refused_by_name() -> None:
    m = model([N("Relu", ["x"], ["y"])], 13, {"x": (2,)}, {"y": (2,)}, domain="com.example")
    assert conversion_error(m, 14) == "the model imports no default-domain (ai.onnx) opset"


def test_the_checker_sees_the_model_metadata_of_a_model_with_large_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only large initializers are left out of what onnx's checker gets; the model's own fields stay."""
    m = _conv_model(LARGE)
    m.domain, m.producer_version = "org.example.zoo", "1.2"
    helper.set_model_props(m, {"origin": "caffe"})
    probe = _checked_probe(m, monkeypatch)
    assert (probe.domain, probe.producer_version) == ("org.example.zoo", "1.2")
    assert [(p.key, p.value) for p in probe.metadata_props] == [("origin", "caffe")]
