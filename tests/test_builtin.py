"""The built-in AlexNet: its definition, its synthetic weights, and agreement with OpenCV."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from zooforge.converters.builtin import (
    BUILTIN_MODELS,
    UnknownBuiltinModelError,
    load_builtin,
    synthetic_weights,
)
from zooforge.converters.caffe.loader import build_net, parse_prototxt
from zooforge.converters.caffe.weights import read_weights, write_caffemodel
from zooforge.converters.caffe2.executor import run_net
from zooforge.converters.caffe2.translate import translate
from zooforge.converters.errors import ZooforgeError
from shared_paths import SHARED

BVLC_ALEXNET = SHARED / "caffe/bvlc/v2_input_layer/models/bvlc_alexnet/deploy.prototxt"
ALEXNET = BUILTIN_MODELS["alexnet"]

CAFFE_SHAPES = {
    "conv1": [(96, 3, 11, 11), (96,)],
    "conv2": [(256, 48, 5, 5), (256,)],
    "conv3": [(384, 256, 3, 3), (384,)],
    "conv4": [(384, 192, 3, 3), (384,)],
    "conv5": [(256, 192, 3, 3), (256,)],
    "fc6": [(4096, 9216), (4096,)],
    "fc7": [(4096, 4096), (4096,)],
    "fc8": [(1000, 4096), (1000,)],
}


def _digest(table: dict[str, list[np.ndarray]]) -> str:
    sha = hashlib.sha256()
    for name in sorted(table):
        for blob in table[name]:
            sha.update(name.encode())
            sha.update(str(blob.shape).encode())
            sha.update(memoryview(np.ascontiguousarray(blob)).cast("B"))
    return sha.hexdigest()


def _caffe_input(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    """Values in the range of a Caffe-preprocessed image (BGR 0-255 minus the mean)."""
    return np.random.default_rng(seed).uniform(-128, 128, shape).astype(np.float32)


def test_unknown_name_lists_the_available_models() -> None:
    with pytest.raises(UnknownBuiltinModelError, match="available: alexnet") as info:
        load_builtin("vgg99")
    assert isinstance(info.value, ZooforgeError)


@pytest.mark.skipif(not BVLC_ALEXNET.is_file(), reason=f"{BVLC_ALEXNET} (shared material) is absent")
def test_definition_is_bvlc_alexnet_without_training_parameters() -> None:
    ours = parse_prototxt(ALEXNET.prototxt)
    bvlc = parse_prototxt(BVLC_ALEXNET)
    for layer in bvlc.layer:
        del layer.param[:]  # lr_mult / decay_mult: training only
    assert ours == bvlc


def test_weights_are_deterministic_with_caffe_shapes() -> None:
    net_param = parse_prototxt(ALEXNET.prototxt)
    first = synthetic_weights(net_param, ALEXNET.seed, ALEXNET.scale)
    assert {name: [b.shape for b in blobs] for name, blobs in first.items()} == CAFFE_SHAPES
    assert all(b.dtype == np.float32 for blobs in first.values() for b in blobs)
    digest = _digest(first)
    del first
    assert _digest(synthetic_weights(net_param, ALEXNET.seed, ALEXNET.scale)) == digest
    net = load_builtin("alexnet", input_shapes=(1, 3, 224, 224))  # weights ignore the input size
    assert _digest({layer.name: layer.blobs for layer in net.layers if layer.blobs}) == digest


# The scale converters/builtin/synthetic.py documents, computed by hand for AlexNet. Fan-ins from
# CAFFE_SHAPES (in channels per group x kernel area, or inputs of an inner product); the built-in
# scale is input_std = 128 / sqrt(3) (Caffe-range pixels) and logit_std = 4 (converters/builtin/models.py).
INPUT_STD = 128 / np.sqrt(3)
CENTRED = np.sqrt(2 / (1 - 1 / np.pi))  # centred filters after a ReLU: Var(relu(z)) = Var(z) (1 - 1/pi) / 2
FAN_IN = {"conv1": 3 * 11 * 11, "conv2": 48 * 5 * 5, "conv3": 256 * 3 * 3, "conv4": 192 * 3 * 3,
          "conv5": 192 * 3 * 3, "fc6": 256 * 6 * 6, "fc7": 4096, "fc8": 4096}
WEIGHT_STD = {
    "conv1": np.sqrt(2 / FAN_IN["conv1"]),  # reads the net input: He, sqrt(2 / fan_in) = 0.0742
    **{name: CENTRED / np.sqrt(FAN_IN[name]) for name in ("conv2", "conv3", "conv4", "conv5", "fc6", "fc7")},
    # the classifier: its inputs are ReLUs of std-(sqrt(2) * INPUT_STD) pre-activations, whose variance is
    # INPUT_STD**2 * (1 - 1/pi); logits of std 4 need std_w * sqrt(fan_in) * INPUT_STD * sqrt(1 - 1/pi) = 4
    "fc8": 4.0 / (INPUT_STD * np.sqrt(1 - 1 / np.pi)) / np.sqrt(FAN_IN["fc8"]),
}
BIAS_STD = {name: 0.05 * (4.0 if name == "fc8" else np.sqrt(2) * INPUT_STD) for name in FAN_IN}  # 5% of out scale


def test_weights_have_the_documented_scale() -> None:
    """Uniform values of the documented std (hand-computed above): weights within 2% (at least 34848
    values a layer), biases within 15% (96 to 4096 values; 3 sigma of a uniform sample's std at n=96 is
    14%); never beyond a uniform's half-width sqrt(3) * std; every filter after conv1 centred. No values
    are pinned: the docstring promises bit-identical weights per seed, not a particular stream."""
    for name, (w_shape, _) in CAFFE_SHAPES.items():  # the hand fan-ins agree with the hand shapes
        assert int(np.prod(w_shape[1:])) == FAN_IN[name], name
    table = synthetic_weights(parse_prototxt(ALEXNET.prototxt), ALEXNET.seed, ALEXNET.scale)
    for name, (w, b) in table.items():
        w64, b64 = w.astype(np.float64), b.astype(np.float64)
        assert w64.std() == pytest.approx(WEIGHT_STD[name], rel=0.02), name
        assert b64.std() == pytest.approx(BIAS_STD[name], rel=0.15), name
        assert np.abs(b64).max() <= np.sqrt(3) * BIAS_STD[name] * (1 + 1e-6), name
        units = w64.reshape(w.shape[0], -1)
        if name == "conv1":
            assert np.abs(w64).max() <= np.sqrt(3) * WEIGHT_STD[name] * (1 + 1e-6)
        else:  # centred: each output unit's weights sum to zero
            assert np.abs(units.mean(axis=1)).max() <= 1e-4 * WEIGHT_STD[name], name
            # the half-width, plus the unit mean subtracted (its std is std / sqrt(fan_in): 3% at conv2)
            assert np.abs(units).max() <= np.sqrt(3) * WEIGHT_STD[name] * 1.1, name


def test_other_seed_gives_other_weights(tmp_path: Path) -> None:
    prototxt = tmp_path / "mixed.prototxt"
    prototxt.write_text(MIXED_NET)
    net_param = parse_prototxt(prototxt)
    a, b = synthetic_weights(net_param, 1), synthetic_weights(net_param, 2)
    assert all(not np.array_equal(a[name][0], b[name][0]) for name in a)


def test_softmax_is_informative_on_caffe_range_inputs() -> None:
    net = load_builtin("alexnet", input_shapes=(8, 3, 227, 227))
    assert net.synthetic_weights
    blobs = run_net(translate(net), {"data": _caffe_input(0, (8, 3, 227, 227))}, keep_all=True)
    for name in ("conv1", "pool2", "conv5", "fc6", "fc7"):  # neither exploding nor vanishing
        rms = float(np.sqrt(np.mean(blobs[name] ** 2)))
        assert 5 < rms < 500, (name, rms)
    prob = blobs["prob"]
    top = prob.max(axis=1)
    assert np.all((top > 0.005) & (top < 0.95)), top
    assert 0.02 < float(np.median(top)) < 0.6, top
    assert len(set(prob.argmax(axis=1))) >= 6  # different inputs, different classes


@pytest.mark.parametrize("size", [227, 224])
def test_agrees_with_opencv(opencv_alexnet, size: int) -> None:
    shape = (2, 3, size, size)
    x = _caffe_input(size, shape)
    ours = run_net(translate(load_builtin("alexnet", input_shapes=shape)), {"data": x})["prob"]
    opencv_alexnet.setInput(x)
    theirs = opencv_alexnet.forward("prob")
    assert theirs.shape == ours.shape
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)


MIXED_NET = """
name: "mixed"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 12 dim: 12 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 8 kernel_size: 3 pad: 1 } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" }
layer { name: "scale" type: "Scale" bottom: "conv" top: "conv" scale_param { bias_term: true } }
layer { name: "prelu" type: "PReLU" bottom: "conv" top: "conv" }
layer { name: "deconv" type: "Deconvolution" bottom: "conv" top: "deconv"
  convolution_param { num_output: 6 kernel_size: 4 stride: 2 pad: 1 group: 2 } }
layer { name: "prelu2" type: "PReLU" bottom: "deconv" top: "deconv" prelu_param { channel_shared: true } }
layer { name: "pool" type: "Pooling" bottom: "deconv" top: "pool"
  pooling_param { pool: AVE kernel_size: 3 stride: 2 } }
layer { name: "ip" type: "InnerProduct" bottom: "pool" top: "ip" inner_product_param { num_output: 10 } }
layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" }
"""


def test_other_weighted_layers_round_trip_and_agree_with_opencv(tmp_path: Path) -> None:
    prototxt = tmp_path / "mixed.prototxt"
    prototxt.write_text(MIXED_NET)
    net_param = parse_prototxt(prototxt)
    table = synthetic_weights(net_param, 7)
    assert {name: [b.shape for b in blobs] for name, blobs in table.items()} == {
        "conv": [(8, 3, 3, 3), (8,)],
        "bn": [(8,), (8,), (1,)],
        "scale": [(8,), (8,)],
        "prelu": [(8,)],
        "deconv": [(8, 3, 4, 4), (6,)],
        "prelu2": [()],  # Caffe stores a shared slope as a 0-d blob
        "ip": [(10, 6 * 12 * 12), (10,)],
    }
    assert np.all(table["bn"][1] > 0)  # variances
    caffemodel = tmp_path / "mixed.caffemodel"
    write_caffemodel(table, caffemodel)
    back = read_weights(caffemodel)
    assert _digest(back) == _digest(table)

    x = np.random.default_rng(3).uniform(-1.7, 1.7, (1, 3, 12, 12)).astype(np.float32)
    ours = run_net(translate(build_net(net_param, table)), {"data": x})["prob"]
    cv2 = pytest.importorskip("cv2", reason="OpenCV (opencv-python-headless<5) is not installed")
    if not hasattr(cv2.dnn, "readNetFromCaffe"):
        pytest.skip(f"OpenCV {cv2.__version__} has no Caffe importer (removed in 5.0)")
    # OpenCV 4.x cannot read a 0-d blob (Caffe's own form of a shared PReLU slope): give it (1,).
    write_caffemodel({**table, "prelu2": [table["prelu2"][0].reshape(1)]}, caffemodel)
    cv_net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    cv_net.setInput(x)
    np.testing.assert_allclose(ours, cv_net.forward("prob"), rtol=0, atol=1e-6)

