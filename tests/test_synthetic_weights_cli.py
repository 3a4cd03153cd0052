"""``--synthetic-weights [--weights-seed N]`` on any prototxt: zoo-convert, zoo-package and the front door.

The oracle is OpenCV's Caffe importer: it reads the prototxt and a .caffemodel written from the
synthetic table the documented contract names (the seed; inputs uniform in [-1, 1], so mean 0 and
input_std = 2/sqrt(12) = 1/sqrt(3); logit_std = 2), regenerated here with ``synthetic_weights``
and that scale written out by hand, not taken from the code under test's ``synthetic_scale``.
"""

from __future__ import annotations

import json
import math
import tarfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

import zooforge
from zooforge.artifacts.provenance import lineage_cli
from zooforge.artifacts.release import package_cli
from zooforge.artifacts.validation import validate_cli
from zooforge.converters import cli as convert_cli
from zooforge.converters.builtin import WeightScale, synthetic_weights
from zooforge.converters.caffe.loader import parse_prototxt
from zooforge.converters.caffe.upgrade import upgrade_net
from zooforge.converters.caffe.weights import write_caffemodel
from zooforge.converters.lineage import SYNTHETIC_SENTENCE, read_lineage

LENET = ("caffe", "trained", "lenet_mnist_v2", "lenet.prototxt")
CIFAR10_FULL_V1 = ("caffe", "bvlc", "v1_layers", "examples", "cifar10", "cifar10_full.prototxt")  # LRN, V1 format
CAFFENET = ("caffe", "bvlc", "v2_input_layer", "models", "bvlc_reference_caffenet", "deploy.prototxt")
STD_MINUS1_1 = 1 / math.sqrt(3)   # inputs uniform in [-1, 1]: standard deviation 2 / sqrt(12)
STD_0_1 = 1 / math.sqrt(12)       # inputs uniform in [0, 1], about their mean 0.5
LOGIT_STD = 2.0                   # the documented logit scale of --synthetic-weights


def run(command, *args: object):  # noqa: ANN001, ANN201
    return CliRunner().invoke(command.main, [str(a) for a in args])


def convert(prototxt: Path, out: Path, *extra: object) -> onnx.ModelProto:
    result = run(convert_cli, prototxt, "--synthetic-weights", *extra, "-o", out)
    assert result.exit_code == 0, result.output
    assert SYNTHETIC_SENTENCE in result.stderr
    return onnx.load(str(out))


def oracle_table(prototxt: Path, seed: int, input_std: float = STD_MINUS1_1, input_mean: float = 0.0) -> dict:
    scale = WeightScale(input_std=input_std, logit_std=LOGIT_STD, input_mean=input_mean, calibrated=True)
    return synthetic_weights(parse_prototxt(prototxt), seed, scale)


def opencv_net(prototxt: Path, table: dict, folder: Path):  # noqa: ANN201
    cv2 = pytest.importorskip("cv2", reason="OpenCV (opencv-python-headless<5) is not installed")
    if not hasattr(cv2.dnn, "readNetFromCaffe"):
        pytest.skip(f"OpenCV {cv2.__version__} has no Caffe importer (removed in 5.0)")
    caffemodel = folder / "synthetic.caffemodel"
    write_caffemodel(table, caffemodel)
    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    if hasattr(net, "enableWinograd"):  # OpenCV >= 4.7 computes 3x3 convolutions with Winograd's
        net.enableWinograd(False)       # approximation by default: 2.7e-5 off on CaffeNet's logits
    return net


def inputs(model: onnx.ModelProto, count: int, low: float = -1.0, high: float = 1.0) -> list[dict[str, np.ndarray]]:
    (port,) = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    shape = [d.dim_value for d in port.type.tensor_type.shape.dim]
    rng = np.random.default_rng(11)
    return [{port.name: rng.uniform(low, high, shape).astype(np.float32)} for _ in range(count)]


def softmax_figures(prob: np.ndarray) -> tuple[float, float]:
    """Top probability and entropy / log(classes) (1: uniform, 0: one class certain)."""
    p = prob.reshape(-1).astype(np.float64)
    return float(p.max()), float(-(p * np.log(np.maximum(p, 1e-300))).sum() / math.log(p.size))


def initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


# --------------------------------------------------------------------------- zoo-convert vs OpenCV

def with_logits(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with the Softmax's input (the logits) as a second output."""
    (softmax,) = [node for node in model.graph.node if node.op_type == "Softmax"]
    model.graph.output.append(onnx.helper.make_tensor_value_info(softmax.input[0], onnx.TensorProto.FLOAT, None))
    return model


def caffe_logits(prototxt: Path) -> str:
    """The bottom of the prototxt's Softmax layer."""
    (softmax,) = [layer for layer in upgrade_net(parse_prototxt(prototxt), str(prototxt)).layer
                  if layer.type == "Softmax"]
    return softmax.bottom[0]


@pytest.mark.parametrize("parts", [LENET, CIFAR10_FULL_V1, CAFFENET], ids=["lenet", "cifar10_full_v1", "caffenet"])
def test_converted_model_matches_opencv_and_its_softmax_is_informative(shared, tmp_path, onnx_run, parts):
    """The ONNX model (onnxruntime) against OpenCV on the same weights: logits within 1e-5 of their
    magnitude, probabilities within 1e-5; on seeded [-1, 1] inputs the softmax is neither uniform nor
    saturated and follows the input (measured: LeNet 0.50-0.96, CIFAR-10 full 0.17-0.37, CaffeNet
    0.06-0.38 top probability at logit std 2)."""
    prototxt = shared.joinpath(*parts)
    model = with_logits(convert(prototxt, tmp_path / "m.onnx", "--weights-seed", 3))
    cv_net = opencv_net(prototxt, oracle_table(prototxt, 3), tmp_path)
    tops, classes = [], set()
    for feed in inputs(model, 3):
        ours = list(onnx_run(model, feed).values())
        cv_net.setInput(next(iter(feed.values())))
        theirs = cv_net.forward([cv_net.getLayerNames()[-1], caffe_logits(prototxt)])
        prob, logits = ours
        assert logits.shape == theirs[1].shape and prob.shape == theirs[0].shape
        error = np.abs(logits - theirs[1]).max() / np.abs(theirs[1]).max()
        assert error <= 1e-5, error
        # a logit's error e moves a probability by a factor e: 1e-5 absolute (measured: 2e-6 on CaffeNet)
        np.testing.assert_allclose(prob, theirs[0], rtol=0, atol=1e-5)
        top, entropy = softmax_figures(prob)
        assert 1.5 / prob.size < top < 0.999 and 0.01 < entropy < 0.95, (top, entropy)
        tops.append(top)
        classes.add(int(prob.argmax()))
    assert float(np.median(tops)) < 0.9, tops
    assert len(classes) >= 2, classes  # different inputs, different classes


# --------------------------------------------------------------------------- seeds

def test_same_seed_same_bytes_other_seed_other_weights(shared, tmp_path):
    prototxt = shared.joinpath(*LENET)
    default = convert(prototxt, tmp_path / "default.onnx")
    convert(prototxt, tmp_path / "zero.onnx", "--weights-seed", 0)
    convert(prototxt, tmp_path / "again.onnx", "--weights-seed", 0)
    other = convert(prototxt, tmp_path / "one.onnx", "--weights-seed", 1)
    assert (tmp_path / "default.onnx").read_bytes() == (tmp_path / "zero.onnx").read_bytes() \
        == (tmp_path / "again.onnx").read_bytes()  # the default seed is 0
    a, b = initializers(default), initializers(other)
    assert a.keys() == b.keys() and len(a) == 8
    assert all(not np.array_equal(a[name], b[name]) for name in a)
    # the bytes are the documented table's: every initializer is one of the oracle's blobs
    table = oracle_table(prototxt, 0)
    expected = {(layer, index): blob for layer, blobs in table.items() for index, blob in enumerate(blobs)}
    for (layer, index), blob in expected.items():
        name = f"{layer}_{'wb'[index]}_0"
        np.testing.assert_array_equal(a[name].reshape(blob.shape), blob, err_msg=name)


# --------------------------------------------------------------------------- labels

def test_model_lineage_and_zoo_lineage_say_synthetic_with_the_seed(shared, tmp_path):
    prototxt = shared.joinpath(*LENET)
    model = convert(prototxt, tmp_path / "m.onnx", "--weights-seed", 7)
    props = {p.key: p.value for p in model.metadata_props}
    assert props["zooforge.synthetic_weights"] == "true"
    assert model.doc_string == f"Caffe LeNet ==> Caffe2 LeNet ==> ONNX LeNet\n\n{SYNTHETIC_SENTENCE}"
    lineage = read_lineage(model)
    assert lineage.synthetic
    assert [(s.name, s.role) for s in lineage.sources] == [("lenet.prototxt", "prototxt")]  # no weights file
    made = lineage.settings["synthetic_weights"]
    assert made.to_json() == {"seed": 7, "input_std": pytest.approx(STD_MINUS1_1, rel=1e-12), "logit_std": LOGIT_STD,
                              "calibrated": True}
    shown = run(lineage_cli, tmp_path / "m.onnx")
    assert shown.exit_code == 0, shown.output
    assert "weights: SYNTHETIC" in shown.output and "seed 7" in shown.output
    assert "synthetic weights seed 7 (input std 0.5774, logit std 2)" in shown.output


def test_real_weights_carry_no_synthetic_settings(shared, tmp_path):
    folder = shared.joinpath(*LENET).parent
    result = run(convert_cli, folder / "lenet.prototxt", folder / "lenet_iter_10000.caffemodel", "-o", tmp_path / "m.onnx")
    assert result.exit_code == 0, result.output
    lineage = read_lineage(tmp_path / "m.onnx")
    assert not lineage.synthetic and "synthetic_weights" not in lineage.settings


def test_opset_move_keeps_the_label_and_the_seed(shared, tmp_path):
    convert(shared.joinpath(*LENET), tmp_path / "m.onnx", "--weights-seed", 5)
    result = run(convert_cli, tmp_path / "m.onnx", "--to-opset", 9, "-o", tmp_path / "m9.onnx")
    assert result.exit_code == 0, result.output
    lineage = read_lineage(tmp_path / "m9.onnx")
    assert lineage.synthetic and lineage.settings["synthetic_weights"]["seed"] == 5


def test_help_documents_both_options_with_an_example():
    for command, example in ((convert_cli, "zoo-convert lenet.prototxt --synthetic-weights --weights-seed 7"),
                             (package_cli, "zoo-package lenet.prototxt --synthetic-weights --weights-seed 7")):
        text = run(command, "--help").output
        assert "--synthetic-weights" in text and "--weights-seed N" in text
        assert example in text
        assert "(default 0)" in " ".join(text.split())


# --------------------------------------------------------------------------- front door

def test_front_door_takes_the_same_settings(shared, tmp_path):
    prototxt = shared.joinpath(*LENET)
    convert(prototxt, tmp_path / "cli.onnx", "--weights-seed", 4)
    result = zooforge.convert(prototxt, output=tmp_path / "door.onnx", synthetic_weights=True, weights_seed=4)
    assert result.synthetic_weights
    assert (tmp_path / "door.onnx").read_bytes() == (tmp_path / "cli.onnx").read_bytes()
    with pytest.raises(zooforge.ZooforgeError, match=r"^--weights-seed seeds synthetic weights"):
        zooforge.convert(prototxt, weights_seed=4)
    with pytest.raises(zooforge.ZooforgeError, match=r"is not a whole number of at least 0"):
        zooforge.convert(prototxt, synthetic_weights=True, weights_seed=-1)
    with pytest.raises(zooforge.ZooforgeError, match=r"give no WEIGHTS"):
        zooforge.convert(prototxt, prototxt.with_name("lenet_iter_10000.caffemodel"), synthetic_weights=True)
    with pytest.raises(zooforge.ZooforgeError, match=r"needs a \.prototxt MODEL"):
        zooforge.package(out=tmp_path / "r", synthetic_weights=True)
    assert not (tmp_path / "r").exists()


# --------------------------------------------------------------------------- zoo-package

@pytest.fixture(scope="module")
def synthetic_release(shared, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthetic") / "release"
    result = run(package_cli, shared.joinpath(*LENET), "--synthetic-weights", "--weights-seed", 3, "--name", "lenet",
                 "--opsets", "9,12", "--quantize", "none", "--test-sets", 2, "--input-range", "0,1", "--out", out, "-q")
    assert result.exit_code == 0, result.output
    return out


def test_release_says_synthetic_in_manifest_readme_and_provenance(synthetic_release):
    entries = json.loads((synthetic_release / "manifest.json").read_text())
    assert [e["model"] for e in entries] == ["LeNet", "LeNet"]
    assert all(e["metadata"]["tags"] == ["vision", "classification", "lenet", "synthetic-weights"] for e in entries)
    text = (synthetic_release / "README.md").read_text()
    assert text.startswith("# LeNet\n\n> **Synthetic weights.**")
    assert "The weights are synthetic: seeded and deterministic, not trained (seed 3, scaled for inputs of mean " \
           "0.5 and standard deviation 0.2887 and logits of standard deviation 2;" in text
    assert "None: the weights are synthetic, and no dataset was used." in text
    assert "Caffe LeNet ==> Caffe2 LeNet ==> ONNX LeNet" in text
    statements = [json.loads(line) for line in (synthetic_release / "provenance.intoto.jsonl").read_text().splitlines()]
    assert {s["subject"][0]["name"] for s in statements} >= {"lenet-9.onnx", "lenet-12.tar.gz", "caffe2/init_net.pb"}
    for entry in statements:
        made = entry["predicate"]["buildDefinition"]["externalParameters"]["synthetic_weights"]
        assert made["seed"] == 3 and made["logit_std"] == LOGIT_STD, entry["subject"]
        assert made["input_std"] == pytest.approx(STD_0_1) and made["input_mean"] == 0.5  # --input-range 0,1
    for opset in (9, 12):
        lineage = read_lineage(synthetic_release / f"lenet-{opset}.onnx")
        assert lineage.synthetic and lineage.settings["synthetic_weights"]["seed"] == 3


def test_release_validates_and_its_test_outputs_are_informative(synthetic_release, shared):
    result = run(validate_cli, synthetic_release)
    assert result.exit_code == 0, result.output
    model = onnx.load(str(synthetic_release / "lenet-12.onnx"))
    table = oracle_table(shared.joinpath(*LENET), 3, STD_0_1, 0.5)
    weights = initializers(model)
    for layer, blobs in table.items():
        for suffix, blob in zip("wb", blobs):
            np.testing.assert_array_equal(weights[f"{layer}_{suffix}_0"].reshape(blob.shape), blob)
    # the input mean is cancelled by conv1's bias: without it, [0, 1] inputs saturate LeNet's softmax
    plain = oracle_table(shared.joinpath(*LENET), 3, STD_0_1)
    response = 0.5 * table["conv1"][0].astype(np.float64).reshape(20, -1).sum(axis=1)  # to a constant 0.5
    np.testing.assert_allclose(table["conv1"][1], plain["conv1"][1] - response, rtol=0, atol=1e-6)
    assert np.abs(response).max() > 10 * np.abs(plain["conv1"][1]).max()
    assert np.array_equal(plain["conv1"][0], table["conv1"][0])
    ratio = table["ip2"][0] / plain["ip2"][0]  # the classifier: the same draw, rescaled to its measured spread
    np.testing.assert_allclose(ratio, ratio.flat[0], rtol=1e-6)
    with tarfile.open(synthetic_release / "lenet-12.tar.gz") as tar:
        for index in range(2):
            expected = onnx.TensorProto.FromString(tar.extractfile(f"lenet/test_data_set_{index}/output_0.pb").read())
            top, entropy = softmax_figures(numpy_helper.to_array(expected))
            assert 0.15 < top < 0.999 and 0.01 < entropy < 0.95, (top, entropy)  # 10 classes


MODELS = Path(__file__).parent / "models"


@pytest.mark.parametrize("family,softmax", [("resnet50", True), ("squeezenet_v1.1", True), ("densenet121", False)])
def test_batch_norm_and_pooled_classifiers_stay_informative(tmp_path, onnx_run, family, softmax):
    """Shape-only scaling saturated these (measured before calibration: ResNet-50 and MobileNet v2 top
    probability 1.0 for every input, DenseNet-121 logits of 1400, SqueezeNet v1.1's conv10 -> ReLU ->
    global average 0.002, a uniform softmax): each BatchNorm now takes its input's statistics and the
    classifier the spread of what reaches the softmax. On three seeded inputs the top probability
    lies between uniform and saturated and the top class follows the input; DenseNet (no softmax)
    gives logits of a standard deviation near 2."""
    model = convert(MODELS / family / "deploy.prototxt", tmp_path / "m.onnx", "--weights-seed", 5)
    tops, classes = [], set()
    for feed in inputs(model, 3):
        (out,) = onnx_run(model, feed).values()
        out = out.reshape(-1).astype(np.float64)
        if softmax:
            tops.append(out.max())
        else:
            assert 1.0 <= out.std() <= 4.0, out.std()
        classes.add(int(out.argmax()))
    assert len(classes) > 1, classes
    if softmax:
        assert all(5.0 / out.size < top < 0.99 for top in tops), tops
