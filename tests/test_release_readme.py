"""The release README has the sections of the ONNX zoo's AlexNet page, filled from what zooforge knows.

The expected headings come from the zoo's page: a copy found under ``../shared`` when there is one,
else the transcription below of onnx/models ``validated/vision/classification/alexnet/README.md``
(commit b1eeaa1a).
"""

from __future__ import annotations

import re
import tarfile
from pathlib import Path

import pytest

from lenet_cli import LENET
from lenet_cli import package_lenet as package
from shared_paths import SHARED

ZOO_HEADINGS = [
    (1, "AlexNet"), (2, "Description"), (3, "Dataset"), (2, "Source"), (2, "Model input and output"),
    (3, "Input"), (3, "Output"), (3, "Pre-processing steps"), (3, "Post-processing steps"), (3, "Sample test data"),
    (2, "Results/accuracy on test set"), (2, "Quantization"), (3, "Environment"), (3, "Prepare model"),
    (3, "Model quantize"), (2, "References"), (2, "Contributors"), (2, "License"),
]
# the zoo's sections a zooforge release fills (issue 12, item 7); the others are about INC and people
FILLED = {"Description", "Dataset", "Source", "Model input and output", "Input", "Output", "Pre-processing steps",
          "Post-processing steps", "Sample test data", "Results/accuracy on test set", "Quantization", "License"}
TABLE_HEADER = ("|Model |Download |Download (with sample test data)| ONNX version |Opset version|"
                "Top-1 accuracy (%)|Top-5 accuracy (%)|")
DESCRIPTION = "LeNet, trained on MNIST by `caffe train`.\n\n## License\nnot a heading of the release README\n"


def headings(text: str) -> list[tuple[int, str]]:
    """Markdown ATX headings outside code fences."""
    found, fence = [], None
    for line in text.splitlines():
        mark = re.match(r"(`{3,})", line)
        if mark and (fence is None or mark.group(1).startswith(fence)):
            fence = None if fence else mark.group(1)
            continue
        heading = re.match(r"(#{1,6}) (.+?)\s*$", line)
        if fence is None and heading:
            found.append((len(heading.group(1)), heading.group(2)))
    return found


def zoo_headings() -> list[tuple[int, str]]:
    """The zoo AlexNet page's headings: from a copy under ../shared, else ZOO_HEADINGS."""
    for path in sorted(SHARED.rglob("README.md")) if SHARED.is_dir() else []:
        text = path.read_text(errors="replace")
        if text.lstrip("<!-").find("# AlexNet") >= 0 and "## Model input and output" in text:
            return headings(text)
    return ZOO_HEADINGS


def section(text: str, heading: str) -> str:
    """The body of the section ``heading`` up to the next heading of any level."""
    body = text.split(f"\n{heading}\n", 1)[1]
    return re.split(r"\n#{1,6} ", body, maxsplit=1)[0]


@pytest.fixture(scope="module")
def described(shared, tmp_path_factory) -> Path:
    """LeNet at opset 12 with int8 calibrated on MNIST, evaluated on 200 MNIST images, with a readme and a
    licence."""
    folder = tmp_path_factory.mktemp("readme")
    (folder / "about.md").write_text(DESCRIPTION)
    mnist = shared / "data" / "mnist_t10k"
    result = package(folder / "release", "--opsets", "12", "--quantize", "int8", "--preprocess", "mnist",
                     "--calibration", str(mnist), "--eval-dataset", str(mnist), "--eval-limit", "200", "--description", str(folder / "about.md"),
                     "--license", str(LENET / "LICENSE.md"))
    assert result.exit_code == 0, result.output
    return folder / "release"


@pytest.fixture(scope="module")
def plain(shared, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("plain") / "release"
    result = package(out, "--opsets", "9", "--quantize", "none")
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize("which", ["described", "plain"])
def test_sections_are_the_zoos(request, which):
    text = (request.getfixturevalue(which) / "README.md").read_text()
    ours = headings(text)
    expected = [(level, name) for level, name in zoo_headings() if name in FILLED]
    assert ours[0] == (1, "LeNet")
    assert [h for h in ours if h[1] in FILLED] == expected
    assert len(set(ours)) == len(ours)  # a given readme's headings stay inside its quote


def test_description_and_licence_are_included(described):
    text = (described / "README.md").read_text()
    quoted = section(text, "## Description")
    assert "> LeNet, trained on MNIST by `caffe train`." in quoted
    assert "> ## License" in quoted
    licence = text.split("\n## License\n", 1)[1].split("\nBuilt by zooforge", 1)[0]  # the text has headings
    assert (LENET / "LICENSE.md").read_text().strip("\n") in licence
    assert "not given" not in licence.lower()


def test_not_given_without_them(plain):
    text = (plain / "README.md").read_text()
    for heading in ("## Description", "### Dataset", "### Pre-processing steps", "## License"):
        assert "Not given" in section(text, heading), heading
    assert "No quantized variants" in section(text, "## Quantization")
    assert "Accuracy not measured" in section(text, "## Results/accuracy on test set")


def test_dataset_names_the_data(described):
    dataset = section((described / "README.md").read_text(), "### Dataset")
    assert "Accuracy: measured on `mnist_t10k` (the first 200 images)." in dataset
    assert "Calibration: 100 images of `mnist_t10k`" in dataset


def test_preprocessing_gives_the_presets_steps_in_order(described):
    """../shared's LeNet: gray 28x28 scaled by 1/256 (= 0.00390625), no mean."""
    steps = [line.split(". ", 1)[1] for line in section((described / "README.md").read_text(),
                                                       "### Pre-processing steps").splitlines()
             if re.match(r"\d+\. ", line)]
    assert steps == ["decode the image (Pillow)", "convert to GRAY", "resize to 28x28 (bilinear)", "float 0..255",
                     "multiply by 0.00390625", "NCHW float32 (1, 1, 28, 28)"]


def test_sample_test_data_lists_the_tarball(described):
    with tarfile.open(described / "lenet-12.tar.gz") as tar:
        members = [m.name for m in tar.getmembers() if m.isfile()]
    listed = [line[2:] for line in section((described / "README.md").read_text(), "### Sample test data").splitlines()
              if line.startswith("- ")]
    assert sorted(listed) == sorted(members) and len(members) == 10  # model + 3 x (input, output, npz)


def test_results_keep_the_table_parity_and_accuracy(described):
    results = section((described / "README.md").read_text(), "## Results/accuracy on test set")
    lines = results.splitlines()
    assert TABLE_HEADER in lines
    rows = [line for line in lines if line.startswith("|LeNet")]
    assert [row.split("|")[1] for row in rows] == ["LeNet", "LeNet-int8"]
    assert all(float(row.split("|")[6]) >= 97.0 for row in rows), rows  # 200 MNIST digits, a trained LeNet
    assert "200 images of `mnist_t10k`" in results
    parity = section((described / "README.md").read_text(), "### Parity")
    assert "`lenet-12`: 3 test sets, pass" in parity and "Tolerances: rtol 0.001" in parity


def test_input_output_and_postprocessing(described):
    text = (described / "README.md").read_text()
    assert "data_0: float[1, 1, 28, 28]" in section(text, "### Input")
    assert "prob_1: float[1, 10]" in section(text, "### Output")
    assert "probabilities over its 10 classes" in section(text, "### Post-processing steps")
    quantization = section(text, "## Quantization")
    assert "`lenet-12-int8.onnx`: int8 (QOperator)" in quantization and "from `lenet-12.onnx`" in quantization


def test_a_description_that_is_not_text_is_refused_before_any_work(shared, tmp_path):
    binary = tmp_path / "readme.bin"
    binary.write_bytes(b"\xff\xfe\x00binary")
    out = tmp_path / "release"
    result = package(out, "--opsets", "12", "--quantize", "none", "--description", str(binary))
    assert result.exit_code == 2
    assert result.output.strip() == f"error: --description {binary} is not UTF-8 text"
    assert not out.exists()
