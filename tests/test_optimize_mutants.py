"""``--optimize`` edges its first mutation run left untested (converters/onnx/optimize.py).

Small hand-built ONNX graphs. Expected values come from elsewhere: onnxruntime (graph
optimisation off) or the formulas written out with NumPy, node counts counted by hand.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxoptimizer
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from zooforge.converters.onnx import optimize
from zooforge.converters.onnx.model import OnnxModel

RNG_SEED = 23


def _model(nodes: list[onnx.NodeProto], inits: dict[str, np.ndarray], x: list[int], y: list[int],
           opset: int = 13, ir: int | None = None, check: bool = True) -> onnx.ModelProto:
    inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, x)]
    if ir is not None and ir < 4:  # IR 3 lists every initializer among the graph inputs
        inputs += [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), list(v.shape))
                   for n, v in inits.items()]
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("Y", TensorProto.FLOAT, y)],
                              [numpy_helper.from_array(v, n) for n, v in inits.items()])
    kwargs = {} if ir is None else {"ir_version": ir}
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], **kwargs)
    if check:
        onnx.checker.check_model(model, full_check=True)
    return model


def _ort(model: onnx.ModelProto, feed: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"X": feed})[0]


def _uniform(shape, low=-1.0, high=1.0, seed=RNG_SEED) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, shape).astype(np.float32)


def _tiny_conv() -> onnx.ModelProto:
    return _model([helper.make_node("Conv", ["X", "W"], ["Y"])], {"W": _uniform((2, 3, 3, 3))},
                  [1, 3, 5, 5], [1, 2, 3, 3])


def _opset6_mul(k: float) -> OnnxModel:
    model = _model([helper.make_node("Mul", ["X", "k"], ["Y"], broadcast=1)], {"k": np.array([k], np.float32)},
                   [2, 3], [2, 3], opset=6, ir=3)
    return OnnxModel(model)


# ----------------------------------------------------------------------------------------------
# refusals: their sentences name the model even when the caller names nothing


def test_check_opset_names_the_model_by_default() -> None:
    with pytest.raises(optimize.OptimizeError) as caught:
        optimize.check_opset(6)
    assert str(caught.value).startswith("--optimize needs opset 7 or newer (the model is opset 6): ")


def test_optimize_model_names_the_model_by_default() -> None:
    with pytest.raises(optimize.OptimizeError) as caught:
        optimize.optimize_model(_opset6_mul(1.5))
    assert "(the model is opset 6)" in str(caught.value)


def test_a_failing_pass_message_is_one_line_cut_at_300_characters(monkeypatch) -> None:
    said = "x" * 200 + " \n\t " + "y" * 200

    def broken(data: bytes, passes: list[str]) -> bytes:
        raise RuntimeError(said)

    monkeypatch.setattr(onnxoptimizer.onnx_opt_cpp2py_export, "optimize", broken)
    with pytest.raises(optimize.OptimizeError) as caught:
        optimize.optimize_model(OnnxModel(_tiny_conv()))
    # whitespace runs become one space: 200 x's, a space, then 99 y's make 300 characters
    assert str(caught.value) == "onnxoptimizer failed on the model: " + "x" * 200 + " " + "y" * 99


def test_parity_failure_names_the_optimized_model_by_default() -> None:
    with pytest.raises(optimize.OptimizeParityError) as caught:
        optimize.check_parity(_opset6_mul(2.0), _opset6_mul(3.0))
    # |2x - 3x| / max|2x| = 1/2 whatever x is
    assert str(caught.value) == ("the optimized model fails parity with the unoptimized model: output Y on seeded "
                                 "input set 0 differs by 0.5 of its largest magnitude (allowed 0.0001)")


# ----------------------------------------------------------------------------------------------
# lineage settings


def test_settings_record_zooforge_steps_around_onnxoptimizer() -> None:
    settings = optimize.optimize_settings()
    assert settings["steps"] == ["zooforge:fold_scale_into_batchnorm", "onnxoptimizer", "zooforge:fold_constants"]
    assert set(settings) == {"onnxoptimizer", "passes", "steps"}


# ----------------------------------------------------------------------------------------------
# the parity check: seeded inputs, graphs run as written


def _worst_error(reference: onnx.ModelProto, optimized: onnx.ModelProto, shape: list[int]) -> float:
    """The documented measure, by hand: seeds 0, 1, 2, uniform in [-1, 1), onnxruntime unoptimised."""
    worst = 0.0
    for seed in range(3):
        feed = np.random.default_rng(seed).uniform(-1.0, 1.0, shape).astype(np.float32)
        want = _ort(reference, feed).astype(np.float64)
        got = _ort(optimized, feed).astype(np.float64)
        worst = max(worst, float(np.max(np.abs(want - got)) / np.max(np.abs(want))))
    return worst


def test_parity_runs_each_graph_as_written_on_the_seeded_inputs() -> None:
    # Conv then a per-channel Mul, against the Conv with the Mul folded into its weight by hand.
    # As written the two round differently (~1e-7); onnxruntime's own Conv+Mul fusion would make
    # them identical and hide what --optimize changed.
    weight, k = _uniform((4, 3, 3, 3)), _uniform((4, 1, 1), 0.5, 2.0, seed=5)
    reference = _model([helper.make_node("Conv", ["X", "W"], ["c"]), helper.make_node("Mul", ["c", "k"], ["Y"])],
                       {"W": weight, "k": k}, [1, 3, 8, 8], [1, 4, 6, 6])
    fused = _model([helper.make_node("Conv", ["X", "W"], ["Y"])], {"W": weight * k.reshape(4, 1, 1, 1)},
                   [1, 3, 8, 8], [1, 4, 6, 6])
    expected = _worst_error(reference, fused, [1, 3, 8, 8])
    assert 0.0 < expected < 1e-5
    assert optimize.check_parity(OnnxModel(reference), OnnxModel(fused)) == pytest.approx(expected, rel=1e-12)


def test_parity_below_opset_7_runs_on_the_reference_evaluator() -> None:
    # onnxruntime has no Mul-6 kernel; the reference evaluator multiplies in float32 like NumPy
    k, k2 = np.float32(1.5), np.float32(1.50003)
    worst = 0.0
    for seed in range(3):
        x = np.random.default_rng(seed).uniform(-1.0, 1.0, (2, 3)).astype(np.float32)
        want, got = (x * k).astype(np.float64), (x * k2).astype(np.float64)
        worst = max(worst, float(np.max(np.abs(want - got)) / np.max(np.abs(want))))
    assert optimize.check_parity(_opset6_mul(float(k)), _opset6_mul(float(k2))) == pytest.approx(worst, rel=1e-12)


# ----------------------------------------------------------------------------------------------
# folding Scale into BatchNorm


def _bn(name: str, x: str, y: str, channels: int, seed: int, inits: dict, scale_dtype=np.float32) -> onnx.NodeProto:
    rng = np.random.default_rng(seed)
    inits[f"{name}_s"] = rng.uniform(0.5, 2.0, channels).astype(scale_dtype)
    inits[f"{name}_b"] = rng.uniform(-1.0, 1.0, channels).astype(scale_dtype)
    inits[f"{name}_m"] = rng.uniform(-0.5, 0.5, channels).astype(np.float32)
    inits[f"{name}_v"] = rng.uniform(0.2, 3.0, channels).astype(np.float32)
    return helper.make_node("BatchNormalization", [x, *(f"{name}_{p}" for p in "sbmv")], [y], name=name)


def test_fold_skips_a_double_scale_batchnorm_and_goes_on_to_the_next() -> None:
    # opset 15 lets a BatchNormalization's scale and bias be double while its input is float; the
    # fold writes float32 and must leave that one alone (rounding its scale would change it), and
    # still fold the float BatchNormalization after it, whose constants are shaped [1, C, 1, 1].
    inits = {"W1": _uniform((3, 3, 3, 3)), "W2": _uniform((4, 3, 3, 3), seed=2),
             "k1": _uniform((3, 1, 1), 0.5, 2.0, seed=3),
             "k2": _uniform((1, 4, 1, 1), 0.5, 2.0, seed=4), "c2": _uniform((1, 4, 1, 1), seed=6)}
    nodes = [helper.make_node("Conv", ["X", "W1"], ["c1"]),
             _bn("bn1", "c1", "n1", 3, 7, inits, np.float64),
             helper.make_node("Mul", ["n1", "k1"], ["m1"]),
             helper.make_node("Conv", ["m1", "W2"], ["c2o"]),
             _bn("bn2", "c2o", "n2", 4, 8, inits),
             helper.make_node("Mul", ["n2", "k2"], ["m2"]),
             helper.make_node("Add", ["m2", "c2"], ["Y"])]
    model = _model(nodes, inits, [1, 3, 9, 9], [1, 4, 5, 5], opset=15)
    graph = model.graph
    assert optimize.fold_scale_into_batchnorm(graph, {t.name: t for t in graph.initializer}) == 1
    assert [n.op_type for n in graph.node] == ["Conv", "BatchNormalization", "Mul", "Conv", "BatchNormalization"]
    bn1, bn2 = graph.node[1], graph.node[4]
    assert list(bn1.input) == ["c1", "bn1_s", "bn1_b", "bn1_m", "bn1_v"] and list(bn1.output) == ["n1"]
    assert list(bn2.output) == ["Y"] and list(bn2.input[3:]) == ["bn2_m", "bn2_v"]
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    k2, c2 = inits["k2"].reshape(4), inits["c2"].reshape(4)
    # (x-m)/sqrt(v+e)*s*k + b*k + c: scale s*k, bias b*k + c
    np.testing.assert_allclose(values[bn2.input[1]], inits["bn2_s"] * k2, rtol=1e-6)
    np.testing.assert_allclose(values[bn2.input[2]], inits["bn2_b"] * k2 + c2, rtol=1e-6, atol=1e-7)


def test_optimize_folds_each_scale_it_can_and_keeps_what_it_cannot() -> None:
    # Conv-BN-Relu (nothing to fold into the BN), Conv-BN-Mul-Add with [1, C, 1, 1] constants
    # (Caffe's Scale: all into the Conv), Conv-BN-Sub (a Sub is no Scale: it stays, after the Conv).
    inits = {"W1": _uniform((3, 3, 3, 3)), "W2": _uniform((4, 3, 3, 3), seed=2), "W3": _uniform((2, 4, 1, 1), seed=9),
             "k2": _uniform((1, 4, 1, 1), 0.5, 2.0, seed=4), "c2": _uniform((1, 4, 1, 1), seed=6),
             "c3": _uniform((1, 2, 1, 1), seed=10)}
    nodes = [helper.make_node("Conv", ["X", "W1"], ["c1"]), _bn("bn1", "c1", "n1", 3, 7, inits),
             helper.make_node("Relu", ["n1"], ["r1"]),
             helper.make_node("Conv", ["r1", "W2"], ["c2o"]), _bn("bn2", "c2o", "n2", 4, 8, inits),
             helper.make_node("Mul", ["n2", "k2"], ["m2"]), helper.make_node("Add", ["m2", "c2"], ["a2"]),
             helper.make_node("Conv", ["a2", "W3"], ["c3o"]), _bn("bn3", "c3o", "n3", 2, 11, inits),
             helper.make_node("Sub", ["n3", "c3"], ["Y"])]
    model = _model(nodes, inits, [1, 3, 9, 9], [1, 2, 5, 5])
    result = optimize.optimize_model(OnnxModel(model))
    out = result.model.to_proto()
    assert (result.nodes_before, result.nodes_after) == (10, 5)
    assert [n.op_type for n in out.graph.node] == ["Conv", "Relu", "Conv", "Conv", "Sub"]
    feed = _uniform((1, 3, 9, 9), seed=12)
    want, got = _ort(model, feed), _ort(out, feed)
    assert np.max(np.abs(got - want)) <= 1e-5 * np.max(np.abs(want))


# ----------------------------------------------------------------------------------------------
# folding constants


def test_fold_constants_takes_ai_onnx_nodes_and_leaves_fed_ones() -> None:
    # "ai.onnx" is the default domain's other name (onnxruntime runs it, onnxoptimizer keeps it;
    # onnx's checker knows only ""): the constant Add folds away, the Mul of the input stays.
    a, b = _uniform((2, 3)), _uniform((2, 3), seed=3)
    nodes = [helper.make_node("Add", ["a", "b"], ["s"], domain="ai.onnx"), helper.make_node("Mul", ["X", "s"], ["Y"])]
    model = _model(nodes, {"a": a, "b": b}, [2, 3], [2, 3], check=False)
    out = optimize.optimize_model(OnnxModel(model)).model.to_proto()
    assert [(n.op_type, list(n.input)) for n in out.graph.node] == [("Mul", ["X", "s"])]
    assert [t.name for t in out.graph.initializer] == ["s"]
    np.testing.assert_array_equal(numpy_helper.to_array(out.graph.initializer[0]), a + b)
    feed = _uniform((2, 3), seed=4)
    np.testing.assert_array_equal(_ort(out, feed), _ort(model, feed))
