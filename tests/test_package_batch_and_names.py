"""zoo-package --dynamic-batch and --names, as zoo-convert has them: every variant of a LeNet release
(fp32 at two opsets, int8 and QDQ) takes any batch, and a batch of 3 gives, row by row, what
onnxruntime gives for each row alone; the manifest and README name the symbolic dim; --names caffe
keeps the prototxt's blob names, listed here by hand from ../shared's lenet.prototxt."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from zooforge.artifacts.release.package_cli import main as package
from zooforge.artifacts.validation.validate_cli import main as validate
from conftest import ort_session, shared_work_scope

LENET = Path("caffe") / "trained" / "lenet_mnist_v2"
VARIANTS = ("lenet-9", "lenet-12", "lenet-12-int8", "lenet-12-qdq")
# The tops of lenet.prototxt's layers, read by hand (relu1 works in place on ip1).
CAFFE_BLOBS = ("data", "conv1", "pool1", "conv2", "pool2", "ip1", "ip2", "prob")


def build(shared: Path, out: Path, *flags: str) -> Path:
    folder = shared / LENET
    result = CliRunner().invoke(package, [
        str(folder / "lenet.prototxt"), str(folder / "lenet_iter_10000.caffemodel"), "--name", "lenet",
        "--opsets", "9,12", "--test-sets", "1", "--input-range", "0,1", "--out", str(out), "-q", *flags])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope=shared_work_scope)
def dynamic_release(shared: Path, tmp_path_factory) -> Path:
    return build(shared, tmp_path_factory.mktemp("dynamic") / "release", "--dynamic-batch")


@pytest.fixture(scope=shared_work_scope)
def caffe_names_release(shared: Path, tmp_path_factory) -> Path:
    return build(shared, tmp_path_factory.mktemp("caffe_names") / "release", "--names", "caffe",
                 "--quantize", "int8")


def dims(value: onnx.ValueInfoProto) -> list[object]:
    return [d.dim_param if d.HasField("dim_param") else d.dim_value for d in value.type.tensor_type.shape.dim]


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_has_a_symbolic_batch_and_runs_any_batch(dynamic_release: Path, variant: str) -> None:
    path = dynamic_release / f"{variant}.onnx"
    model = onnx.load(str(path))
    (data,) = model.graph.input
    (prob,) = model.graph.output
    assert (data.name, dims(data)) == ("data_0", ["N", 1, 28, 28])
    assert (prob.name, dims(prob)) == ("prob_1", ["N", 10])
    session = ort_session(path)
    batch = np.random.default_rng(7).uniform(0, 1, (3, 1, 28, 28)).astype(np.float32)
    (together,) = session.run(None, {"data_0": batch})
    assert together.shape == (3, 10)
    for row in range(3):
        (alone,) = session.run(None, {"data_0": batch[row:row + 1]})
        np.testing.assert_allclose(together[row], alone[0], rtol=1e-5, atol=1e-6)
    assert len({int(np.argmax(r)) for r in together}) >= 1 and np.all(np.isfinite(together))


def test_batch_1_test_data_on_the_dynamic_model(dynamic_release: Path) -> None:
    """The tarball's test set is batch 1 and, on onnxruntime, matches the output the build recorded from
    the source model; zoo-validate passes on the whole release."""
    import tarfile

    with tarfile.open(dynamic_release / "lenet-12.tar.gz") as tar:
        feed = numpy_helper.to_array(onnx.load_tensor_from_string(
            tar.extractfile("lenet/test_data_set_0/input_0.pb").read()))
        expected = numpy_helper.to_array(onnx.load_tensor_from_string(
            tar.extractfile("lenet/test_data_set_0/output_0.pb").read()))
    assert feed.shape == (1, 1, 28, 28) and expected.shape == (1, 10)
    (got,) = ort_session(dynamic_release / "lenet-12.onnx").run(None, {"data_0": feed})
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    result = CliRunner().invoke(validate, [str(dynamic_release)])
    assert result.exit_code == 0, result.output


def test_manifest_readme_and_lineage_name_the_symbolic_batch(dynamic_release: Path) -> None:
    entries = json.loads((dynamic_release / "manifest.json").read_text())
    assert len(entries) == len(VARIANTS)
    for entry in entries:
        ports = entry["metadata"]["io_ports"]
        assert ports["inputs"] == [{"name": "data_0", "shape": ["N", 1, 28, 28], "type": "tensor(float)"}]
        assert ports["outputs"] == [{"name": "prob_1", "shape": ["N", 10], "type": "tensor(float)"}]
    readme = (dynamic_release / "README.md").read_text()
    assert "- `data_0`: float32, shape `[N, 1, 28, 28]`" in readme
    assert "- `prob_1`: float32, shape `[N, 10]`" in readme
    assert "batch dimension is symbolic (`N`)" in readme
    for variant in VARIANTS:
        props = {p.key: p.value for p in onnx.load(str(dynamic_release / f"{variant}.onnx")).metadata_props}
        assert json.loads(props["zooforge.settings"])["dynamic_batch"] is True


def test_names_caffe_keeps_the_prototxt_blob_names(caffe_names_release: Path) -> None:
    for variant in ("lenet-9", "lenet-12", "lenet-12-int8"):
        model = onnx.load(str(caffe_names_release / f"{variant}.onnx"))
        assert [v.name for v in model.graph.input if v.name not in {t.name for t in model.graph.initializer}] \
            == ["data"], variant
        assert [v.name for v in model.graph.output] == ["prob"], variant
        assert dims(model.graph.input[0]) == [1, 1, 28, 28]  # no --dynamic-batch: batch 1
        if variant != "lenet-12-int8":  # quantization renames the inner tensors
            values = {name for node in model.graph.node for name in (*node.input, *node.output)}
            assert set(CAFFE_BLOBS) <= values, sorted(set(CAFFE_BLOBS) - values)
            zoo_style = {"data_0", "prob_1", "conv1_w_0"} | {f"{blob}_1" for blob in CAFFE_BLOBS if blob != "ip1"}
            assert not values & zoo_style, sorted(values & zoo_style)  # (ip1_1: relu1's in-place output)
    entries = json.loads((caffe_names_release / "manifest.json").read_text())
    assert {e["metadata"]["io_ports"]["inputs"][0]["name"] for e in entries} == {"data"}
    assert {e["metadata"]["io_ports"]["outputs"][0]["name"] for e in entries} == {"prob"}
    assert CliRunner().invoke(validate, [str(caffe_names_release)]).exit_code == 0


def test_an_onnx_source_refuses_names_and_dynamic_batch(dynamic_release: Path, tmp_path: Path) -> None:
    for flags in (["--names", "caffe"], ["--dynamic-batch"]):
        result = CliRunner().invoke(package, [str(dynamic_release / "lenet-12.onnx"), "--name", "x", "--opsets",
                                              "12", "--quantize", "none", "--out", str(tmp_path / "out"), *flags])
        assert result.exit_code == 2, result.output
        assert "need a Caffe or NetDef source" in result.output and "Traceback" not in result.output
        assert not (tmp_path / "out").exists()
