"""``manifest.json`` as the ONNX hub writes ``ONNX_HUB_MANIFEST.json``: the zoo's model names, the
model's own tag, ``extra_ports`` for named feature outputs, repository-relative paths
(``--model-path-prefix``) that zoo-verify and zoo-validate still resolve, and the hub's key order.

The expected key order and field forms come from the hub's own manifest: a copy found under
``../shared`` is read when there is one; otherwise the transcription below of onnx/models'
``ONNX_HUB_MANIFEST.json`` (commit b1eeaa1a, its AlexNet entries) is used.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from zooforge.artifacts.provenance import verify_cli
from zooforge.artifacts.release.manifest import model_path_prefix, write_manifest
from zooforge.artifacts.validation import validate_cli
from zooforge.artifacts.validation.listing import listed_file
from zooforge.converters.errors import InputFileError
from lenet_cli import package_lenet as package
from shared_paths import SHARED

# onnx/models ONNX_HUB_MANIFEST.json: every entry's keys, and its metadata's keys where extra_ports is set
HUB_KEYS = ["model", "model_path", "onnx_version", "opset_version", "metadata"]
HUB_METADATA_KEYS = ["model_sha", "model_bytes", "tags", "io_ports", "extra_ports", "model_with_data_path",
                     "model_with_data_sha", "model_with_data_bytes"]
# ... and its bvlcalexnet-12 entry (AlexNet), as far as it does not depend on the weights
HUB_ALEXNET_12 = {
    "model": "AlexNet",
    "tags": ["vision", "classification", "alexnet"],
    "io_ports": {"inputs": [{"name": "data_0", "shape": [1, 3, 224, 224], "type": "tensor(float)"}],
                 "outputs": [{"name": "prob_1", "shape": [1, 1000], "type": "tensor(float)"}]},
    "extra_ports": {"features": [{"name": "fc7_1", "shape": [1, 4096]}]},
}
ZOO_PREFIX = "validated/vision/classification/alexnet/model/"


def hub_key_order() -> tuple[list[str], list[str]]:
    """The hub manifest's key order: from a real ONNX_HUB_MANIFEST.json under ../shared, else HUB_*."""
    for path in sorted(SHARED.rglob("ONNX_HUB_MANIFEST.json")) if SHARED.is_dir() else []:
        entries = json.loads(path.read_text())
        with_ports = next(e for e in entries if "extra_ports" in e["metadata"])
        return list(with_ports), list(with_ports["metadata"])
    return HUB_KEYS, HUB_METADATA_KEYS


@pytest.fixture(scope="module")
def release(shared, tmp_path_factory) -> Path:
    """LeNet at opsets 9 and 12 with int8 and qdq, a feature port and the zoo's path prefix."""
    out = tmp_path_factory.mktemp("hub") / "release"
    result = package(out, "--opsets", "9,12", "--quantize", "int8,qdq", "--extra-port", "features=ip1_1",
                     "--model-path-prefix", ZOO_PREFIX.rstrip("/"))
    assert result.exit_code == 0, result.output
    return out


def entries(release: Path) -> list[dict]:
    return json.loads((release / "manifest.json").read_text())


def test_keys_in_the_hubs_order(release):
    top, metadata = hub_key_order()
    for entry in entries(release):
        assert list(entry) == top
        expected = metadata if "extra_ports" in entry["metadata"] else [k for k in metadata if k != "extra_ports"]
        assert list(entry["metadata"]) == expected
    assert (release / "manifest.json").read_text().startswith('[\n    {\n        "model": "LeNet",\n')


def test_names_tags_and_extra_ports(release):
    """The zoo names quantized models <Model>-int8 / -qdq and tags them as the fp32 model, with the
    model's own (lowercased) name; a feature port is listed wherever the variant computes it."""
    got = {e["model_path"].rsplit("/", 1)[1]: e for e in entries(release)}
    assert {name: e["model"] for name, e in got.items()} == {
        "lenet-9.onnx": "LeNet", "lenet-12.onnx": "LeNet", "lenet-12-int8.onnx": "LeNet-int8",
        "lenet-12-qdq.onnx": "LeNet-qdq"}
    for e in got.values():
        assert e["metadata"]["tags"] == ["vision", "classification", "lenet"]
    for name in ("lenet-9.onnx", "lenet-12.onnx"):  # LeNet's ip1 has num_output 500
        assert got[name]["metadata"]["extra_ports"] == {"features": [{"name": "ip1_1", "shape": [1, 500]}]}


def test_prefixed_paths_still_verify_and_validate(release):
    for entry in entries(release):
        assert entry["model_path"].startswith(ZOO_PREFIX)
        assert entry["metadata"]["model_with_data_path"].startswith(ZOO_PREFIX)
        assert entry["metadata"]["model_with_data_path"].endswith(".tar.gz")
    verified = CliRunner().invoke(verify_cli.main, [str(release)])
    assert verified.exit_code == 0, verified.output
    assert CliRunner().invoke(validate_cli.main, [str(release), "-q"]).exit_code == 0


def test_a_changed_file_under_a_prefixed_path_is_still_caught(release, tmp_path):
    copy = _copy(release, tmp_path / "copy")
    model = copy / "lenet-9.onnx"
    model.write_bytes(model.read_bytes()[:-1] + bytes([model.read_bytes()[-1] ^ 1]))
    verified = CliRunner().invoke(verify_cli.main, [str(copy)])
    assert verified.exit_code == 1
    assert f"manifest.json: {ZOO_PREFIX}lenet-9.onnx has sha256" in verified.output
    validated = CliRunner().invoke(validate_cli.main, [str(copy), "-q"])
    assert validated.exit_code == 1
    assert f"sha256 of {ZOO_PREFIX}lenet-9.onnx differs from the manifest" in validated.output


def _copy(release: Path, dest: Path) -> Path:
    dest.mkdir()
    for path in release.iterdir():
        if path.is_file():
            (dest / path.name).write_bytes(path.read_bytes())
    return dest


def test_a_manifest_path_never_leads_outside_the_release(release, tmp_path):
    root = tmp_path / "release"
    root.mkdir()
    (root / "m.onnx").write_bytes(b"x")
    assert listed_file(root, "validated/vision/m.onnx") == root / "m.onnx"
    assert listed_file(root, "m.onnx") == root / "m.onnx"
    for bad in ("../outside.onnx", "a/../../outside.onnx", "/etc/passwd", "a\\m.onnx", "folder/", "", None, 3):
        assert listed_file(root, bad) is None, bad
    copy = _copy(release, tmp_path / "copy")
    (tmp_path / "lenet-9.onnx").write_bytes((copy / "lenet-9.onnx").read_bytes())  # the same bytes, outside
    listed = entries(copy)
    listed[0]["model_path"] = "../lenet-9.onnx"
    write_manifest(copy / "manifest.json", listed)
    result = CliRunner().invoke(validate_cli.main, [str(copy), "-q"])
    assert result.exit_code == 1 and "lists ../lenet-9.onnx, which does not exist" in result.output
    verified = CliRunner().invoke(verify_cli.main, [str(copy)])
    assert verified.exit_code == 1 and "manifest.json: ../lenet-9.onnx is missing" in verified.output


@pytest.mark.parametrize("value, expected", [
    ("", ""), ("validated/vision/classification/alexnet/model", ZOO_PREFIX), (ZOO_PREFIX, ZOO_PREFIX),
    ("a//b/", "a/b/")])
def test_prefix_forms(value, expected):
    assert model_path_prefix(value) == expected


@pytest.mark.parametrize("value", ["/abs/model", "a/../b", "..", "a/./b", "a/$x"])
def test_bad_prefix_is_refused(value):
    with pytest.raises(InputFileError, match="--model-path-prefix"):
        model_path_prefix(value)


def test_title_names_every_variant_and_gives_the_tag(shared, tmp_path):
    out = tmp_path / "titled"
    result = package(out, "--opsets", "12", "--quantize", "int8", "--title", "MNIST-LeNet")
    assert result.exit_code == 0, result.output
    got = entries(out)
    assert [e["model"] for e in got] == ["MNIST-LeNet", "MNIST-LeNet-int8"]
    assert all(e["metadata"]["tags"] == ["vision", "classification", "mnist-lenet"] for e in got)
    assert "extra_ports" not in got[0]["metadata"]
    assert (out / "README.md").read_text().startswith("# MNIST-LeNet\n")


@pytest.mark.parametrize("args, words", [
    (["--extra-port", "fc7_1"], "--extra-port 'fc7_1' is not GROUP=TENSOR"),
    (["--extra-port", "features=no_such_blob"], "--extra-port features=no_such_blob: variant lenet-12 has no tensor"),
    (["--title", "A|B"], "--title 'A|B'"),
    (["--model-path-prefix", "../up"], "--model-path-prefix '../up'"),
])
def test_bad_options_are_one_sentence(shared, tmp_path, args, words):
    out = tmp_path / "bad"
    result = package(out, "--opsets", "12", "--quantize", "none", *args)
    assert result.exit_code == 2
    assert words in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output and not out.exists()
