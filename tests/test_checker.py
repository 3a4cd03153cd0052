"""zooforge.versioning.checker.check_graph against onnx's own checker on the whole model.

check_graph leaves large initializers out of what it hands to onnx.checker (as typed graph
inputs instead); its verdict must be the one onnx.checker (full) plus strict shape inference give
on the complete model, for valid and broken graphs, small and large weights, every IR version.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from zooforge.versioning import checker
from zooforge.versioning.checker import LARGE_TENSOR_BYTES, check_graph


def _conv_model(weight: np.ndarray, *, ir: int = 8, opset: int = 13, in_inputs: bool = False,
                x_shape: tuple[int, ...] = (1, 3, 8, 8), out_channels: int | None = None,
                raw: bool = True, extra_init: dict[str, np.ndarray] | None = None) -> onnx.ModelProto:
    """x -> Conv(W) -> y, with W an initializer (also a graph input when ``in_inputs``)."""
    out_channels = weight.shape[0] if out_channels is None else out_channels
    init = numpy_helper.from_array(weight, "W")
    if not raw:
        init = helper.make_tensor("W", TensorProto.FLOAT, weight.shape, weight.ravel().tolist())
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)]
    if in_inputs:
        inputs.append(helper.make_tensor_value_info("W", TensorProto.FLOAT, weight.shape))
    size = x_shape[2] - weight.shape[2] + 1
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "W"], ["y"], name="conv")], "g", inputs,
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, (1, out_channels, size, size))],
        [init, *(numpy_helper.from_array(v, k) for k, v in (extra_init or {}).items())])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="t",
                              doc_string="d", model_version=3)
    model.ir_version = ir
    return model


def _onnx_verdict(model: onnx.ModelProto) -> bool:
    """onnx's own checker and strict shape inference on the complete model."""
    try:
        onnx.checker.check_model(model, full_check=True)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError):
        return False
    return True


def _our_verdict(model: onnx.ModelProto) -> bool:
    try:
        check_graph(model)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError):
        return False
    return True


SMALL = np.ones((2, 3, 3, 3), np.float32)  # 216 bytes
LARGE = np.ones((16, 3, 3, 3), np.float32)  # 1728 bytes
def _break(model: onnx.ModelProto, case: str) -> onnx.ModelProto:
    """``model`` with one fault of kind ``case`` (or none for "valid")."""
    conv, declared = model.graph.node[0], model.graph.output[0].type.tensor_type
    if case == "dangling input":
        conv.input[0] = "nowhere"
    elif case == "kernel shape the weight does not have":
        conv.attribute.append(helper.make_attribute("kernel_shape", [5, 5]))
    elif case == "declared output of another type":
        declared.elem_type = TensorProto.INT64
    elif case == "attribute of the wrong type":
        conv.attribute.append(helper.make_attribute("group", 0.5))
    elif case == "unknown operator":
        conv.op_type = "Convolution"
    elif case == "wrong declared output channels":
        declared.shape.dim[1].dim_value = 5
    return model


FAULTS = ["valid", "dangling input", "kernel shape the weight does not have", "declared output of another type",
          "attribute of the wrong type", "unknown operator", "wrong declared output channels"]


@pytest.mark.parametrize("weight", [SMALL, LARGE], ids=["small", "large"])
@pytest.mark.parametrize("raw", [True, False], ids=["raw_data", "float_data"])
@pytest.mark.parametrize("case", FAULTS)
def test_verdict_is_onnx_checkers_on_the_whole_model(weight: np.ndarray, raw: bool, case: str) -> None:
    model = _break(_conv_model(weight, raw=raw), case)
    expected = _onnx_verdict(model)
    assert expected == (case == "valid")  # the cases are what their names say, by onnx's own account
    assert _our_verdict(model) == expected


def test_input_of_the_wrong_rank_is_refused_for_a_large_weight() -> None:
    model = _conv_model(LARGE, x_shape=(1, 3, 8))
    assert not _onnx_verdict(model) and not _our_verdict(model)


@pytest.mark.parametrize("ir", [3, 4, 8])
@pytest.mark.parametrize("weight", [SMALL, LARGE], ids=["small", "large"])
def test_every_ir_version_with_initializers_listed_as_inputs_passes(ir: int, weight: np.ndarray) -> None:
    model = _conv_model(weight, ir=ir, opset=7, in_inputs=True)
    assert _onnx_verdict(model)
    check_graph(model)


@pytest.mark.parametrize("weight", [SMALL, LARGE], ids=["small", "large"])
def test_ir3_initializer_missing_from_the_inputs_is_still_judged_on_the_graph(weight: np.ndarray) -> None:
    """IR 3 requires listed initializers (onnx's checker refuses the model); check_graph judges the graph."""
    model = _conv_model(weight, ir=3, opset=7, in_inputs=False)
    assert not _onnx_verdict(model)
    check_graph(model)


def test_model_is_not_changed_by_the_check() -> None:
    model = _conv_model(LARGE, ir=3, opset=7, extra_init={"unused": np.zeros(300, np.float32)})
    before = model.SerializeToString()
    check_graph(model)
    assert model.SerializeToString() == before


def _checked_probe(model: onnx.ModelProto, monkeypatch: pytest.MonkeyPatch,
                   detached: dict | None = None) -> onnx.ModelProto:
    seen: list[onnx.ModelProto] = []
    real = onnx.checker.check_model

    def spy(probe: onnx.ModelProto, full_check: bool = False) -> None:
        assert full_check
        seen.append(probe)
        real(probe, full_check=full_check)

    monkeypatch.setattr(checker.onnx.checker, "check_model", spy)
    check_graph(model, detached)
    (probe,) = seen
    return probe


@pytest.mark.parametrize("count, large", [(LARGE_TENSOR_BYTES // 4, True), (LARGE_TENSOR_BYTES // 4 - 1, False)])
@pytest.mark.parametrize("raw", [True, False], ids=["raw_data", "float_data"])
def test_initializers_of_the_threshold_size_and_over_are_left_out(monkeypatch: pytest.MonkeyPatch, count: int,
                                                                 large: bool, raw: bool) -> None:
    """A float tensor of LARGE_TENSOR_BYTES or more (raw or float_data) reaches the checker as a typed input."""
    weight = np.arange(count, dtype=np.float32).reshape(count, 1, 1, 1)
    model = _conv_model(weight, x_shape=(1, 1, 4, 4), raw=raw)
    probe = _checked_probe(model, monkeypatch)
    kept = {t.name for t in probe.graph.initializer}
    typed = {v.name: v for v in probe.graph.input}
    assert ("W" in kept) == (not large)
    assert "W" in typed if large else "W" not in typed
    if large:
        tensor_type = typed["W"].type.tensor_type
        assert tensor_type.elem_type == TensorProto.FLOAT
        assert [d.dim_value for d in tensor_type.shape.dim] == [count, 1, 1, 1]
    for field in ("ir_version", "producer_name", "doc_string", "model_version"):
        assert getattr(probe, field) == max(getattr(model, field), 4) if field == "ir_version" else \
            getattr(probe, field) == getattr(model, field)
    assert [(o.domain, o.version) for o in probe.opset_import] == [("", 13)]
    assert [n.name for n in probe.graph.node] == ["conv"] and [o.name for o in probe.graph.output] == ["y"]


def test_int64_data_counts_eight_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """128 int64 values (1024 bytes, stored in int64_data) are large; 127 are not."""
    for count, large in ((128, True), (127, False)):
        shape = helper.make_tensor("shape", TensorProto.INT64, (count,), [1] * count)
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1] * count)
        graph = helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["y"])], "g", [x],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1] * count)], [shape])
        probe = _checked_probe(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), monkeypatch)
        assert ("shape" in {t.name for t in probe.graph.initializer}) == (not large)


def test_detached_weights_are_declared_with_their_type_and_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    """Weights kept outside the model (``detached``) are checked as inputs of their dtype and shape."""
    model = _conv_model(SMALL)
    del model.graph.initializer[:]
    probe = _checked_probe(model, monkeypatch, {"W": SMALL})
    (w,) = [v for v in probe.graph.input if v.name == "W"]
    assert [d.dim_value for d in w.type.tensor_type.shape.dim] == [2, 3, 3, 3]
    wrong = _conv_model(SMALL)
    del wrong.graph.initializer[:]
    with pytest.raises(onnx.shape_inference.InferenceError):
        check_graph(wrong, {"W": np.ones((5, 3, 3, 3), np.float32)})  # 5 output channels: y declares 2
    with pytest.raises(onnx.shape_inference.InferenceError):  # (dtype, dims) pairs are taken as they are
        check_graph(wrong, {"W": (TensorProto.FLOAT, [5, 3, 3, 3])})
    with pytest.raises(onnx.shape_inference.InferenceError):
        check_graph(wrong, {"W": (TensorProto.INT64, [2, 3, 3, 3])})
    check_graph(wrong, {"W": (TensorProto.FLOAT, [2, 3, 3, 3])})
