"""Trained LeNet on the real MNIST test set: the converted ONNX model must classify as Caffe did.

The oracle is the MNIST labels and the published accuracy (~99.1%); the Caffe2 NumPy executor is
a second, independent runtime for the same NetDef.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from zooforge.converters.api import ConvertOptions, convert_caffe
from zooforge.converters.caffe2.executor import run_net

from conftest import shared_work_scope

BATCH = 1000
SCALE = 0.00390625  # 1/256, as the shared README (and Caffe's lenet_train_test.prototxt) say
MIN_ACCURACY = 0.990  # published: about 99.1%
# Images per class in MNIST t10k (LeCun's published distribution), to prove the reader right.
T10K_CLASS_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def read_idx(path: Path) -> np.ndarray:
    """A gzip idx file (LeCun's format): 0, 0, type code, ndim, big-endian int32 dims, data."""
    raw = gzip.decompress(path.read_bytes())
    zero, type_code, ndim = struct.unpack(">HBB", raw[:4])
    assert zero == 0 and type_code == 0x08, f"{path}: not an unsigned-byte idx file"
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    assert data.size == int(np.prod(dims)), f"{path}: {data.size} bytes for dims {dims}"
    return data.reshape(dims)


@pytest.fixture(scope="module")
def mnist(shared):
    folder = shared / "data" / "mnist_t10k"
    images = read_idx(folder / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(folder / "t10k-labels-idx1-ubyte.gz")
    return images, labels


@pytest.fixture(scope=shared_work_scope)
def lenet(shared):
    folder = shared / "caffe" / "trained" / "lenet_mnist_v2"
    return convert_caffe(
        folder / "lenet.prototxt",
        folder / "lenet_iter_10000.caffemodel",
        ConvertOptions(opset=12, dynamic_batch=True),
    )


def preprocess(images: np.ndarray) -> np.ndarray:
    """Gray 28x28 bytes -> N,1,28,28 float32 scaled by 1/256, no mean."""
    return (images.astype(np.float32) * np.float32(SCALE))[:, None, :, :]


def test_idx_reader_sees_mnist_t10k(mnist):
    images, labels = mnist
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,)
    assert np.bincount(labels, minlength=10).tolist() == T10K_CLASS_COUNTS


def test_lenet_onnx_top1_accuracy_on_mnist_t10k(lenet, mnist, onnx_session):
    images, labels = mnist
    session = onnx_session(lenet.onnx_model)
    (graph_input,) = session.get_inputs()
    assert graph_input.shape[0] == "N", "--dynamic-batch should make the batch symbolic"
    predictions = []
    for start in range(0, len(images), BATCH):
        batch = preprocess(images[start : start + BATCH])
        (prob,) = session.run(None, {graph_input.name: batch})
        assert prob.shape == (len(batch), 10)
        np.testing.assert_allclose(prob.sum(axis=1), 1.0, atol=1e-5)
        predictions.append(prob.argmax(axis=1))
    predictions = np.concatenate(predictions)
    accuracy = float(np.mean(predictions == labels))
    print(f"\nLeNet (ONNX, onnxruntime) top-1 on MNIST t10k: {accuracy:.4f} "
          f"({int(np.sum(predictions == labels))}/{len(labels)})")
    assert accuracy >= MIN_ACCURACY, f"top-1 accuracy {accuracy:.4f} < {MIN_ACCURACY} (published ~0.991)"


def test_lenet_onnx_matches_caffe2_executor(lenet, mnist, onnx_run):
    images, _ = mnist
    batch = preprocess(images[:500])
    assert lenet.caffe2.inputs == ["data"]
    assert lenet.caffe2.outputs == ["prob"]
    expected = run_net(lenet.caffe2, {"data": batch})["prob"]
    got = onnx_run(lenet.onnx_model, {"data_0": batch})["prob_1"]
    assert got.shape == expected.shape == (500, 10)
    diff = float(np.max(np.abs(got - expected)))
    assert diff <= 1e-5, f"ONNX vs Caffe2 executor: max abs diff {diff:.3g}"
    assert np.array_equal(got.argmax(axis=1), expected.argmax(axis=1))
