"""Every opset from 3 to the newest: models written directly at each opset, and models moved
between opsets by the converter, agree with the Caffe2 executor (the source model's runtime).

Opsets below 7 run on onnx's reference evaluator with zooforge's legacy kernels; from 7 on, on
onnxruntime and on the reference evaluator both. The measured errors are printed (``-s``). The IR
version every model must carry comes from onnx's own table (docs/Versioning.md), not from the code."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from conftest import LIGHT_ALEXNET, light_input, run_onnx
from zooforge.converters.api import ConvertOptions, convert_builtin, convert_caffe
from zooforge.converters.caffe2.executor import run_net
from zooforge.converters.caffe2.netdef import Caffe2Model
from zooforge.converters.onnx.frontend import ExportOptions, caffe2_to_onnx
from zooforge.versioning import latest_opset, opset_info
from zooforge.versioning.convert import convert_opset, model_opset
from zooforge.versioning.errors import OpsetError
from zooforge.versioning.opsets import OpsetInfo
from zooforge.versioning.runtime import available_runtimes, run_model, run_with

OPSETS = [3, 6, 7, 8, 9, 12, *range(13, latest_opset() + 1)]
# The reference evaluator takes seconds on AlexNet: run it there at the opsets that matter most.
ALEXNET_REFERENCE_OPSETS = {3, 6, 7, 9, 12, 13, latest_opset()}
TOLERANCE = 1e-5

# opset -> (IR version, first ONNX release with it), hand-copied from the "Released Versions" table
# of onnx's docs/Versioning.md (onnx/onnx main, which ends at 1.22.0 / opset 27). Opsets 3 and 4
# came with no release of their own: ONNX 1.1 (opset 5) is the first to know them.
DOCUMENTED = {
    3: (3, "1.1"), 4: (3, "1.1"), 5: (3, "1.1"), 6: (3, "1.1.2"), 7: (3, "1.2"), 8: (3, "1.3"),
    9: (4, "1.4.1"), 10: (5, "1.5.0"), 11: (6, "1.6.0"), 12: (7, "1.7.0"), 13: (7, "1.8.0"),
    14: (7, "1.9.0"), 15: (8, "1.10.0"), 16: (8, "1.11.0"), 17: (8, "1.12.0"), 18: (8, "1.13.0"),
    19: (9, "1.14.0"), 20: (9, "1.15.0"), 21: (10, "1.16.0"), 22: (10, "1.17.0"), 23: (11, "1.18.0"),
    24: (12, "1.19.0"), 25: (13, "1.20.0"), 26: (13, "1.21.0"), 27: (13, "1.22.0"),
}


def assert_documented_ir(model: onnx.ModelProto, opset: int) -> None:
    """``model`` carries the IR version onnx's table gives ``opset``; an opset newer than the table
    needs at least the table's last IR version."""
    if opset in DOCUMENTED:
        assert model.ir_version == DOCUMENTED[opset][0], f"opset {opset}: IR {model.ir_version}"
    else:
        assert model.ir_version >= DOCUMENTED[max(DOCUMENTED)][0], f"opset {opset}: IR {model.ir_version}"


@pytest.mark.parametrize("opset", sorted(DOCUMENTED))
def test_opset_table_is_onnx_versioning_table(opset: int) -> None:
    """opset_info against docs/Versioning.md, copied by hand into DOCUMENTED."""
    ir_version, release = DOCUMENTED[opset]
    assert opset_info(opset) == OpsetInfo(opset, ir_version, release)
    assert opset_info(opset).initializers_are_inputs == (opset < 9)  # IR 4 (opset 9) lifted the rule


@pytest.mark.parametrize("opset", [3, 8, 9, 10, 11, 12, 15, 19, 21, 23, 25])
def test_converted_caffe_file_carries_the_documented_ir(shared: Path, tmp_path: Path, opset: int) -> None:
    """The IR version in a saved zoo-convert output, against docs/Versioning.md."""
    trained = shared / "caffe" / "trained" / "lenet_mnist_v2"
    out = tmp_path / "lenet.onnx"
    convert_caffe(trained / "lenet.prototxt", trained / "lenet_iter_10000.caffemodel",
                  ConvertOptions(opset=opset)).save(out)
    model = onnx.load(str(out))
    assert model_opset(model) == opset
    assert_documented_ir(model, opset)


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
        "alexnet227": _source(convert_builtin("alexnet", ConvertOptions(input_shapes=(1, 3, 227, 227))), 128),
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
    assert_documented_ir(model, opset)
    assert model_opset(model) == opset
    initializers = {t.name for t in model.graph.initializer}
    inputs = {i.name for i in model.graph.input}
    assert (initializers <= inputs) == (opset < 9)  # IR 3 (below opset 9) lists initializers as inputs
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

@pytest.fixture(scope="module")
def light(shared: Path) -> onnx.ModelProto:
    return onnx.load(str(shared / LIGHT_ALEXNET))


@pytest.mark.parametrize("target", range(3, latest_opset() + 1))
def test_light_zoo_alexnet_at_every_opset_gives_the_published_output(shared: Path, light: onnx.ModelProto,
                                                                     target: int) -> None:
    """The published light graph moved to ``target`` by zooforge and run on the runtime zooforge
    picks for that opset reproduces the published output_0.pb (onnx's reference evaluator), within
    the tolerances onnx's runner uses for it (real/test_bvlc_alexnet/data.json). Its weights are all
    0.02, so the output is 1/1000 everywhere: this checks every opset's graph loads and runs, not
    its numbers (the seeded-weights test below does)."""
    folder = shared / "onnx"
    expected = numpy_helper.to_array(onnx.load_tensor(str(folder / "light" / "light_bvlc_alexnet_output_0.pb")))
    tolerance = json.loads((folder / "real" / "test_bvlc_alexnet" / "data.json").read_text())
    moved = convert_opset(light, target)
    assert model_opset(moved) == target
    assert_documented_ir(moved, target)
    (got,) = run_model(moved, {"data_0": light_input(1)}).values()
    np.testing.assert_allclose(got, expected, rtol=tolerance["rtol"], atol=tolerance["atol"])


# Steps up to the newest opset and back down to 7 pass every adapter AlexNet's operators have; the
# stops in between are where one of them (Dropout, MaxPool, Gemm, Softmax, LRN) changed.
LIGHT_TARGETS = sorted({7, 10, 12, 13, latest_opset()})


@pytest.fixture(scope="module")
def light_source(light_random: Path) -> tuple[onnx.ModelProto, np.ndarray, np.ndarray]:
    """The seeded-weights light AlexNet, an input and its output on onnxruntime."""
    model = onnx.load(str(light_random))
    x = light_input(5)
    (out,) = run_onnx(model, {"data_0": x}).values()
    return model, x, out


@pytest.mark.parametrize("target", LIGHT_TARGETS)
def test_light_zoo_alexnet_up_and_back_down_to_7(light_source, target: int) -> None:
    """Seeded random weights (conftest.randomize_light_weights) in the published graph: the model
    moved to ``target`` and back to 7 computes what the original computes on onnxruntime."""
    source, x, before = light_source
    moved = convert_opset(source, target)
    back = convert_opset(moved, 7)
    assert model_opset(moved) == target and model_opset(back) == 7
    assert_documented_ir(moved, target)
    assert back.ir_version == 3
    for model in (moved, back):
        (after,) = run_onnx(model, {"data_0": x}).values()
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
        assert_documented_ir(moved, target)
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
    mode = numpy_helper.from_array(np.array(True), "mode")
    ratio = numpy_helper.from_array(np.array(0.3, np.float32), "ratio")
    model = _single("Dropout", 13, [("x", [1, 4]), ("ratio", []), ("mode", [])], [("y", [1, 4])],
                    initializers=[ratio, mode])
    model.graph.input[-1].type.tensor_type.elem_type = 9
    del model.graph.input[1:]
    with pytest.raises(OpsetError, match=r"node 'my_dropout' \(Dropout\) cannot go from opset 12 to 11: training_mode"):
        convert_opset(model, 11)


def test_opset_outside_the_range_is_refused(light: onnx.ModelProto) -> None:
    with pytest.raises(OpsetError, match="outside the supported range"):
        convert_opset(light, latest_opset() + 1)
    with pytest.raises(OpsetError, match="outside the supported range"):
        convert_opset(light, 2)
