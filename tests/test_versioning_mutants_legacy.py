"""Tests for the legacy-kernel and runtime mutants that survived the mutmut run over ``versioning/`` at 8af839c.

Expected values never come from the code under test: onnxruntime on the equivalent modern (opset >= 7)
model, the ONNX operator specs (quoted where they decide), hand-computed NumPy, and hand-written
runtime lists and sentences (the contract in ``versioning/runtime.py``'s docstrings: onnxruntime runs
opset >= 7 only, the reference evaluator runs no contrib or quantization operators).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from test_versioning_mutants import F32, N, data, model, ort, reference

from zooforge.versioning import runtime
from zooforge.versioning.errors import ZooforgeError


def _contrib_gelu(opset: int) -> onnx.ModelProto:
    """One com.microsoft Gelu (onnxruntime's contrib operator) in a model of this default-domain opset."""
    m = model([N("Gelu", ["x"], ["y"], domain="com.microsoft")], opset, {"x": (3,)}, {"y": (3,)})
    m.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return m


# -- legacy kernels ----------------------------------------------------------------------------

def test_prelu1_one_element_slope_of_higher_rank_keeps_the_input_shape() -> None:
    """PRelu-1: "If Slope is of size 1, the value is shared across different channels"; Y has X's shape."""
    x = np.array([[-2.0, 1.0, -4.0], [3.0, -1.0, 0.5]], F32)
    m = model([N("PRelu", ["x", "s"], ["y"])], 5, {"x": (2, 3), "s": (1, 1, 1)}, {"y": (2, 3)})
    got = reference(m, {"x": x, "s": np.full((1, 1, 1), 0.25, F32)})
    np.testing.assert_array_equal(got, [[-0.5, 1.0, -1.0], [3.0, -0.25, 0.5]])


def test_prelu1_at_zero_is_the_input_not_the_slope_product() -> None:
    """The spec: f(x) = slope * x for x < 0, f(x) = x for x >= 0; with slope inf, 0 * slope would be NaN."""
    x, s = np.array([0.0, -1.0, 2.0], F32), np.array([np.inf], F32)
    expected = ort(model([N("PRelu", ["x", "s"], ["y"])], 7, {"x": (3,), "s": (1,)}, {"y": (3,)}), {"x": x, "s": s})[0]
    np.testing.assert_array_equal(expected, [0.0, -np.inf, 2.0])
    with np.errstate(invalid="ignore"):
        got = reference(model([N("PRelu", ["x", "s"], ["y"])], 5, {"x": (3,), "s": (1,)}, {"y": (3,)}), {"x": x, "s": s})
    np.testing.assert_array_equal(got, expected)


def test_batchnorm1_training_outputs_are_all_of_the_input_type() -> None:
    """BatchNormalization-1: Y, mean, var, saved_mean and saved_var are all of type T (float here)."""
    pshape, outs = (3,), ["y", "m", "v", "sm", "sv"]
    node = N("BatchNormalization", ["x", "s", "b", "mean", "var"], outs, consumed_inputs=[0, 0, 0, 1, 1], is_test=0)
    m = model([node], 5, {"x": (4, 3, 2), "s": pshape, "b": pshape, "mean": pshape, "var": pshape},
              dict.fromkeys(outs))
    feeds = {"x": data((4, 3, 2)), "s": data(pshape, 1), "b": data(pshape, 2), "mean": data(pshape, 3),
             "var": np.ones(pshape, F32)}
    got = runtime.run_model(m, feeds, runtime="reference")
    assert {name: got[name].dtype for name in outs} == dict.fromkeys(outs, np.dtype(F32))


@pytest.mark.parametrize("bound", [0.0, -0.0])
def test_clip1_float16_keeps_an_input_equal_to_max_as_onnxruntime_does(bound: float) -> None:
    """Where x equals max (here the zeros -0.0 == 0.0), onnxruntime's Clip returns x itself, its sign included."""
    x, want = np.array([-0.0, 0.0, 1.0, -1.0], np.float16), np.array([-0.0, 0.0, bound, -1.0], np.float16)
    modern = model([N("Clip", ["x", "", "max"], ["y"])], 13, {"x": (4,)}, {"y": (4,)},
                   {"max": np.array(bound, np.float16)}, elem=TensorProto.FLOAT16)
    legacy = model([N("Clip", ["x"], ["y"], max=bound)], 5, {"x": (4,)}, {"y": (4,)}, elem=TensorProto.FLOAT16)
    for got in (ort(modern, {"x": x})[0], reference(legacy, {"x": x})):
        assert (got.dtype, got.tolist(), np.signbit(got).tolist()) == (want.dtype, want.tolist(), np.signbit(want).tolist())


@pytest.mark.parametrize("bound", [0.0, -0.0])
def test_clip1_float16_keeps_an_input_equal_to_min_as_onnxruntime_does(bound: float) -> None:
    """The same at the lower bound: where x equals min, onnxruntime's Clip returns x, its sign included."""
    x, want = np.array([-0.0, 0.0, 1.0, -1.0], np.float16), np.array([-0.0, 0.0, 1.0, bound], np.float16)
    modern = model([N("Clip", ["x", "min"], ["y"])], 13, {"x": (4,)}, {"y": (4,)},
                   {"min": np.array(bound, np.float16)}, elem=TensorProto.FLOAT16)
    legacy = model([N("Clip", ["x"], ["y"], min=bound)], 5, {"x": (4,)}, {"y": (4,)}, elem=TensorProto.FLOAT16)
    for got in (ort(modern, {"x": x})[0], reference(legacy, {"x": x})):
        assert (got.dtype, got.tolist(), np.signbit(got).tolist()) == (want.dtype, want.tolist(), np.signbit(want).tolist())


@pytest.mark.parametrize("axis", [-1, -2])
def test_softmax11_negative_axis_counts_from_the_back(axis: int) -> None:
    """Softmax-11: "Negative value means counting dimensions from the back" (coerced to 2-D there)."""
    x = data((2, 3, 4))
    node = N("Softmax", ["x"], ["y"], axis=axis)
    expected = ort(model([node], 11, {"x": x.shape}, {"y": x.shape}), {"x": x})[0]
    np.testing.assert_allclose(reference(model([node], 11, {"x": x.shape}, {"y": x.shape}), {"x": x}), expected,
                               rtol=1e-6, atol=1e-7)


# -- runtime -----------------------------------------------------------------------------------

def test_a_model_without_a_default_domain_opset_is_named() -> None:
    m = _contrib_gelu(7)
    del m.opset_import[0]  # only com.microsoft is left
    with pytest.raises(ZooforgeError) as caught:
        runtime.available_runtimes(m)
    assert str(caught.value) == "the model imports no default-domain (ai.onnx) opset"


def test_a_contrib_model_from_opset_7_is_offered_onnxruntime_only() -> None:
    """onnxruntime runs com.microsoft Gelu (0.5 x (1 + erf(x / sqrt 2))); the reference evaluator has no such kernel."""
    m, x = _contrib_gelu(7), np.array([0.0, -1.0, 2.0], F32)
    assert runtime.available_runtimes(m) == ["onnxruntime"]
    got = runtime.Session(runtime.ONNXRUNTIME, m).run({"x": x})["y"]
    np.testing.assert_allclose(got, [0.0, -0.15865526, 1.9544997], rtol=1e-5)


def test_a_contrib_model_below_opset_7_is_offered_no_runtime() -> None:
    """onnxruntime is not run below opset 7, and the reference evaluator has no contrib kernels: nothing is left."""
    m = _contrib_gelu(6)
    assert runtime.available_runtimes(m) == []
    with pytest.raises(runtime.RuntimeUnavailableError, match="onnxruntime cannot run opset 6 models"):
        runtime.Session(runtime.ONNXRUNTIME, m)


def test_onnxruntime_missing_says_so_and_names_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "_ort_installed", lambda: False)
    m = model([N("Relu", ["x"], ["y"])], 13, {"x": (1, 3)}, {"y": (1, 3)})
    with pytest.raises(runtime.RuntimeUnavailableError) as caught:
        runtime.Session(runtime.ONNXRUNTIME, m)
    assert str(caught.value) == "onnxruntime is not installed; use the 'reference' runtime"
