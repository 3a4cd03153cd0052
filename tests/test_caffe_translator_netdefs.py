"""NetDefs written by the REAL historical ``caffe2.python.caffe_translator`` (the tool that made the
Caffe2 model zoo's pairs, hence the ONNX zoo's AlexNet) convert through ``zoo-convert`` and agree
with the Caffe model: with OpenCV's Caffe importer, with zooforge's own translation, and with real
Caffe2 running the translator's pair. Such pairs fill the input blob with a ``ConstantFill``
placeholder, leave operator names empty, give LRN and Dropout second outputs and write defaults."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from zooforge.converters.api import ConvertOptions, convert_caffe_net
from zooforge.converters.builtin import WeightScale, synthetic_weights
from zooforge.converters.caffe.loader import load_caffe, parse_prototxt
from zooforge.converters.caffe.weights import write_caffemodel
from zooforge.converters.caffe2.executor import run_net
from zooforge.converters.caffe2.netdef import load_caffe2, read_netdef
from zooforge.converters.cli import main

from conftest import run_onnx_file

ALEXNET = "caffe/bvlc/v2_input_layer/models/bvlc_alexnet/deploy.prototxt"
LENET = "caffe/trained/lenet_mnist_v2"
RANGES = {1: (0.0, 1.0), 3: (-128.0, 128.0)}  # MNIST x/256; BGR 0-255 minus the mean (as test_parity)


def _close(ours: np.ndarray, theirs: np.ndarray, what: str = "") -> float:
    error = float(np.max(np.abs(ours.astype(np.float64) - theirs)))
    assert error <= 1e-5 * max(1.0, float(np.max(np.abs(theirs)))), f"{what}: max abs error {error:.3g}"
    return error


def _check(real_caffe2, prototxt: Path, caffemodel: Path, shape: tuple[int, ...], tmp_path: Path,
           cli_shape: list[str], pair: tuple[Path, Path] | None = None) -> dict[str, float]:
    predict, init = pair or real_caffe2.translate(prototxt, caffemodel, tmp_path / "c2")
    raw = read_netdef(predict)
    assert not any(op.name for op in raw.op)  # the historical conventions are what is read here
    fills = [op.type for op in read_netdef(init).op]
    assert fills[-1] == "ConstantFill"
    low, high = RANGES[shape[1]]
    x = np.random.default_rng(3).uniform(low, high, shape).astype(np.float32)
    out = tmp_path / "model.onnx"
    result = CliRunner().invoke(main, [str(predict), "--init-net", str(init), *cli_shape, "--to-opset", "12",
                                       "-o", str(out)])
    assert result.exit_code == 0, result.output
    (onnx_out,) = run_onnx_file(out, {"data_0": x})

    net = load_caffe(prototxt, caffemodel, shape)
    ours = run_net(convert_caffe_net(net, ConvertOptions()).caffe2, {"data": x})
    (reference,) = ours.values()
    import cv2

    cv_net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    cv_net.setInput(x)
    theirs = load_caffe2(predict, init, input_shapes=shape)
    executor = run_net(theirs, {"data": x})[raw.external_output[0]]
    real = real_caffe2.run_files(predict, init, {"data": x})[raw.external_output[0]]
    pairs = {
        "zoo-convert (ORT) vs Caffe model (executor)": (onnx_out, reference),
        "OpenCV vs Caffe model (executor)": (cv_net.forward(), reference),
        "executor on translator pair vs real Caffe2": (executor, real),
        "real Caffe2 on translator pair vs Caffe model": (real, reference),
    }
    return {what: _close(a, b, what) for what, (a, b) in pairs.items()}


def test_lenet_translator_pair_with_input_shape(real_caffe2, shared: Path, tmp_path: Path) -> None:
    folder = shared / LENET
    errors = _check(real_caffe2, folder / "lenet.prototxt", folder / "lenet_iter_10000.caffemodel",
                    (1, 1, 28, 28), tmp_path, ["--input-shape", "1,1,28,28"])
    print("\n[caffe_translator] lenet", {k: f"{v:.1e}" for k, v in errors.items()})


@pytest.fixture(scope="module")
def alexnet(shared: Path, tmp_path_factory) -> tuple[Path, Path]:
    """The BVLC AlexNet deploy prototxt and a caffemodel of seeded weights for it."""
    prototxt = shared / ALEXNET
    table = synthetic_weights(parse_prototxt(prototxt), 20240601, WeightScale(input_std=256 / np.sqrt(12.0)))
    caffemodel = tmp_path_factory.mktemp("alexnet") / "bvlc_alexnet.caffemodel"
    write_caffemodel(table, caffemodel)
    return prototxt, caffemodel


@pytest.fixture(scope="module")
def alexnet_pair(alexnet, real_caffe2, tmp_path_factory) -> tuple[Path, Path]:
    """caffe_translator's pair for it (the translator takes about a minute for AlexNet's weights)."""
    return real_caffe2.translate(*alexnet, tmp_path_factory.mktemp("alexnet-c2"))


@pytest.mark.slow  # about 90 s: the historical caffe_translator runs on pure-Python protobuf
def test_alexnet_translator_pair_with_value_info(real_caffe2, alexnet, alexnet_pair, tmp_path: Path) -> None:
    prototxt, caffemodel = alexnet
    value_info = tmp_path / "value_info.json"  # as the Caffe2 model zoo published it
    value_info.write_text(json.dumps({"data": [1, [1, 3, 227, 227]]}))
    errors = _check(real_caffe2, prototxt, caffemodel, (1, 3, 227, 227), tmp_path, ["--value-info", str(value_info)],
                    alexnet_pair)
    print("\n[caffe_translator] alexnet", {k: f"{v:.1e}" for k, v in errors.items()})


def test_translator_pairs_extra_outputs_are_kept_but_not_exported(alexnet_pair) -> None:
    predict, init = alexnet_pair
    model = load_caffe2(predict, init, input_shapes=(1, 3, 227, 227))
    outputs = {op.type: list(op.output) for op in model.predict_net.op if len(op.output) > 1}
    assert outputs["LRN"][1].endswith("_scale") and outputs["Dropout"][1].endswith("_mask")
    assert "data" not in model.weights and model.inputs == ["data"]


@pytest.mark.parametrize("value_info", [None, {"data": [1, [1, 1, 28, 28]]}], ids=["no-shape", "value-info"])
def test_placeholder_needs_a_shape_or_becomes_the_input(real_caffe2, shared: Path, tmp_path: Path,
                                                         value_info) -> None:
    folder = shared / LENET
    predict, init = real_caffe2.translate(folder / "lenet.prototxt", folder / "lenet_iter_10000.caffemodel",
                                          tmp_path / "c2")
    args = [str(predict), "--init-net", str(init), "-o", str(tmp_path / "m.onnx")]
    if value_info:
        (tmp_path / "vi.json").write_text(json.dumps(value_info))
        args += ["--value-info", str(tmp_path / "vi.json")]
    result = CliRunner().invoke(main, args)
    if value_info:
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code == 2
        assert "no shape for input(s) ['data']" in result.output
        assert not (tmp_path / "m.onnx").exists()
