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

from zooforge.converters.api import ConvertOptions, convert_caffe
from zooforge.converters.caffe2.executor import run_net
from zooforge.converters.cli import main

from conftest import shared_work_scope

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


# -- which ONNX tensor holds which Caffe blob ---------------------------------------------------
# Hand-written from the prototxts: each tensor named after a Caffe blob, and the operator that
# must produce it. A Caffe blob written in place (ip1 by InnerProduct, then by the in-place ReLU)
# holds its LAST value after the forward pass, so with --names caffe plain `ip1` is the ReLU's
# output; the zoo style numbers every write (`ip1_1` Gemm, `ip1_2` Relu) as the ONNX zoo did.
LENET_CAFFE_NAMES = {"conv1": "Conv", "pool1": "MaxPool", "conv2": "Conv", "pool2": "MaxPool",
                     "ip1_1": "Gemm", "ip1": "Relu", "ip2": "Gemm", "prob": "Softmax"}
LENET_ZOO_NAMES = {"conv1_1": "Conv", "pool1_1": "MaxPool", "conv2_1": "Conv", "pool2_1": "MaxPool",
                   "ip1_1": "Gemm", "ip1_2": "Relu", "ip2_1": "Gemm", "prob_1": "Softmax"}
# Caffe blob -> the LeNet layer that writes it last (what OpenCV's forward(layer) returns)
LENET_LAST_WRITER = {"conv1": "conv1", "pool1": "pool1", "conv2": "conv2", "pool2": "pool2",
                     "ip1": "relu1", "ip2": "ip2", "prob": "prob"}
# AlexNet: conv1-5 get an in-place ReLU; fc6 and fc7 an in-place ReLU and an in-place Dropout.
ALEXNET_CAFFE_NAMES = {
    "conv1_1": "Conv", "conv1": "Relu", "norm1": "LRN", "pool1": "MaxPool",
    "conv2_1": "Conv", "conv2": "Relu", "norm2": "LRN", "pool2": "MaxPool",
    "conv3_1": "Conv", "conv3": "Relu", "conv4_1": "Conv", "conv4": "Relu",
    "conv5_1": "Conv", "conv5": "Relu", "pool5": "MaxPool",
    "fc6_1": "Gemm", "fc6_2": "Relu", "fc6": "Dropout", "fc7_1": "Gemm", "fc7_2": "Relu", "fc7": "Dropout",
    "fc8": "Gemm", "prob": "Softmax",
}
ALEXNET_ZOO_NAMES = {
    "conv1_1": "Conv", "conv1_2": "Relu", "norm1_1": "LRN", "pool1_1": "MaxPool",
    "conv2_1": "Conv", "conv2_2": "Relu", "norm2_1": "LRN", "pool2_1": "MaxPool",
    "conv3_1": "Conv", "conv3_2": "Relu", "conv4_1": "Conv", "conv4_2": "Relu",
    "conv5_1": "Conv", "conv5_2": "Relu", "pool5_1": "MaxPool",
    "fc6_1": "Gemm", "fc6_2": "Relu", "fc6_3": "Dropout", "fc7_1": "Gemm", "fc7_2": "Relu", "fc7_3": "Dropout",
    "fc8_1": "Gemm", "prob_1": "Softmax",
}
ALEXNET_RELU_BLOBS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7")


def producers(model: onnx.ModelProto) -> dict[str, str]:
    """Tensor name -> op_type of the node that writes it."""
    return {name: node.op_type for node in model.graph.node for name in node.output}


def with_outputs(model: onnx.ModelProto, names) -> onnx.ModelProto:
    """A copy of ``model`` that also outputs the intermediate tensors ``names``."""
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    exposed.graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names)
    return exposed


@pytest.mark.parametrize("style, expected", [("caffe", LENET_CAFFE_NAMES), ("zoo", LENET_ZOO_NAMES)])
def test_lenet_tensor_names_per_blob(shared, tmp_path, style, expected):
    """zoo-convert --names STYLE: each blob's tensors come from the operators the prototxt says."""
    prototxt, weights = model_files(shared, "lenet")
    output = tmp_path / f"lenet_{style}.onnx"
    cli(prototxt, weights, "-o", output, "--names", style)
    written = producers(onnx.load(output))
    assert {name: written.get(name) for name in expected} == expected


def test_lenet_caffe_named_tensors_hold_caffes_final_blob_values(shared, onnx_run):
    """With --names caffe each tensor named after a blob equals that blob as OpenCV's independent
    Caffe computes it after the forward pass (forward() of the blob's last writer): `ip1` is the
    ReLU's output, no value negative, where the InnerProduct's own output has negative values."""
    cv2 = pytest.importorskip("cv2", reason="OpenCV (opencv-python-headless<5) is not installed")
    prototxt, weights = model_files(shared, "lenet")
    model = convert_caffe(prototxt, weights, ConvertOptions(names="caffe")).onnx_model
    x = np.random.default_rng(20240607).uniform(0.0, 1.0, (1, 1, 28, 28)).astype(np.float32)
    got = onnx_run(with_outputs(model, LENET_LAST_WRITER), {"data": x})
    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(weights))
    net.setInput(x)
    layers = [*LENET_LAST_WRITER.values(), "ip1"]
    *caffe, inner_product = net.forward(layers)
    assert inner_product.min() < 0.0 and got["ip1"].min() >= 0.0
    for blob, value in zip(LENET_LAST_WRITER, caffe):
        np.testing.assert_allclose(got[blob].reshape(value.shape), value, rtol=1e-4, atol=1e-4, err_msg=blob)


@pytest.fixture(scope=shared_work_scope)
def alexnet_by_style():
    from zooforge.converters.api import convert_builtin

    return {style: convert_builtin("alexnet", ConvertOptions(names=style)).onnx_model for style in ("caffe", "zoo")}


@pytest.mark.parametrize("style, expected", [("caffe", ALEXNET_CAFFE_NAMES), ("zoo", ALEXNET_ZOO_NAMES)])
def test_alexnet_tensor_names_per_blob(alexnet_by_style, style, expected):
    """Built-in AlexNet: each blob's tensors come from the operators bvlc_alexnet's prototxt says;
    zoo-style inputs, weights and output are named as in the ONNX zoo's published graph."""
    model = alexnet_by_style[style]
    written = producers(model)
    assert {name: written.get(name) for name in expected} == expected
    if style == "zoo":
        weights = {t.name for t in model.graph.initializer}
        assert [i.name for i in model.graph.input][:1] == ["data_0"] and "prob_1" in written
        assert {"conv1_w_0", "conv1_b_0", "fc6_w_0", "fc8_b_0"} <= weights


def test_alexnet_caffe_named_relu_blobs_are_final_values(alexnet_by_style, onnx_run):
    """--names caffe: the tensors named conv1..conv5, fc6, fc7 are Caffe's final blob values,
    after the in-place ReLU (and Dropout, identity at test time): never negative, and each equals
    max(<blob>_1, 0) where <blob>_1, the first write (Conv or Gemm), has negative values."""
    model = alexnet_by_style["caffe"]
    x = np.random.default_rng(11).uniform(-128, 128, (1, 3, 224, 224)).astype(np.float32)  # the built-in's input
    final = onnx_run(with_outputs(model, ALEXNET_RELU_BLOBS), {"data": x})
    for blob in ALEXNET_RELU_BLOBS:
        assert final[blob].min() >= 0.0 and final[blob].max() > 0.0, blob
    first = onnx_run(with_outputs(model, [f"{blob}_1" for blob in ALEXNET_RELU_BLOBS]), {"data": x})
    for blob in ALEXNET_RELU_BLOBS:
        assert first[f"{blob}_1"].min() < 0.0, f"{blob}_1"
        np.testing.assert_array_equal(final[blob], np.maximum(first[f"{blob}_1"], 0.0), err_msg=blob)
