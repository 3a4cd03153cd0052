"""Tests aimed at mutants that survived a mutmut run over ``versioning/``.

Expected values are independent of the code under test: onnxruntime on the equivalent modern
(opset >= 7) model, hand-computed NumPy, onnx's own checker, or hand-written names/attributes.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from zooforge.versioning import adapters, runtime
from zooforge.versioning.adapters import (
    StepRefused,
    _compatible,
    _constant_of_shape_down,
    _drop,
    _maxpool_ceil_down,
    _negative_axes_down,
    _negative_axis_down,
    _reshaped,
    _same,
)
from zooforge.versioning.checker import _nbytes, check_graph
from zooforge.versioning.convert import convert_opset
from zooforge.versioning.editor import GraphEditor
from zooforge.versioning.errors import OpsetError
from zooforge.versioning.legacy_ops import _LegacyOp, _schema, legacy_broadcast
from zooforge.versioning.names import fresh_name
from zooforge.versioning.opsets import opset_info

N = helper.make_node
F = TensorProto.FLOAT
F32 = np.float32


def model(nodes: list, opset: int, inputs: dict, outputs: list[str] | dict, inits: dict | None = None,
          ir: int | None = None, value_info: list | None = None) -> onnx.ModelProto:
    """``inputs``/``outputs``: name -> shape of float tensors (a list of output names: unknown shapes)."""
    ins = [helper.make_tensor_value_info(k, F, s) for k, s in inputs.items()]
    tensors = [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()]
    graph = helper.make_graph(nodes, "g", ins, [helper.make_tensor_value_info(o, F, outputs[o] if isinstance(outputs, dict) else None) for o in outputs],
                              initializer=tensors, value_info=value_info or [])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = ir if ir is not None else opset_info(opset).ir_version
    return m


def ort(m: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    sess = onnxruntime.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def data(shape: tuple, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(F32)


def refused(m: onnx.ModelProto, target: int, reason: str) -> None:
    """Converting must fail with exactly ``reason`` as the last part of the message."""
    with pytest.raises(OpsetError) as err:
        convert_opset(m, target)
    assert str(err.value).endswith(": " + reason), str(err.value)


# -- adapters: table builders (run at import, so called here directly) ------------------------

def test_drop_removes_every_named_attribute() -> None:
    node = N("Relu", ["x"], ["y"], consumed_inputs=[0], keep=1, other=2)
    _drop("consumed_inputs", "other")(None, node)
    assert [a.name for a in node.attribute] == ["keep"]


def test_compatible_makes_same_up_and_down() -> None:
    got = _compatible("Foo", 3, 5)
    assert [(c.op, c.version, c.up, c.down) for c in got] == [("Foo", 3, _same, _same), ("Foo", 5, _same, _same)]


def test_duplicate_adapter_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    twice = _compatible("Conv", 11, 11)
    monkeypatch.setattr(adapters, "changes", lambda: twice)
    with pytest.raises(RuntimeError, match=r"^two adapters for Conv at opset 11$"):
        adapters.changes_by_key()


# -- adapters: refusals and rewrites ------------------------------------------------------------

def test_legacy_broadcast_up_refuses_unknown_b_shape() -> None:
    m = model([N("Add", ["a", "b"], ["y"], broadcast=1, axis=1)], 6, {"a": (2, 3, 4, 5), "b": None}, ["y"])
    refused(m, 7, "the shapes needed to re-align a legacy broadcast are unknown")


def test_legacy_broadcast_down_same_rank_b() -> None:
    """B (1, 3) against A (2, 3) has A's rank: legacy form is broadcast=1, axis=1, B (3,)."""
    a, b = data((2, 3)), data((1, 3), 1)
    m = model([N("Add", ["a", "b"], ["y"])], 7, {"a": (2, 3), "b": (1, 3)}, {"y": (2, 3)})
    expected = ort(m, {"a": a, "b": b})[0]
    down = convert_opset(m, 6)
    add = next(n for n in down.graph.node if n.op_type == "Add")
    assert {x.name: helper.get_attribute_value(x) for x in add.attribute} == {"broadcast": 1, "axis": 1}
    got = runtime.run_model(down, {"a": a, "b": b}, runtime="reference")["y"]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_reshaped_before_opset_5_uses_shape_attribute() -> None:
    m = model([N("Relu", ["x"], ["y"])], 4, {"x": (2, 3)}, ["y"])
    editor = GraphEditor(m)
    out = _reshaped(editor, m.graph.node[0], "x", (3, 2))
    m.graph.node[-1].input[0] = out
    first = m.graph.node[0]
    assert (first.op_type, list(first.input), list(first.output)) == ("Reshape", ["x"], [out])
    assert [(a.name, list(a.ints)) for a in first.attribute] == [("shape", [3, 2])]
    x = data((2, 3))
    got = runtime.run_model(m, {"x": x}, runtime="reference")["y"]
    np.testing.assert_array_equal(got, np.maximum(x.reshape(3, 2), 0))


def test_softmax_down_refusal_message() -> None:
    m = model([N("Softmax", ["x"], ["y"], axis=1)], 13, {"x": (2, 3, 4)}, ["y"])
    refused(m, 12, "axis 1 of a 3-D input is not the last: before opset 13 Softmax flattens every dim from the axis on")


def _rankless(node: onnx.NodeProto) -> GraphEditor:
    """An editor that knows no shapes (as when inference cannot type the input)."""
    editor = GraphEditor(model([node], 11, {}, ["y"]))
    editor._shapes = {}
    return editor


def test_axis_zero_needs_no_rank() -> None:
    node = N("Concat", ["a", "b"], ["y"], axis=0)
    _negative_axis_down(_rankless(node), node)
    assert helper.get_attribute_value(node.attribute[0]) == 0
    node = N("Concat", ["a", "b"], ["y"], axis=-1)
    with pytest.raises(StepRefused, match="^negative axis -1 needs the input rank, which is unknown$"):
        _negative_axis_down(_rankless(node), node)


def test_squeeze_axes_zero_needs_no_rank() -> None:
    node = N("Squeeze", ["x"], ["y"], axes=[0, 1])
    _negative_axes_down(_rankless(node), node)
    assert list(node.attribute[0].ints) == [0, 1]


@pytest.mark.parametrize("op, shape, axes, want, out", [
    ("Squeeze", (2, 3, 1), [-1], [2], (2, 3)), ("Unsqueeze", (2, 3), [-1], [2], (2, 3, 1)),
    ("Unsqueeze", (2, 3), [-4, -1], [0, 3], (1, 2, 3, 1)),
])
def test_negative_axes_down(op: str, shape: tuple, axes: list, want: list, out: tuple) -> None:
    m = model([N(op, ["x"], ["y"], axes=axes)], 11, {"x": shape}, {"y": out})
    down = convert_opset(m, 10)
    assert list(down.graph.node[0].attribute[0].ints) == want
    x = data(shape)
    np.testing.assert_array_equal(ort(down, {"x": x})[0], ort(m, {"x": x})[0])


def _pool_editor(shapes: dict) -> tuple[GraphEditor, onnx.NodeProto]:
    m = model([N("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)], 10,
              {"x": (1, 1, 5, 5)}, ["y"])
    editor = GraphEditor(m)
    editor._shapes = shapes  # the shapes an inference would have produced
    return editor, m.graph.node[0]


@pytest.mark.parametrize("shapes", [{"x": (1, 1, 5, 5)}, {"x": (1, 1, None, 5), "y": (1, 1, 3, 3)},
                                    {"y": (1, 1, 3, 3)}, {"x": (1, 1, 5, 5), "y": (1, 1, 3, None)}])
def test_maxpool_ceil_down_needs_static_shapes(shapes: dict) -> None:
    editor, node = _pool_editor(shapes)
    with pytest.raises(StepRefused, match="^ceil_mode=1 needs static spatial shapes to become explicit padding$"):
        _maxpool_ceil_down(editor, node)


def test_constant_of_shape_down_at_ir3_lists_input() -> None:
    value = numpy_helper.from_array(np.array([7], np.int64), "value")
    m = model([N("ConstantOfShape", ["s"], ["c"], value=value), N("Identity", ["c"], ["y"])], 9, {}, ["y"],
              inits={"s": np.array([2, 3], np.int64)}, ir=3)
    _constant_of_shape_down(GraphEditor(m), m.graph.node[0])
    assert [n.op_type for n in m.graph.node] == ["Identity"]
    c = next(t for t in m.graph.initializer if t.name == "c")
    np.testing.assert_array_equal(numpy_helper.to_array(c), np.full((2, 3), 7, np.int64))
    listed = [(v.name, v.type.tensor_type.elem_type, [d.dim_value for d in v.type.tensor_type.shape.dim])
              for v in m.graph.input]
    assert listed == [("c", TensorProto.INT64, [2, 3])]


def test_constant_of_shape_down_refusal_message() -> None:
    m = model([N("ConstantOfShape", ["s"], ["y"])], 9, {"s": (2,)}, ["y"])
    with pytest.raises(StepRefused, match="^its shape input is computed, so it cannot become a constant$"):
        _constant_of_shape_down(GraphEditor(m), m.graph.node[0])


def test_ai_onnx_domain_passes_the_domain_filter() -> None:
    """Nodes in domain "ai.onnx" are default-domain nodes to zooforge; onnx's checker refuses them
    (it registers the operators under ""), so the conversion ends at the checker, not the filter."""
    m = model([N("Relu", ["x"], ["y"], domain="ai.onnx")], 13, {"x": (2, 3)}, {"y": (2, 3)})
    m.opset_import[0].domain = "ai.onnx"
    with pytest.raises(onnx.checker.ValidationError):
        onnx.checker.check_model(m)
    with pytest.raises(OpsetError) as err:
        convert_opset(m, 14)
    assert "fails onnx's checker" in str(err.value) and "uses domain" not in str(err.value)


# -- editor.constant --------------------------------------------------------------------------

def _constant_of(node: onnx.NodeProto, inits: dict | None = None) -> np.ndarray | None:
    m = model([node, N("Identity", [node.output[0]], ["y"])], 13, {}, ["y"], inits=inits)
    return GraphEditor(m).constant(node.output[0])


def test_constant_value_tensor() -> None:
    t = numpy_helper.from_array(np.array([[1.5, -2.0]], F32), "t")
    got = _constant_of(N("Constant", [], ["c"], value=t))
    assert got.dtype == F32 and got.tolist() == [[1.5, -2.0]]


@pytest.mark.parametrize("key, value, dtype", [("value_floats", [1.0, 2.5], F32), ("value_ints", [3, -4], np.int64),
                                               ("value_float", 0.5, F32), ("value_int", 9, np.int64)])
def test_constant_value_lists(key: str, value: object, dtype: type) -> None:
    got = _constant_of(N("Constant", [], ["c"], **{key: value}))
    assert got.dtype == dtype and got.tolist() == value


def test_constant_of_shape_default_zero() -> None:
    got = _constant_of(N("ConstantOfShape", ["s"], ["c"]), {"s": np.array([2, 2], np.int64)})
    assert got.dtype == F32 and got.tolist() == [[0.0, 0.0], [0.0, 0.0]]


# -- legacy_ops --------------------------------------------------------------------------------

def test_schema_lookup() -> None:
    schema = _schema("Gemm", 6)
    assert (schema.name, schema.since_version, schema.domain) == ("Gemm", 6, "")


def test_subclass_gets_legacy_schema() -> None:
    class Gemm(_LegacyOp):
        op_type, since_version = "Gemm", 6

    assert (Gemm.op_schema.name, Gemm.op_schema.since_version) == ("Gemm", 6)


def test_legacy_broadcast_unequal_shapes_message() -> None:
    with pytest.raises(ValueError, match=r"needs equal shapes, got \(2, 3\) and \(3,\)"):
        legacy_broadcast(np.zeros((2, 3)), np.zeros(3), 0, None)


def _bn_reference(x, s, b, mean, var, momentum, eps, axes) -> list[np.ndarray]:
    xd = x.astype(np.float64)
    bm, bv = xd.mean(axis=axes, keepdims=True), xd.var(axis=axes, keepdims=True)
    shape = bm.shape
    y = (xd - bm) / np.sqrt(bv + eps) * s.reshape(shape) + b.reshape(shape)
    bm, bv = bm.reshape(mean.shape), bv.reshape(var.shape)
    return [y, mean * momentum + bm * (1 - momentum), var * momentum + bv * (1 - momentum), bm, bv]


@pytest.mark.parametrize("spatial", [0, 1])
def test_batchnorm1_training(spatial: int) -> None:
    x = data((4, 3, 2))
    pshape = (3,) if spatial else (3, 2)
    s, b, mean = data(pshape, 1), data(pshape, 2), data(pshape, 3)
    var = np.abs(data(pshape, 4)) + F32(0.5)
    outs = ["y", "m", "v", "sm", "sv"]
    node = N("BatchNormalization", ["x", "s", "b", "mean", "var"], outs, consumed_inputs=[0, 0, 0, 1, 1],
             is_test=0, spatial=spatial, momentum=0.8, epsilon=1e-3)
    shapes = {"x": x.shape, "s": pshape, "b": pshape, "mean": pshape, "var": pshape}
    got = runtime.run_model(model([node], 5, shapes, outs), {"x": x, "s": s, "b": b, "mean": mean, "var": var})
    axes = (0, 2) if spatial else (0,)
    for name, want in zip(outs, _bn_reference(x, s, b, mean, var, 0.8, 1e-3, axes)):
        np.testing.assert_allclose(got[name], want, rtol=1e-5, atol=1e-5, err_msg=name)


def test_cast1_unknown_type_message() -> None:
    m = model([N("Cast", ["x"], ["y"], to="BOGUS")], 5, {"x": (2,)}, ["y"])
    with pytest.raises(ValueError, match=r"Cast-1: unknown target type 'BOGUS'"):
        runtime.run_model(m, {"x": np.zeros(2, F32)})


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER"])
@pytest.mark.parametrize("kernel, strides", [([4, 3], [1, 2]), ([3, 2], [2, 1]), ([5, 4], [2, 3])])
def test_averagepool1_auto_pad_matches_onnxruntime(auto_pad: str, kernel: list, strides: list) -> None:
    x = data((1, 2, 5, 6))
    node = N("AveragePool", ["x"], ["y"], kernel_shape=kernel, strides=strides, auto_pad=auto_pad)
    expected = ort(model([node], 7, {"x": x.shape}, ["y"]), {"x": x})[0]
    got = runtime.run_model(model([node], 6, {"x": x.shape}, ["y"]), {"x": x})["y"]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


# -- checker -----------------------------------------------------------------------------------

def test_nbytes_counts_int32_and_float_data() -> None:
    t = TensorProto(data_type=TensorProto.INT32, dims=[300], int32_data=list(range(300)))
    assert _nbytes(t) == 1200
    t = TensorProto(data_type=TensorProto.FLOAT, dims=[2], float_data=[1.0, 2.0])
    assert _nbytes(t) == 8


def test_check_graph_with_large_initializer_checks_value_info() -> None:
    bad = helper.make_tensor_value_info("t", F, [1, 7])
    m = model([N("Add", ["x", "w"], ["t"]), N("Relu", ["t"], ["y"])], 13, {"x": (1, 300)}, {"y": (1, 300)},
              inits={"w": np.ones((1, 300), F32)}, value_info=[bad])
    with pytest.raises(onnx.shape_inference.InferenceError):  # onnx itself: t's declared shape is wrong
        onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True)
    with pytest.raises(onnx.shape_inference.InferenceError, match="t"):
        check_graph(m)
    del m.graph.value_info[:]
    check_graph(m)  # without the wrong declaration the graph is fine


# -- names -------------------------------------------------------------------------------------

def test_fresh_name_counts_up() -> None:
    taken = {"a", "a_2"}
    assert [fresh_name("a", taken), fresh_name("a", taken), fresh_name("b", taken)] == ["a_3", "a_4", "b"]
    assert fresh_name("z", {"z"}) == "z_2"


# -- runtime -----------------------------------------------------------------------------------

def _legacy_add() -> tuple[onnx.ModelProto, onnx.ModelProto, dict]:
    a, b = data((2, 3, 4)), data((3,), 1)
    legacy = model([N("Add", ["a", "b"], ["y"], broadcast=1, axis=1)], 6, {"a": a.shape, "b": b.shape}, {"y": a.shape})
    modern = model([N("Add", ["a", "b3"], ["y"])], 7, {"a": a.shape, "b3": (3, 1)}, ["y"])
    return legacy, modern, {"a": a, "b": b}


@pytest.mark.parametrize("as_path", [False, True])
def test_lifted_session_from_bytes_or_path(as_path: bool, tmp_path) -> None:
    legacy, modern, feeds = _legacy_add()
    source: object = legacy.SerializeToString()
    if as_path:
        source = tmp_path / "m.onnx"
        source.write_bytes(legacy.SerializeToString())
    session = runtime.Session(runtime.ONNXRUNTIME_LIFTED, source)
    assert session.lifted_from == 6
    expected = ort(modern, {"a": feeds["a"], "b3": feeds["b"].reshape(3, 1)})[0]
    np.testing.assert_allclose(session.run(feeds)["y"], expected, rtol=1e-6)


def test_run_with_auto_and_run_model_forced() -> None:
    m = model([N("Relu", ["x"], ["y"])], 13, {"x": (2, 3)}, ["y"])
    x = data((2, 3))
    np.testing.assert_array_equal(runtime.run_with("auto", m, {"x": x})["y"], np.maximum(x, 0))
    for name in ("reference", "onnxruntime"):
        np.testing.assert_array_equal(runtime.run_model(m, {"x": x}, runtime=name)["y"], np.maximum(x, 0))


def test_onnxruntime_session_is_quiet(capfd: pytest.CaptureFixture) -> None:
    """Session sets onnxruntime's log level to errors: its warnings (here: an unused initializer
    being removed) do not reach stderr."""
    m = model([N("Relu", ["x"], ["y"])], 13, {"x": (1, 3)}, {"y": (1, 3)}, inits={"unused": np.ones(3, F32)})
    capfd.readouterr()
    runtime.Session(runtime.ONNXRUNTIME, m).run({"x": np.zeros((1, 3), F32)})
    assert "unused" not in capfd.readouterr().err


# -- more edges: rewrites made at import, the runtime's sentences, IR stamping ---------------------

def _node_editor(op: str, inputs: list[str], outputs: list[str]) -> tuple[GraphEditor, onnx.NodeProto]:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info(outputs[0], TensorProto.FLOAT, [2])
    node = helper.make_node(op, inputs, outputs)
    model = helper.make_model(helper.make_graph([node], "g", [x], [y]), opset_imports=[helper.make_opsetid("", 9)])
    return GraphEditor(model), model.graph.node[0]


def test_the_keep_first_rewrites_act_on_inputs_and_on_outputs() -> None:
    """Made at import for the table, so called here: one trims inputs, the other outputs."""
    editor, node = _node_editor("Split", ["x", ""], ["y", "z", ""])
    adapters._no_extra_inputs(1, "r")(editor, node)
    adapters._no_extra_outputs(2, "r")(editor, node)
    assert list(node.input) == ["x"] and list(node.output) == ["y", "z"]
    with pytest.raises(adapters.StepRefused, match="^inputs given$"):
        adapters._no_extra_inputs(0, "inputs given")(editor, node)
    with pytest.raises(adapters.StepRefused, match="^outputs named$"):
        adapters._no_extra_outputs(1, "outputs named")(editor, node)


def test_an_unknown_runtime_is_named_with_the_choices() -> None:
    model = _node_editor("Relu", ["x"], ["y"])[0].model
    with pytest.raises(runtime.UnknownRuntimeError) as caught:
        runtime.Session("tensorrt", model)
    assert str(caught.value) == ("unknown runtime 'tensorrt': choose one of onnxruntime, onnxruntime-lifted, "
                                 "reference or 'auto'")


def test_the_opset_of_an_ai_onnx_import_is_read() -> None:
    model = _node_editor("Relu", ["x"], ["y"])[0].model
    model.opset_import[0].domain = "ai.onnx"
    assert runtime.model_opset(model) == 9


@pytest.mark.parametrize("opset, expected", [(9, ["onnxruntime", "reference"]), (6, ["reference", "onnxruntime-lifted"])])
def test_without_onnxruntime_only_the_reference_evaluator_is_offered(monkeypatch: pytest.MonkeyPatch, opset: int,
                                                                     expected: list[str]) -> None:
    model = _node_editor("Relu", ["x"], ["y"])[0].model
    model.opset_import[0].version = opset
    assert runtime.available_runtimes(model) == expected
    monkeypatch.setattr(runtime, "_ort_installed", lambda: False)
    assert runtime.available_runtimes(model) == ["reference"]


@pytest.mark.parametrize("target, listed", [(8, True), (9, False)])
def test_initializers_are_listed_as_inputs_only_at_ir_3(target: int, listed: bool) -> None:
    """Opset 8 is IR 3 (initializers must be graph inputs); opset 9 is IR 4 (they must not be)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g", [x], [y],
                              [numpy_helper.from_array(np.ones(2, np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    moved = convert_opset(model, target)
    assert moved.ir_version == (3 if listed else 4)
    assert ("w" in [v.name for v in moved.graph.input]) == listed


def test_an_opset_onnx_knows_but_its_version_table_lacks_takes_onnxs_own_ir(monkeypatch: pytest.MonkeyPatch) -> None:
    """A newer onnx may know an opset before VERSION_TABLE has its row: stamp the installed IR and release."""
    from zooforge.versioning import latest_opset, opsets

    newest = latest_opset()
    rows = [row for row in helper.VERSION_TABLE if row[2] < newest]
    monkeypatch.setattr(opsets.helper, "VERSION_TABLE", rows)
    info = opsets.opset_info(newest)
    assert (info.opset, info.ir_version, info.onnx_release) == (newest, onnx.IR_VERSION, onnx.__version__)
