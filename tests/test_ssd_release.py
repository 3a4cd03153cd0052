"""SSD detectors end to end: OpenCV's detections on real images, releases made by zoo-package, and
detection rows compared row by row.

The detectors are tests/models' MobileNet-SSD (chuanqi305) and OpenCV's res10 face detector with
seeded synthetic weights, written as a .caffemodel that OpenCV's importer (the independent oracle)
reads. Real images: Caffe's cat.jpg and fish-bike.jpg from ../shared, preprocessed by OpenCV's own
``blobFromImage`` as each model's authors did (MobileNet-SSD: 300x300, (x - 127.5) * 0.007843;
res10: 300x300, BGR minus (104, 177, 123)).
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from zooforge.artifacts.release import package_cli
from zooforge.artifacts.validation import validate_cli
from zooforge.artifacts.validation.detections import DETECTION_ATOL, align_rows
from zooforge.converters.api import ConvertOptions, convert_caffe
from zooforge.converters.builtin import synthetic_weights
from zooforge.converters.caffe.loader import parse_prototxt
from zooforge.converters.caffe.weights import write_caffemodel

from conftest import ort_session
from hostile import assert_refused, invoke

MODELS = Path(__file__).parent / "models"
MOBILENET_SSD = MODELS / "mobilenet_ssd" / "deploy.prototxt"
RES10 = MODELS / "res10_ssd_face" / "deploy.prototxt"
BOX_TOLERANCE = 1e-4  # the acceptance: same boxes within 1e-4, same scores and labels

# model, blobFromImage's scale and mean, a confidence threshold replacing the published one where
# synthetic scores stay below it (MobileNet-SSD: 21 classes, published 0.25)
DETECTORS = {
    "mobilenet_ssd": (MOBILENET_SSD, 0.007843, (127.5, 127.5, 127.5), 0.05),
    "res10_ssd_face": (RES10, 1.0, (104.0, 177.0, 123.0), None),
}


def _cv2():
    cv2 = pytest.importorskip("cv2", reason="OpenCV (opencv-python-headless<5) is not installed")
    if not hasattr(cv2.dnn, "readNetFromCaffe"):
        pytest.skip(f"OpenCV {cv2.__version__} has no Caffe importer (removed in 5.0)")
    return cv2


def _with_threshold(prototxt: Path, threshold: float | None, folder: Path) -> Path:
    if threshold is None:
        return prototxt
    import re

    text, count = re.subn(r"confidence_threshold: *[0-9.eE+-]+", f"confidence_threshold: {threshold}",
                          prototxt.read_text())
    assert count == 1
    copy = folder / "deploy.prototxt"
    copy.write_text(text)
    return copy


def _rows(detections: np.ndarray) -> np.ndarray:
    """Detection rows without OpenCV's zero padding, in a canonical order (image, label, score)."""
    rows = detections.reshape(-1, 7).astype(np.float64)
    rows = rows[np.any(rows != 0, axis=1)]
    return rows[np.lexsort((-rows[:, 2], rows[:, 1], rows[:, 0]))]


@pytest.mark.parametrize("image", ["cat.jpg", "fish-bike.jpg"])
@pytest.mark.parametrize("detector", list(DETECTORS))
def test_detections_on_real_images_match_opencv(shared, tmp_path, detector, image):
    """Same detections as OpenCV's importer: labels and image ids exact, scores and boxes within 1e-4."""
    cv2 = _cv2()
    published, scale, mean, threshold = DETECTORS[detector]
    prototxt = _with_threshold(published, threshold, tmp_path)
    caffemodel = tmp_path / "synthetic.caffemodel"
    write_caffemodel(synthetic_weights(parse_prototxt(prototxt), 1312), caffemodel)
    picture = cv2.imread(str(shared / "data" / "imagenet_samples" / image))
    assert picture is not None, image
    blob = cv2.dnn.blobFromImage(picture, scale, (300, 300), mean, swapRB=False, crop=False)
    reader = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    reader.enableWinograd(False)
    reader.setInput(blob)
    theirs = _rows(reader.forward())
    assert len(theirs) > 0, f"{detector} on {image}: OpenCV found nothing; the test would prove nothing"
    for opset in (10, 12):
        model = convert_caffe(prototxt, caffemodel, ConvertOptions(opset=opset)).onnx_model
        session = ort_session(model)
        (out,) = session.run(None, {session.get_inputs()[0].name: blob})
        ours = _rows(out)
        assert ours.shape == theirs.shape, f"opset {opset}: {len(ours)} detections, OpenCV {len(theirs)}"
        aligned = align_rows(theirs, ours)
        np.testing.assert_array_equal(aligned[:, :2], theirs[:, :2])
        np.testing.assert_allclose(aligned[:, 2:], theirs[:, 2:], rtol=0, atol=BOX_TOLERANCE)


@pytest.fixture(scope="module")
def ssd_release(tmp_path_factory):
    out = tmp_path_factory.mktemp("ssd") / "release"
    result = CliRunner().invoke(package_cli.main, [str(MOBILENET_SSD), "--synthetic-weights", "--opsets", "10,12",
                                                   "--quantize", "none", "--name", "mobilenet-ssd", "--quiet",
                                                   "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_zoo_package_makes_a_detector_release_that_validates(ssd_release):
    result = CliRunner().invoke(validate_cli.main, [str(ssd_release)])
    assert result.exit_code == 0, result.output
    assert f"detection rows (detection_out_1) matched row by row at atol={DETECTION_ATOL:g}" in result.output
    with tarfile.open(ssd_release / "mobilenet-ssd-10.tar.gz") as archive:
        member = next(m for m in archive.getmembers() if m.name.endswith("test_data_set_0/output_0.pb"))
        tensor = onnx.load_tensor_from_string(archive.extractfile(member).read())
    rows = numpy_helper.to_array(tensor)
    assert tensor.name == "detection_out_1" and rows.shape == (1, 1, 100, 7)  # keep_top_k rows, as OpenCV gives
    found = rows.reshape(-1, 7)[rows.reshape(-1, 7)[:, 2] > 0]
    assert len(found) > 0 and np.all(found[:, 2] > 0.25) and np.all((found[:, 1] >= 1) & (found[:, 1] <= 20))
    parity = json.loads((ssd_release / "parity.json").read_text())
    atols = {o["atol"] for entry in parity for s in entry["report"]["sets"] for o in s["outputs"]}
    assert atols == {DETECTION_ATOL}
    assert "synthetic" in (ssd_release / "README.md").read_text().lower()


def test_default_opsets_are_refused_naming_the_layer_and_opset_10(tmp_path):
    result = invoke(package_cli.main, [MOBILENET_SSD, "--synthetic-weights", "--quantize", "none",
                                       "--out", tmp_path / "r"])
    assert_refused(result, "layer 'detection_out' (DetectionOutput", "opset 3", "NonMaxSuppression from opset 10")
    assert not (tmp_path / "r").exists()


def test_quantized_detector_releases_are_refused_before_work(tmp_path):
    result = invoke(package_cli.main, [MOBILENET_SSD, "--synthetic-weights", "--opsets", "10,12",
                                       "--out", tmp_path / "r"])
    assert_refused(result, "quantized variants of a detector", "detection_out", "--quantize none")
    assert not (tmp_path / "r").exists()


# -- row alignment (artifacts/validation/detections.py), expected values written by hand ------------

def _stack(*rows):
    return np.array(rows, np.float32).reshape(1, 1, len(rows), 7)


def test_near_tied_rows_in_another_order_align():
    expected = _stack([0, 3, 0.9000001, .1, .1, .2, .2], [0, 5, 0.9, .3, .3, .4, .4], [0, 0, 0, 0, 0, 0, 0])
    got = _stack([0, 5, 0.9000002, .3, .3, .4, .4], [0, 3, 0.9, .1, .1, .2, .2], [0, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(align_rows(expected, got), got[:, :, [1, 0, 2]])


def test_a_row_without_counterpart_keeps_failing():
    expected = _stack([0, 3, 0.9, .1, .1, .2, .2], [0, 5, 0.8, .3, .3, .4, .4])
    got = _stack([0, 3, 0.9, .1, .1, .2, .2], [0, 7, 0.8, .3, .3, .4, .4])  # label 7: no label-5 row
    aligned = align_rows(expected, got)
    assert aligned.reshape(-1, 7)[1, 1] == 7  # left in place: the comparison then fails on the label


def test_same_label_rows_match_by_box_and_nan_never_matches():
    from zooforge.artifacts.validation.parity import Tolerance, compare_output

    expected = _stack([0, 2, 0.5, .1, .1, .2, .2], [0, 2, 0.5, .6, .6, .7, .7])
    swapped = _stack([0, 2, 0.5, .6, .6, .7, .7], [0, 2, 0.5, .1, .1, .2, .2])
    np.testing.assert_array_equal(align_rows(expected, swapped), expected)  # matched by their boxes
    poisoned = _stack([0, 2, 0.5, .6, .6, .7, .7], [0, 2, np.nan, .1, .1, .2, .2])
    aligned = align_rows(expected, poisoned)
    assert np.isnan(aligned).sum() == 1  # kept, not dropped
    assert not compare_output("d", expected, aligned, Tolerance(1e-3, DETECTION_ATOL)).passed
