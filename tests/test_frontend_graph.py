"""The graph caffe2_to_onnx assembles, fact by fact, against values written here by hand: its
name, producer, node names, the opset-4/5 Reshape forms, IR 3's initializers-as-inputs, the
symbolic batch, and the refusal of a blob read before anything writes it."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from zooforge.converters.caffe2 import schema
from zooforge.converters.caffe2.netdef import Caffe2Model, make_op
from zooforge.converters.errors import ExportError
from zooforge.converters.onnx.context import ExportContext
from zooforge.converters.onnx.frontend import ExportOptions, caffe2_to_onnx

W = np.arange(24, dtype=np.float32).reshape(2, 12) / 10
B = np.array([0.5, -0.5], np.float32)


def _net(name: str = "tiny", relu_name: str = "") -> Caffe2Model:
    """x (1, 3, 2, 2) -> Reshape (1, 12) -> FC(W, B) -> Relu -> y."""
    net = schema.NetDef(name=name)
    net.op.extend([
        make_op("Reshape", ["x"], ["flat", "old"], name="to_rows", shape=[1, 12]),
        make_op("FC", ["flat", "w", "b"], ["fc"], name="fc1"),
        make_op("Relu", ["fc"], ["y"], name=relu_name),
    ])
    net.external_input.extend(["x", "w", "b"])
    net.external_output.append("y")
    return Caffe2Model(net, {"w": W, "b": B}, {"x": (1, 3, 2, 2)})


def _graph(opset: int = 12, **options: object):
    return caffe2_to_onnx(_net(**{k: options.pop(k) for k in ("name", "relu_name") if k in options}),
                          ExportOptions(opset=opset, **options)).to_proto()


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def test_graph_name_producer_and_opset() -> None:
    model = _graph(12, producer_version="9.9")
    assert model.graph.name == "tiny"
    assert (model.producer_name, model.producer_version) == ("zooforge", "9.9")
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 12)] and model.ir_version == 7
    assert _graph(12, name="").graph.name == "model"


def test_node_names_are_the_operator_names_or_their_first_output() -> None:
    model = _graph(12, relu_name="", names="caffe")
    by_type = {node.op_type: node for node in model.graph.node}
    assert by_type["Gemm"].name == "fc1" and by_type["Relu"].name == "y"


@pytest.mark.parametrize("opset, attribute", [(3, True), (4, True), (5, False), (12, False)])
def test_reshape_takes_an_attribute_before_opset_5_and_an_input_from_5(opset: int, attribute: bool) -> None:
    model = _graph(opset)
    (reshape,) = [n for n in model.graph.node if n.op_type == "Reshape"]
    if attribute:
        assert len(reshape.input) == 1 and [list(a.ints) for a in reshape.attribute if a.name == "shape"] == [[1, 12]]
    else:
        (shape,) = [t for t in model.graph.initializer if t.name == reshape.input[1]]
        assert shape.data_type == TensorProto.INT64 and list(shape.int64_data or np.frombuffer(shape.raw_data,
                                                                                              np.int64)) == [1, 12]
        assert not reshape.attribute


@pytest.mark.parametrize("opset, listed", [(3, True), (8, True), (9, False), (12, False)])
def test_initializers_are_graph_inputs_exactly_at_ir_3(opset: int, listed: bool) -> None:
    """IR 3 (opsets 3..8 as the zoo stamped them) lists every initializer among the inputs, typed."""
    model = _graph(opset)
    inputs = {value.name: value for value in model.graph.input}
    initializers = {t.name for t in model.graph.initializer}
    assert (model.ir_version == 3) == listed
    assert (initializers <= set(inputs)) == listed and (len(inputs) == 1 + len(initializers) * listed)
    for name in initializers & set(inputs):
        init = next(t for t in model.graph.initializer if t.name == name)
        assert inputs[name].type.tensor_type.elem_type == init.data_type
        assert _dims(inputs[name]) == list(init.dims)


@pytest.mark.parametrize("dynamic", [False, True])
def test_batch_is_symbolic_only_when_asked(dynamic: bool) -> None:
    model = _graph(12, dynamic_batch=dynamic)
    (x,), (y,) = model.graph.input, model.graph.output
    first = "N" if dynamic else 1
    assert _dims(x) == [first, 3, 2, 2] and _dims(y) == [first, 2]
    assert x.type.tensor_type.elem_type == y.type.tensor_type.elem_type == TensorProto.FLOAT


def test_export_context_batch_is_fixed_by_default() -> None:
    assert ExportContext(12, {}, {}, set()).dynamic_batch is False


def test_a_blob_read_before_it_is_written_is_refused() -> None:
    """A blob with a known shape that is neither an external input nor any operator's output."""
    model = _net()
    model.predict_net.op[1].input[0] = "nowhere"
    model.input_shapes["nowhere"] = (1, 12)  # shape inference knows it; the net never declares it
    with pytest.raises(ExportError, match="^blob 'nowhere' is read before any operator writes it$"):
        caffe2_to_onnx(model, ExportOptions(opset=12))


def test_the_naming_style_is_checked() -> None:
    with pytest.raises(ExportError, match="unknown naming style 'onnx'; use 'zoo' or 'caffe'"):
        caffe2_to_onnx(_net(), ExportOptions(opset=12, names="onnx"))  # type: ignore[arg-type]


@pytest.mark.parametrize("names, pad_output", [("caffe", "y_padded_2"), ("zoo", "y_1_padded")])
def test_an_intermediate_never_takes_the_name_of_a_blob_written_later(names, pad_output):
    """AveragePool with count_include_pad at opset 5 pads through an intermediate named after its
    output ("y_padded"); a later blob of that very name keeps it, the intermediate moves aside."""
    net = schema.NetDef(name="clash")
    net.op.extend([make_op("AveragePool", ["x"], ["y"], name="p", kernel=2, stride=1, pad=1, count_include_pad=1),
                   make_op("Relu", ["y"], ["y_padded"], name="r")])
    net.external_input.append("x")
    net.external_output.append("y_padded")
    x = np.arange(-8, 8, dtype=np.float32).reshape(1, 1, 4, 4)
    proto = caffe2_to_onnx(Caffe2Model(net, {}, {"x": x.shape}), ExportOptions(opset=5, names=names)).to_proto()
    onnx.checker.check_model(proto, full_check=True)
    assert [node.op_type for node in proto.graph.node] == ["Pad", "AveragePool", "Relu"]
    assert proto.graph.node[0].output[0] == pad_output == proto.graph.node[1].input[0]
    padded = np.pad(x[0, 0], 1)
    expected = np.maximum(0, [[padded[i:i + 2, j:j + 2].mean() for j in range(5)] for i in range(5)])
    from zooforge.versioning.runtime import run_with  # opset 5: onnx's reference evaluator with legacy kernels

    (got,) = run_with("reference", proto, {proto.graph.input[0].name: x}).values()
    np.testing.assert_allclose(got[0, 0], expected, rtol=1e-6)


def test_caffe_names_of_overwritten_blobs_step_aside_for_blobs_of_that_name():
    """With Caffe names an in-place blob's earlier versions are "<blob>_<n>"; a blob that is
    itself named "y_1" keeps its name and the earlier "y" becomes "y_1_2" (hand-written)."""
    net = schema.NetDef(name="clash")
    net.op.extend([make_op("Relu", ["x"], ["y"]), make_op("Sigmoid", ["y"], ["y"]),
                   make_op("Tanh", ["x"], ["y_1"]), make_op("Add", ["y", "y_1"], ["z"])])
    net.external_input.append("x")
    net.external_output.append("z")
    x = np.linspace(-2, 2, 6, dtype=np.float32).reshape(1, 6)
    proto = caffe2_to_onnx(Caffe2Model(net, {}, {"x": x.shape}), ExportOptions(opset=13, names="caffe")).to_proto()
    onnx.checker.check_model(proto, full_check=True)
    assert [(n.op_type, list(n.input), list(n.output)) for n in proto.graph.node] == [
        ("Relu", ["x"], ["y_1_2"]), ("Sigmoid", ["y_1_2"], ["y"]), ("Tanh", ["x"], ["y_1"]),
        ("Add", ["y", "y_1"], ["z"])]
    from conftest import run_onnx

    (got,) = run_onnx(proto, {"x": x}).values()
    np.testing.assert_allclose(got, 1 / (1 + np.exp(-np.maximum(x, 0))) + np.tanh(x), rtol=1e-6)
