"""Caffe -> ONNX directly and Caffe -> NetDef files -> ONNX must give the same model; naming styles;
dynamic batch against the NumPy executor."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from converters.api import ConvertOptions, convert_caffe
from converters.caffe2.executor import run_net
from converters.cli import main

# name -> (folder under caffe/trained, prototxt, weights, value_info expected, zoo output names).
# Shapes are those the deploy files declare (batch set to 1); names are Caffe blob + "_<writes>".
MODELS = {
    "lenet": ("lenet_mnist_v2", "lenet.prototxt", "lenet_iter_10000.caffemodel",
              {"data": [1, [1, 1, 28, 28]]}, ["prob_1"]),
    "mtcnn_det3": ("mtcnn", "det3.prototxt", "det3.caffemodel",
                   {"data": [1, [1, 3, 48, 48]]}, ["conv6-2_1", "conv6-3_1", "prob1_1"]),
    "cifar10_quick_v1": ("v1_binaries", "cifar10_quick.prototxt", "cifar10_quick_iter_5000.caffemodel",
                         {"data": [1, [1, 3, 32, 32]]}, ["prob_1"]),
}


def cli(*args: object) -> None:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, f"zoo-convert {args} failed: {result.output}"


def model_files(shared: Path, name: str) -> tuple[Path, Path]:
    folder, prototxt, weights, *_ = MODELS[name]
    base = shared / "caffe" / "trained" / folder
    return base / prototxt, base / weights


def graph_names(model: onnx.ModelProto) -> tuple[list[str], list[str], list[str]]:
    initializers = [t.name for t in model.graph.initializer]
    inputs = [i.name for i in model.graph.input if i.name not in initializers]
    return inputs, [o.name for o in model.graph.output], initializers


@pytest.mark.parametrize("name", sorted(MODELS))
def test_netdef_roundtrip_is_identical(name, shared, tmp_path, onnx_run):
    prototxt, weights = model_files(shared, name)
    *_, value_info, output_names = MODELS[name]
    c2 = tmp_path / "c2"
    direct, roundtrip = tmp_path / "model.onnx", tmp_path / "model_rt.onnx"
    cli(prototxt, weights, "-o", direct, "--emit-caffe2", c2)
    assert sorted(p.name for p in c2.iterdir()) == ["init_net.pb", "predict_net.pb", "value_info.json"]
    assert json.loads((c2 / "value_info.json").read_text()) == value_info
    cli(c2 / "predict_net.pb", "--init-net", c2 / "init_net.pb", "--value-info", c2 / "value_info.json",
        "-o", roundtrip)

    first, second = onnx.load(direct), onnx.load(roundtrip)
    assert graph_names(first) == graph_names(second)
    inputs, outputs, _ = graph_names(first)
    assert inputs == ["data_0"] and outputs == output_names
    weights_first = {t.name: numpy_helper.to_array(t) for t in first.graph.initializer}
    weights_second = {t.name: numpy_helper.to_array(t) for t in second.graph.initializer}
    assert weights_first.keys() == weights_second.keys()
    for key, array in weights_first.items():
        assert np.array_equal(array, weights_second[key]), f"initializer {key} changed on the round trip"

    shape = value_info["data"][1]
    x = np.random.default_rng(20240607).standard_normal(shape).astype(np.float32)
    got_first = onnx_run(direct, {"data_0": x})
    got_second = onnx_run(roundtrip, {"data_0": x})
    assert list(got_first) == list(got_second) == output_names
    for key in output_names:
        diff = float(np.max(np.abs(got_first[key] - got_second[key])))
        assert diff <= 1e-6, f"{name}: output {key} differs by {diff:.3g} after the NetDef round trip"
        assert np.array_equal(got_first[key], got_second[key]), f"{key} is not bit-identical"


def test_caffe_names(shared, tmp_path):
    prototxt, weights = model_files(shared, "lenet")
    output = tmp_path / "lenet_caffe_names.onnx"
    cli(prototxt, weights, "-o", output, "--names", "caffe")
    inputs, outputs, initializers = graph_names(onnx.load(output))
    assert inputs == ["data"] and outputs == ["prob"]
    assert "conv1_w" in initializers and "conv1_w_0" not in initializers


def test_zoo_names_by_default(shared, tmp_path):
    prototxt, weights = model_files(shared, "lenet")
    output = tmp_path / "lenet.onnx"
    cli(prototxt, weights, "-o", output)
    inputs, outputs, initializers = graph_names(onnx.load(output))
    assert inputs == ["data_0"] and outputs == ["prob_1"]
    for weight in ("conv1_w_0", "conv1_b_0", "conv2_w_0", "ip1_w_0", "ip2_b_0"):
        assert weight in initializers, f"{weight} missing from {initializers}"


def test_dynamic_batch_matches_executor(shared, onnx_run):
    prototxt, weights = model_files(shared, "lenet")
    result = convert_caffe(prototxt, weights, ConvertOptions(opset=12, dynamic_batch=True))
    model = result.onnx_model
    (graph_input,) = [i for i in model.graph.input if i.name == "data_0"]
    dims = graph_input.type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and [d.dim_value for d in dims[1:]] == [1, 28, 28]
    x = np.random.default_rng(7).uniform(0.0, 1.0, (3, 1, 28, 28)).astype(np.float32)
    got = onnx_run(model, {"data_0": x})["prob_1"]
    expected = run_net(result.caffe2, {"data": x})["prob"]
    assert got.shape == expected.shape == (3, 10)
    diff = float(np.max(np.abs(got - expected)))
    assert diff <= 1e-5, f"ONNX (batch 3) vs executor: max abs diff {diff:.3g}"
    # Three different images must not collapse into one answer (the batch really is three).
    assert not np.allclose(got[0], got[1])
