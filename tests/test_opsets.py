"""Every opset from 3 to the newest: models written directly at each opset, and models moved
between opsets by the converter, agree with the Caffe2 executor (the source model's runtime).

Opsets below 7 run on onnx's reference evaluator with zooforge's legacy kernels; from 7 on, on
onnxruntime and on the reference evaluator both. The measured errors are printed (``-s``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from converters.api import ConvertOptions, convert_builtin, convert_caffe
from converters.caffe2.executor import run_net
from converters.caffe2.netdef import Caffe2Model
from converters.onnx.frontend import ExportOptions, caffe2_to_onnx
from versioning import latest_opset, opset_info
from versioning.convert import convert_opset, model_opset
from versioning.errors import OpsetError
from versioning.runtime import available_runtimes, run_with

OPSETS = [3, 6, 7, 8, 9, 12, *range(13, latest_opset() + 1)]
# The reference evaluator takes seconds on AlexNet: run it there at the opsets that matter most.
ALEXNET_REFERENCE_OPSETS = {3, 6, 7, 9, 12, 13, latest_opset()}
TOLERANCE = 1e-5


@dataclass
class Source:
    caffe2: Caffe2Model
    feed: dict[str, np.ndarray]
    expected: np.ndarray


def _source(conversion, scale: float) -> Source:
    caffe2 = conversion.caffe2
    (name,) = caffe2.inputs
    x = np.random.default_rng(11).uniform(-scale, scale, caffe2.input_shapes[name]).astype(np.float32)
    (expected,) = run_net(caffe2, {name: x}).values()
    return Source(caffe2, {name: x}, expected)


@pytest.fixture(scope="module")
def sources(shared: Path) -> dict[str, Source]:
    trained = shared / "caffe" / "trained"
    return {
        "lenet": _source(convert_caffe(trained / "lenet_mnist_v2" / "lenet.prototxt",
                                       trained / "lenet_mnist_v2" / "lenet_iter_10000.caffemodel"), 1.0),
        "cifar10_full": _source(convert_caffe(trained / "v1_binaries" / "cifar10_full.prototxt",
                                              trained / "v1_binaries" / "cifar10_full_iter_70000.caffemodel"), 128),
        "alexnet227": _source(convert_builtin("alexnet"), 128),
        "alexnet224": _source(convert_builtin("alexnet", ConvertOptions(input_shapes=(1, 3, 224, 224))), 128),
    }


def _runtimes(name: str, model: onnx.ModelProto, opset: int) -> list[str]:
    runtimes = available_runtimes(model)
    if name.startswith("alexnet") and opset not in ALEXNET_REFERENCE_OPSETS:
        runtimes = [r for r in runtimes if r != "reference"]
    return runtimes


def _feed_for(model: onnx.ModelProto, source: Source) -> dict[str, np.ndarray]:
    (value,) = source.feed.values()
    return {model.graph.input[0].name: value}


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("name", ["lenet", "cifar10_full", "alexnet227", "alexnet224"])
def test_written_at_every_opset_matches_the_executor(sources, name: str, opset: int) -> None:
    source = sources[name]
    written = caffe2_to_onnx(source.caffe2, ExportOptions(opset))
    payload = written.to_bytes()  # the bytes a file would hold; AlexNet's runs take them directly
    model = onnx.load_from_string(payload)
    info = opset_info(opset)
    assert model.ir_version == info.ir_version
    assert model_opset(model) == opset
    initializers = {t.name for t in model.graph.initializer}
    inputs = {i.name for i in model.graph.input}
    assert (initializers <= inputs) == info.initializers_are_inputs
    if not name.startswith("alexnet"):  # the full model through onnx's own checker
        onnx.checker.check_model(model, full_check=True)
    errors = {}
    for runtime in _runtimes(name, model, opset):
        (out,) = run_with(runtime, payload if runtime == "onnxruntime" else model, _feed_for(model, source)).values()
        errors[runtime] = float(np.abs(out - source.expected).max())
    print(f"{name} opset {opset} IR {model.ir_version}: " +
          ", ".join(f"{k} {v:.1e}" for k, v in errors.items()))
    assert errors and max(errors.values()) <= TOLERANCE, errors
    if opset < 7:  # the reference evaluator, and onnxruntime on the model lifted to opset 7
        assert list(errors) == ["reference", "onnxruntime-lifted"]
    else:
        assert "onnxruntime" in errors


# -- the converter ----------------------------------------------------------------------------

LIGHT = Path("onnx") / "light" / "light_bvlc_alexnet.onnx"


@pytest.fixture(scope="module")
def light(shared: Path) -> onnx.ModelProto:
    return onnx.load(str(shared / LIGHT))


def test_light_zoo_alexnet_reference_output(shared: Path, light: onnx.ModelProto) -> None:
    # The published output was made by onnx's C reference evaluator for its published input.
    expected = numpy_helper.to_array(onnx.load_tensor(str(shared / "onnx" / "light" /
                                                           "light_bvlc_alexnet_output_0.pb")))
    assert expected.shape == (1, 1000)


@pytest.mark.parametrize("target", range(7, latest_opset() + 1))
def test_light_zoo_alexnet_up_and_back_down_to_7(light: onnx.ModelProto, target: int) -> None:
    x = np.random.default_rng(5).uniform(-1, 1, (1, 3, 224, 224)).astype(np.float32)
    (before,) = run_with("onnxruntime", light, {"data_0": x}).values()
    moved = convert_opset(light, target)
    back = convert_opset(moved, 7)
    assert model_opset(moved) == target and moved.ir_version == opset_info(target).ir_version
    assert model_opset(back) == 7 and back.ir_version == 3
    for model in (moved, back):
        (after,) = run_with("onnxruntime", model, {"data_0": x}).values()
        assert float(np.abs(after - before).max()) <= 1e-6
    assert [o.name for o in moved.graph.output] == ["prob_1"]


@pytest.mark.parametrize("name", ["lenet", "cifar10_full", "alexnet224"])
@pytest.mark.parametrize("start", [3, 9, "latest"])
def test_converted_between_opsets_matches_the_executor(sources, name: str, start) -> None:
    start = latest_opset() if start == "latest" else start
    source = sources[name]
    model = caffe2_to_onnx(source.caffe2, ExportOptions(start)).to_proto()
    targets = OPSETS if not name.startswith("alexnet") else sorted({3, 9, 13, latest_opset()} - {start})
    worst = 0.0
    for target in targets:
        moved = convert_opset(model, target)
        assert moved.ir_version == opset_info(target).ir_version
        runtime = "onnxruntime" if target >= 7 else "reference"
        (out,) = run_with(runtime, moved, _feed_for(moved, source)).values()
        error = float(np.abs(out - source.expected).max())
        assert error <= TOLERANCE, f"{name} {start} -> {target}: {error}"
        worst = max(worst, error)
    print(f"{name} from opset {start} to {targets[0]}..{targets[-1]}: worst {worst:.1e}")


# -- refusals: each names the node, the operator and the step -----------------------------------

def _single(op: str, opset: int, inputs, outputs, initializers=(), **attrs) -> onnx.ModelProto:
    from onnx import helper

    node = helper.make_node(op, [i[0] for i in inputs], [o[0] for o in outputs], name=f"my_{op.lower()}", **attrs)
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info(n, 1, s) for n, s in inputs if n not in {t.name for t in initializers}],
        [helper.make_tensor_value_info(n, 1, s) for n, s in outputs],
        initializer=list(initializers),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = opset_info(opset).ir_version
    return model


def test_softmax_on_a_non_last_axis_is_refused_below_13() -> None:
    model = _single("Softmax", 13, [("x", [1, 4, 3, 3])], [("y", [1, 4, 3, 3])], axis=1)
    with pytest.raises(OpsetError, match=r"node 'my_softmax' \(Softmax\) cannot go from opset 13 to 12: axis 1"):
        convert_opset(model, 9)


def test_softmax_of_a_4d_tensor_going_up_to_13_keeps_its_meaning() -> None:
    model = _single("Softmax", 12, [("x", [2, 4, 3, 3])], [("y", [2, 4, 3, 3])], axis=1)
    x = np.random.default_rng(0).standard_normal((2, 4, 3, 3)).astype(np.float32)
    (before,) = run_with("onnxruntime", model, {"x": x}).values()
    (after,) = run_with("onnxruntime", convert_opset(model, 13), {"x": x}).values()
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-7)
    rows = x.reshape(2, -1)
    manual = np.exp(rows - rows.max(1, keepdims=True))
    np.testing.assert_allclose(before.reshape(2, -1), manual / manual.sum(1, keepdims=True), atol=1e-6)


def test_ceil_mode_pooling_with_unknown_spatial_size_is_refused_below_10() -> None:
    model = _single("MaxPool", 12, [("x", [1, 1, "h", "w"])], [("y", [1, 1, None, None])],
                    kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)
    with pytest.raises(OpsetError, match=r"node 'my_maxpool' \(MaxPool\) cannot go from opset 10 to 9: .*static"):
        convert_opset(model, 8)


def test_ceil_mode_pooling_with_known_size_becomes_end_padding() -> None:
    model = _single("MaxPool", 12, [("x", [1, 1, 10, 10])], [("y", [1, 1, 5, 5])],
                    kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)
    x = np.random.default_rng(0).standard_normal((1, 1, 10, 10)).astype(np.float32)
    moved = convert_opset(model, 8)
    pads = [a for a in moved.graph.node[0].attribute if a.name == "pads"][0].ints
    assert list(pads) == [0, 0, 1, 1]  # (5-1)*2+3 = 11 covers one row past 10
    np.testing.assert_array_equal(run_with("onnxruntime", moved, {"x": x})["y"],
                                  run_with("onnxruntime", model, {"x": x})["y"])


def test_unsupported_operator_is_refused_by_name() -> None:
    model = _single("Resize", 13, [("x", [1, 1, 4, 4])], [("y", [1, 1, 4, 4])])
    with pytest.raises(OpsetError, match=r"node 'my_resize' is a Resize"):
        convert_opset(model, 12)


def test_dropout_in_training_mode_is_refused_below_12() -> None:
    from onnx import helper

    mode = numpy_helper.from_array(np.array(True), "mode")
    ratio = numpy_helper.from_array(np.array(0.3, np.float32), "ratio")
    model = _single("Dropout", 13, [("x", [1, 4]), ("ratio", []), ("mode", [])], [("y", [1, 4])],
                    initializers=[ratio, mode])
    model.graph.input[-1].type.tensor_type.elem_type = 9
    del model.graph.input[1:]
    with pytest.raises(OpsetError, match=r"node 'my_dropout' \(Dropout\) cannot go from opset 12 to 11: training_mode"):
        convert_opset(model, 11)
    assert helper is not None


def test_opset_outside_the_range_is_refused(light: onnx.ModelProto) -> None:
    with pytest.raises(OpsetError, match="outside the supported range"):
        convert_opset(light, latest_opset() + 1)
    with pytest.raises(OpsetError, match="outside the supported range"):
        convert_opset(light, 2)
