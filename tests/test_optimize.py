"""``--optimize``: onnxoptimizer's passes on zooforge's models (converters/onnx/optimize.py).

Expected values come from elsewhere: OpenCV's Caffe importer on the Caffe model, onnxruntime on
the unoptimized model, and node counts counted by hand from the nets' layers.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxoptimizer
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from zooforge.artifacts.validation.parity import validate_path
from zooforge.converters.api import ConvertOptions, convert_caffe
from zooforge.converters.builtin import synthetic_weights
from zooforge.converters.caffe.loader import parse_prototxt
from zooforge.converters.caffe.weights import write_caffemodel
from zooforge.converters.cli import main as zoo_convert
from zooforge.converters.lineage import read_lineage
from zooforge.converters.onnx import optimize

from shared_paths import SHARED, SHARED_MISSING

RESNET = SHARED / "caffe/trained/resnet20_cifar10"
LENET = SHARED / "caffe/trained/lenet_mnist_v2"

# Caffe's BatchNorm + Scale pairs, in place as Caffe nets write them: one Scale with a bias, one
# without, and a Conv without a bias (fuse_bn_into_conv must give it one).
BN_SCALE_NET = """name: "bnscale"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 12 dim: 12 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer { name: "scale1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "conv2" type: "Convolution" bottom: "conv1" top: "conv2"
        convolution_param { num_output: 5 kernel_size: 3 bias_term: false } }
layer { name: "bn2" type: "BatchNorm" bottom: "conv2" top: "conv2" }
layer { name: "scale2" type: "Scale" bottom: "conv2" top: "conv2" scale_param { bias_term: false } }
layer { name: "fc" type: "InnerProduct" bottom: "conv2" top: "fc" inner_product_param { num_output: 3 } }
"""
# By hand: Conv, BatchNormalization, Mul, Add (scale1), Relu, Conv, BatchNormalization, Mul (scale2),
# Flatten, Gemm = 10 nodes; both BatchNormalizations and the three Scale nodes fold into the Convs.
BN_SCALE_NODES = Counter({"Conv": 2, "BatchNormalization": 2, "Mul": 2, "Add": 1, "Relu": 1, "Flatten": 1, "Gemm": 1})
BN_SCALE_OPTIMIZED = Counter({"Conv": 2, "Relu": 1, "Flatten": 1, "Gemm": 1})


@pytest.fixture(scope="module")
def bn_scale_net(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("bnscale")
    prototxt = folder / "net.prototxt"
    prototxt.write_text(BN_SCALE_NET)
    table = synthetic_weights(parse_prototxt(prototxt), 7)
    rng = np.random.default_rng(11)
    for name, channels in (("bn1", 4), ("bn2", 5)):  # running sums and the factor they are divided by
        mean, var = rng.uniform(-0.5, 0.5, channels), rng.uniform(0.2, 3.0, channels)
        table[name] = [(mean * 0.8).astype(np.float32), (var * 0.8).astype(np.float32), np.array([0.8], np.float32)]
    for name, channels in (("scale1", 4), ("scale2", 5)):
        table[name] = [rng.uniform(0.5, 2.0, channels).astype(np.float32),
                       *([rng.uniform(-1, 1, channels).astype(np.float32)] if name == "scale1" else [])]
    weights = folder / "net.caffemodel"
    write_caffemodel(table, weights)
    return prototxt, weights


def _ort(model: onnx.ModelProto | bytes, feed: np.ndarray) -> np.ndarray:
    data = model if isinstance(model, bytes) else model.SerializeToString()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: feed})[0]


def _opencv(prototxt: Path, weights: Path, feed: np.ndarray) -> np.ndarray:
    cv2 = pytest.importorskip("cv2")
    if not hasattr(cv2.dnn, "readNetFromCaffe"):
        pytest.skip(f"OpenCV {cv2.__version__} has no Caffe importer (removed in 5.0)")
    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(weights))
    net.setInput(feed)
    return net.forward("fc")


def _ops(model: onnx.ModelProto) -> Counter:
    return Counter(node.op_type for node in model.graph.node)


@pytest.mark.parametrize("opset", [7, 9, 12])
def test_bn_scale_net_folds_into_conv_and_matches_opencv(bn_scale_net, opset: int) -> None:
    prototxt, weights = bn_scale_net
    plain = convert_caffe(prototxt, weights, ConvertOptions(opset=opset)).onnx_model
    optimized = convert_caffe(prototxt, weights, ConvertOptions(opset=opset, optimize=True)).onnx_model
    assert _ops(plain) == BN_SCALE_NODES
    assert _ops(optimized) == BN_SCALE_OPTIMIZED
    assert (optimized.ir_version, optimized.opset_import[0].version) == (plain.ir_version, opset)
    if optimized.ir_version < 4:  # IR 3: every initializer is also a graph input
        assert {t.name for t in optimized.graph.initializer} <= {i.name for i in optimized.graph.input}
    feed = np.random.default_rng(3).uniform(-1, 1, (1, 3, 12, 12)).astype(np.float32)
    expected = _opencv(prototxt, weights, feed)
    for model in (plain, optimized):
        got = _ort(model, feed)
        assert np.max(np.abs(got - expected)) <= 1e-5 * max(1.0, float(np.max(np.abs(expected))))


@pytest.mark.skipif(not RESNET.is_dir(), reason=SHARED_MISSING)
def test_resnet20_loses_every_batchnorm_and_scale_and_keeps_its_outputs() -> None:
    prototxt, weights = RESNET / "test_ResNet_20.prototxt", RESNET / "cifar10_ResNet_20_iter_53500.caffemodel"
    plain = convert_caffe(prototxt, weights, ConvertOptions(opset=12, input_shapes=(1, 3, 32, 32))).onnx_model
    optimized = convert_caffe(prototxt, weights, ConvertOptions(opset=12, input_shapes=(1, 3, 32, 32),
                                                                optimize=True)).onnx_model
    # 21 convolutions, each followed by BatchNorm + Scale (a Mul and an Add): 63 nodes go
    layers = parse_prototxt(prototxt).layer
    convolutions = sum(layer.type == "Convolution" for layer in layers)
    assert convolutions == sum(layer.type == "BatchNorm" for layer in layers) == 21
    assert len(plain.graph.node) - len(optimized.graph.node) == 3 * convolutions
    assert not {"BatchNormalization", "Mul", "Add"} & set(_ops(optimized))
    feed = np.random.default_rng(5).uniform(-128, 128, (4, 3, 32, 32)).astype(np.float32)
    for sample in feed:
        want, got = _ort(plain, sample[None]), _ort(optimized, sample[None])
        assert np.max(np.abs(got - want)) <= 1e-5 * np.max(np.abs(want))


def test_lineage_records_onnxoptimizer_and_its_passes(bn_scale_net, tmp_path: Path) -> None:
    prototxt, weights = bn_scale_net
    out, plain = tmp_path / "o.onnx", tmp_path / "p.onnx"
    result = CliRunner().invoke(zoo_convert, [str(prototxt), str(weights), "--optimize", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "10 -> 5 nodes" in result.output
    assert CliRunner().invoke(zoo_convert, [str(prototxt), str(weights), "-o", str(plain)]).exit_code == 0
    settings = read_lineage(out).settings
    recorded = settings["optimize"]
    assert recorded["onnxoptimizer"] == onnxoptimizer.__version__
    assert "fuse_bn_into_conv" in recorded["passes"] and "eliminate_identity" in recorded["passes"]
    assert set(recorded["passes"]) <= set(onnxoptimizer.get_available_passes())
    assert "optimize" not in read_lineage(plain).settings
    assert {k: v for k, v in settings.items() if k != "optimize"} == read_lineage(plain).settings


def _refused(args: list[str], output: Path) -> str:
    result = CliRunner().invoke(zoo_convert, [*args, "-o", str(output)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output
    assert not output.exists()
    return lines[0]


@pytest.mark.parametrize("opset", [3, 6])
def test_old_opsets_are_refused_in_one_sentence(bn_scale_net, tmp_path: Path, opset: int) -> None:
    prototxt, weights = bn_scale_net
    line = _refused([str(prototxt), str(weights), "--optimize", "--to-opset", str(opset)], tmp_path / "o.onnx")
    assert "needs opset 7 or newer" in line and f"is opset {opset}" in line


def test_a_failing_pass_is_one_sentence(bn_scale_net, tmp_path: Path, monkeypatch) -> None:
    def broken(data: bytes, passes: list[str]) -> bytes:
        raise RuntimeError("planted failure")

    monkeypatch.setattr(onnxoptimizer.onnx_opt_cpp2py_export, "optimize", broken)
    prototxt, weights = bn_scale_net
    line = _refused([str(prototxt), str(weights), "--optimize"], tmp_path / "o.onnx")
    assert "onnxoptimizer failed" in line and "planted failure" in line and "o.onnx was not written" in line


def test_a_wrong_fold_fails_parity_and_writes_nothing(bn_scale_net, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(optimize._FOLDABLE, "Sqrt", lambda node, a: np.sqrt(a) * np.float32(1.01))
    prototxt, weights = bn_scale_net
    line = _refused([str(prototxt), str(weights), "--optimize"], tmp_path / "o.onnx")
    assert "fails parity with the unoptimized model" in line and "fc_1" in line and "o.onnx was not written" in line


@pytest.mark.skipif(not LENET.is_dir(), reason=SHARED_MISSING)
def test_zoo_package_optimize_on_lenet_validates(tmp_path: Path) -> None:
    out = tmp_path / "release"
    command = [sys.executable, "-m", "zooforge.artifacts.release.package_cli",
               str(LENET / "lenet.prototxt"), str(LENET / "lenet_iter_10000.caffemodel"), "--name", "lenet",
               "--opsets", "6,9,12", "--quantize", "none", "--optimize", "--out", str(out), "-q"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "lenet-6 unoptimized" in run.stderr and "lenet-9 unoptimized" not in run.stderr
    report = validate_path(out)
    assert report.passed, report.failures()
    assert "optimize" in read_lineage(out / "lenet-12.onnx").settings
    assert "optimize" in read_lineage(out / "lenet-9.onnx").settings
    assert "optimize" not in read_lineage(out / "lenet-6.onnx").settings
    assert "Built with --optimize" in (out / "README.md").read_text()
