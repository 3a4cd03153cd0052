"""``--compat zoo`` reproduces the ONNX model zoo's published AlexNet graph node by node, says
where it departs from Caffe, and stays numerically equal to its own (rewritten) NetDef."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import helper, numpy_helper

from zooforge.converters.api import ConvertOptions, convert_builtin, convert_caffe
from zooforge.converters.builtin import load_builtin
from zooforge.converters.caffe.weights import write_caffemodel
from zooforge.converters.caffe2.compat import zoo_compat
from zooforge.converters.caffe2.executor import run_net
from zooforge.converters.cli import main
from zooforge.versioning.runtime import run_with

ZOO = ConvertOptions(opset=9, input_shapes=(1, 3, 224, 224), compat="zoo")


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


@pytest.fixture(scope="module")
def published(shared: Path) -> onnx.ModelProto:
    return onnx.load(str(shared / "onnx" / "light" / "light_bvlc_alexnet.onnx"))


def _assert_same_structure(ours: onnx.ModelProto, published: onnx.ModelProto) -> None:
    # The light model replaced each weight by a ConstantOfShape node; the rest is the zoo's graph.
    theirs = [n for n in published.graph.node if n.op_type != "ConstantOfShape"]
    assert [n.op_type for n in ours.graph.node] == [n.op_type for n in theirs]
    for mine, reference in zip(ours.graph.node, theirs):
        assert _attrs(mine) == _attrs(reference), f"{mine.name} ({mine.op_type})"
        assert len(mine.input) == len(reference.input) and len(mine.output) == len(reference.output), mine.name

    def io(values):
        return [(v.name, [d.dim_value for d in v.type.tensor_type.shape.dim]) for v in values]

    assert io(ours.graph.input)[:1] == io(published.graph.input)[:1] == [("data_0", [1, 3, 224, 224])]
    assert io(ours.graph.output) == io(published.graph.output) == [("prob_1", [1, 1000])]
    shape_name = next(n.input[1] for n in ours.graph.node if n.op_type == "Reshape")
    shape = next(t for t in ours.graph.initializer if t.name == shape_name)
    assert shape.data_type == onnx.TensorProto.INT64
    assert numpy_helper.to_array(shape).tolist() == [1, 9216]
    assert ours.opset_import[0].version == 9


def test_builtin_alexnet_matches_the_published_graph(published: onnx.ModelProto) -> None:
    result = convert_builtin("alexnet", ZOO)
    _assert_same_structure(result.onnx_model, published)
    pools = {n.name: _attrs(n)["pads"] for n in result.model.skeleton.graph.node if n.op_type == "MaxPool"}
    assert pools == {"pool1": [0, 0, 0, 0], "pool2": [0, 0, 0, 0], "pool5": [0, 0, 1, 1]}
    assert any("departs from Caffe" in note and "pool1: 26x26 (Caffe: 27x27)" in note for note in result.notes)


def test_real_prototxt_and_weights_file_match_the_published_graph(shared: Path, tmp_path: Path,
                                                                  published: onnx.ModelProto) -> None:
    weights = tmp_path / "bvlc_alexnet.caffemodel"
    write_caffemodel(load_builtin("alexnet"), weights)
    prototxt = shared / "caffe" / "bvlc" / "v2_input_layer" / "models" / "bvlc_alexnet" / "deploy.prototxt"
    _assert_same_structure(convert_caffe(prototxt, weights, ZOO).onnx_model, published)


def test_compat_graph_computes_its_rewritten_netdef() -> None:
    result = convert_builtin("alexnet", ZOO)
    rewritten, deviations = zoo_compat(convert_builtin("alexnet", ConvertOptions(input_shapes=(1, 3, 224, 224))).caffe2)
    assert [str(d) for d in deviations] == ["pool1: 26x26 (Caffe: 27x27)", "pool2: 12x12 (Caffe: 13x13)"]
    x = np.random.default_rng(3).uniform(-128, 128, (1, 3, 224, 224)).astype(np.float32)
    (expected,) = run_net(rewritten, {"data": x}).values()
    for runtime in ("onnxruntime", "reference"):
        (out,) = run_with(runtime, result.onnx_model, {"data_0": x}).values()
        assert float(np.abs(out - expected).max()) <= 1e-5, runtime


def test_at_227_compat_departs_nowhere() -> None:
    result = convert_builtin("alexnet", ConvertOptions(opset=9, compat="zoo", input_shapes=(1, 3, 227, 227)))
    assert any("not at this input size" in note for note in result.notes)


def test_cli_warns_that_compat_deviates(tmp_path: Path) -> None:
    out = tmp_path / "zoo.onnx"
    run = CliRunner().invoke(main, ["--builtin", "alexnet", "--compat", "zoo", "--to-opset", "9",
                                    "--input-shape", "1,3,224,224", "-o", str(out)])
    assert run.exit_code == 0, run.output
    assert "warning: --compat zoo" in run.output and "pool1: 26x26 (Caffe: 27x27)" in run.output
    help_text = CliRunner().invoke(main, ["--help"]).output
    assert "DEVIATES" in help_text


def test_compat_netdef_means_the_same_on_real_caffe2(real_caffe2, tmp_path: Path) -> None:
    """The rewritten NetDef (pools rounding down, pool5 with explicit pads [0, 0, 1, 1]) is what a
    release's caffe2/ folder holds with --compat zoo: real Caffe2 and the historical frontend read
    it as the executor does."""
    from conftest import run_onnx_file
    from zooforge.converters.caffe2.netdef import write_caffe2

    rewritten, _ = zoo_compat(convert_builtin("alexnet", ConvertOptions(input_shapes=(1, 3, 224, 224))).caffe2)
    x = np.random.default_rng(3).uniform(-128, 128, (1, 3, 224, 224)).astype(np.float32)
    (expected,) = run_net(rewritten, {"data": x}).values()
    paths = write_caffe2(rewritten, tmp_path)
    (real,) = real_caffe2.run_files(paths["predict_net"], paths["init_net"], {"data": x}).values()
    assert float(np.abs(real - expected).max()) <= 1e-5
    onnx_file = real_caffe2.frontend(paths["predict_net"], paths["init_net"], {"data": (1, [1, 3, 224, 224])},
                                     tmp_path / "frontend.onnx")
    (frontend,) = run_onnx_file(onnx_file, {"data": x})
    assert float(np.abs(frontend - expected).max()) <= 1e-5
