"""``zoo-package`` / ``zooforge.artifacts.release.build``: complete, reproducible, all-or-nothing model releases.

Most tests build LeNet (../shared/caffe/trained/lenet_mnist_v2, inputs in [0, 1)) at a few opsets;
each such build takes well under a second. One test builds the full-size built-in AlexNet at a
single opset with one test set (the full default release is built by CI in .ci/run).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

import zooforge.artifacts.release.build as release_module
from zooforge.artifacts.release import package_cli
from zooforge.artifacts.validation import validate_cli
from zooforge.artifacts.release.build import ReleaseError, ReleaseOptions, build_release
from zooforge.artifacts.release.source import ReleaseSource, builtin_source, caffe_source, netdef_source, onnx_source
from zooforge.artifacts.release.testdata import InputRecipe
from zooforge.converters import api
from zooforge.converters.caffe2.executor import run_net
from zooforge.converters.onnx.model import OnnxModel

OPSETS = (3, 9, 13)
EPOCH = 1_234_567_890
NAME = "lenet"
ONNX_RELEASES = {3: "1.1", 6: "1.1.2", 7: "1.2", 8: "1.3", 9: "1.4.1", 12: "1.7", 13: "1.8"}
TABLE_HEADER = ("|Model |Download |Download (with sample test data)| ONNX version |Opset version|"
                "Top-1 accuracy (%)|Top-5 accuracy (%)|")
RECIPE = InputRecipe(0, 0.0, 1.0)


# ------------------------------------------------------------------------------------ helpers


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path, with its bytes."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}


def extract(archive: Path, dest: Path) -> Path:
    """Extract ``archive`` into ``dest``; the single top folder."""
    with tarfile.open(archive) as tar:
        tops = {member.name.split("/")[0] for member in tar.getmembers()}
        assert len(tops) == 1, tops
        tar.extractall(dest, filter="data")
    return dest / tops.pop()


def data_files(root: Path) -> dict[str, bytes]:
    """The test data files of an extracted tarball (everything but model.onnx)."""
    return {name: data for name, data in tree(root).items() if name != "model.onnx"}


def lenet_files(shared: Path) -> tuple[Path, Path]:
    folder = shared / "caffe" / "trained" / "lenet_mnist_v2"
    return folder / "lenet.prototxt", folder / "lenet_iter_10000.caffemodel"


def lenet_options(epoch: int = EPOCH, opsets=OPSETS) -> ReleaseOptions:  # noqa: ANN001
    return ReleaseOptions(name=NAME, opsets=tuple(opsets), recipe=RECIPE, source_date_epoch=epoch, quantize=())


def lenet_source(shared: Path) -> ReleaseSource:
    return caffe_source(*lenet_files(shared), api.ConvertOptions(names="zoo"))


def package_args(shared: Path, out: Path, *extra: str) -> list[str]:
    prototxt, weights = lenet_files(shared)
    return [str(prototxt), str(weights), "--name", NAME, "--opsets", ",".join(map(str, OPSETS)),
            "--input-range", "0,1", "--quantize", "none", "--out", str(out), *extra]


def assert_nothing_half_written(out: Path, before: dict[str, bytes] | None) -> None:
    """``out`` is absent (or holds exactly the old release) and no build folder is left beside it."""
    if before is None:
        assert not out.exists()
    else:
        assert tree(out) == before
    leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
    assert leftovers == []


@pytest.fixture(scope="module")
def release(shared, tmp_path_factory) -> Path:
    """LeNet at opsets 3, 9, 13, built by ``zoo-package`` with SOURCE_DATE_EPOCH from the environment."""
    out = tmp_path_factory.mktemp("release") / "lenet-release"
    result = CliRunner().invoke(package_cli.main, package_args(shared, out, "--quiet"),
                                env={"SOURCE_DATE_EPOCH": str(EPOCH)})
    assert result.exit_code == 0, result.output
    assert "all variants match the source" in result.stdout
    return out


@pytest.fixture(scope="module")
def extracted(release, tmp_path_factory) -> dict[int, Path]:
    """Each variant's tarball, extracted: opset -> top folder."""
    dest = tmp_path_factory.mktemp("extracted")
    return {opset: extract(release / f"{NAME}-{opset}.tar.gz", dest / str(opset)) for opset in OPSETS}


# ------------------------------------------------------------------------------ reproducibility


def test_same_epoch_gives_identical_bytes(shared, release, tmp_path):
    # The fixture took the epoch from the environment; this build takes it from ReleaseOptions.
    again = tmp_path / "again"
    build_release(lenet_source(shared), lenet_options(EPOCH), again)
    first, second = tree(release), tree(again)
    assert sorted(first) == sorted(second)
    for name in first:
        assert first[name] == second[name], name


def test_other_epoch_changes_only_tarballs_and_their_hashes(shared, release, tmp_path):
    other = tmp_path / "other"
    build_release(lenet_source(shared), lenet_options(0), other)
    first, second = tree(release), tree(other)
    assert sorted(first) == sorted(second)
    differing = {name for name in first if first[name] != second[name]}
    # The tarballs' member times, and the files that record their digests or the build time.
    assert differing == {f"{NAME}-{opset}.tar.gz" for opset in OPSETS} | {
        "manifest.json", "SHA256SUMS", "provenance.intoto.jsonl"}
    # the archives' contents are the same; only the timestamps (and so the compressed bytes) differ
    for opset in OPSETS:
        a = extract(release / f"{NAME}-{opset}.tar.gz", tmp_path / "a" / str(opset))
        b = extract(other / f"{NAME}-{opset}.tar.gz", tmp_path / "b" / str(opset))
        assert tree(a) == tree(b)
        with tarfile.open(other / f"{NAME}-{opset}.tar.gz") as tar:
            assert {m.mtime for m in tar.getmembers()} == {0}
        with tarfile.open(release / f"{NAME}-{opset}.tar.gz") as tar:
            assert {m.mtime for m in tar.getmembers()} == {EPOCH}


# ------------------------------------------------------------------------------------- layout


def test_release_layout(release):
    names = set(tree(release))
    expected = {f"{NAME}-{opset}.{ext}" for opset in OPSETS for ext in ("onnx", "tar.gz")}
    expected |= {"README.md", "manifest.json", "parity.json", "SHA256SUMS", "provenance.intoto.jsonl",
                 "caffe2/predict_net.pb", "caffe2/init_net.pb", "caffe2/value_info.json"}
    assert names == expected
    json.loads((release / "caffe2" / "value_info.json").read_text())


def test_tarball_contents(release, extracted):
    for opset, top in extracted.items():
        assert top.name == NAME
        names = set(tree(top))
        assert names == {"model.onnx"} | {f"test_data_set_{n}/{kind}_0.pb" for n in range(3)
                                          for kind in ("input", "output")} | {f"test_data_{n}.npz" for n in range(3)}
        assert (top / "model.onnx").read_bytes() == (release / f"{NAME}-{opset}.onnx").read_bytes()
        model = onnx.load(str(top / "model.onnx"))
        assert model.opset_import[0].version == opset
        initializers = {t.name for t in model.graph.initializer}
        (graph_input,) = [v.name for v in model.graph.input if v.name not in initializers]
        (graph_output,) = [v.name for v in model.graph.output]
        for n in range(3):
            tensor_in = onnx.load_tensor(str(top / f"test_data_set_{n}" / "input_0.pb"))
            tensor_out = onnx.load_tensor(str(top / f"test_data_set_{n}" / "output_0.pb"))
            assert tensor_in.name == graph_input
            assert tensor_out.name == graph_output
            with np.load(top / f"test_data_{n}.npz", allow_pickle=False) as npz:
                assert set(npz.files) == {"inputs", "outputs"}
                np.testing.assert_array_equal(npz["inputs"][0], onnx.numpy_helper.to_array(tensor_in))
                np.testing.assert_array_equal(npz["outputs"][0], onnx.numpy_helper.to_array(tensor_out))
    with tarfile.open(release / f"{NAME}-{OPSETS[0]}.tar.gz") as tar:
        members = tar.getmembers()
        assert members[0].name == NAME and members[0].isdir()
        assert all(m.name == NAME or m.name.startswith(NAME + "/") for m in members)


def test_readme(shared, release):
    text = (release / "README.md").read_text()
    lines = text.splitlines()
    assert TABLE_HEADER in lines
    rows = [line for line in lines if line.startswith("|LeNet|")]
    assert len(rows) == len(OPSETS)
    for row, opset in zip(rows, OPSETS):
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[0] == "LeNet"
        assert cells[1].endswith(f"({NAME}-{opset}.onnx)")
        assert cells[2].endswith(f"({NAME}-{opset}.tar.gz)")
        assert cells[3] == ONNX_RELEASES[opset]
        assert cells[4] == str(opset)
    assert "Caffe LeNet ==> Caffe2 LeNet ==> ONNX LeNet" in lines
    for path in lenet_files(shared):
        assert f"- `{path.name}`: sha256 `{sha256(path)}`" in lines
    assert "synthetic" not in text.lower()


def test_manifest_matches_files(release):
    entries = json.loads((release / "manifest.json").read_text())
    assert [e["opset_version"] for e in entries] == list(OPSETS)
    for entry, opset in zip(entries, OPSETS):
        assert entry["model"] == "LeNet"
        assert entry["model_path"] == f"{NAME}-{opset}.onnx"
        assert entry["onnx_version"] == ONNX_RELEASES[opset]
        meta = entry["metadata"]
        model, archive = release / entry["model_path"], release / meta["model_with_data_path"]
        assert meta["model_with_data_path"] == f"{NAME}-{opset}.tar.gz"
        assert meta["model_sha"] == sha256(model)
        assert meta["model_bytes"] == model.stat().st_size
        assert meta["model_with_data_sha"] == sha256(archive)
        assert meta["model_with_data_bytes"] == archive.stat().st_size
        assert meta["tags"] == ["vision", "classification", "lenet"]  # the hub's, with the model's own tag
        assert meta["io_ports"] == {
            "inputs": [{"name": "data_0", "shape": [1, 1, 28, 28], "type": "tensor(float)"}],
            "outputs": [{"name": "prob_1", "shape": [1, 10], "type": "tensor(float)"}],
        }


def test_weights_are_not_listed_as_inputs_at_ir3(shared, tmp_path):
    """At opset 3 (IR 3) every initializer is also a graph input; neither the manifest's io_ports
    nor the README's Input section may list the weights (large ones live outside the skeleton)."""
    out = tmp_path / "rel"
    build_release(lenet_source(shared), lenet_options(opsets=(9, 3)), out)
    for entry in json.loads((out / "manifest.json").read_text()):
        assert [p["name"] for p in entry["metadata"]["io_ports"]["inputs"]] == ["data_0"], entry["opset_version"]
    text = (out / "README.md").read_text()
    inputs = text.split("### Input", 1)[1].split("### Output", 1)[0]
    assert [line for line in inputs.splitlines() if line.startswith("- ")] == [
        "- `data_0`: float32, shape `[1, 1, 28, 28]`"]


def test_sha256sums(release):
    listed = {line.split("  ", 1)[1]: line.split("  ", 1)[0]
              for line in (release / "SHA256SUMS").read_text().splitlines()}
    assert set(listed) == set(tree(release)) - {"SHA256SUMS"}
    for name, digest in listed.items():
        assert digest == sha256(release / name), name
    if shutil.which("sha256sum") is None:
        pytest.skip("no sha256sum binary")
    result = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=release, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_parity_json(release, extracted, onnx_session):
    """parity.json's verdicts and figures, recomputed here with onnxruntime and NumPy on each
    tarball's model.onnx and test_data_set_N (|got - exp| <= 1e-7 + 1e-3 * |exp|, the README's
    default tolerance). Variants below opset 7 have no onnxruntime kernels: only their layout is
    checked here."""
    text = (release / "parity.json").read_text()
    assert ".building-" not in text
    assert str(release.parent) not in text
    records = json.loads(text)
    assert [r["variant"] for r in records] == [f"{NAME}-{opset}" for opset in OPSETS]
    rtol, atol = 1e-3, 1e-7
    for record in records:
        assert {s["test_set"] for s in record["report"]["sets"]} == {f"test_data_set_{n}" for n in range(3)}
        assert record["report"]["tolerance"] == {"rtol": rtol, "atol": atol, "per_output": {}}
        if record["opset"] < 7:
            continue
        top = extracted[record["opset"]]
        session = onnx_session(top / "model.onnx")
        names = [o.name for o in session.get_outputs()]
        for entry in record["report"]["sets"]:
            assert entry["runtime"] == "onnxruntime" and entry["error"] is None
            folder = top / entry["test_set"]
            fed = onnx.load_tensor(str(folder / "input_0.pb"))
            want = onnx.load_tensor(str(folder / "output_0.pb"))
            got = dict(zip(names, session.run(names, {fed.name: onnx.numpy_helper.to_array(fed)})))[want.name]
            exp = onnx.numpy_helper.to_array(want)
            assert got.dtype == exp.dtype and got.shape == exp.shape
            err = np.abs(got.astype(np.float64) - exp.astype(np.float64))
            ours = bool(np.isfinite(got).all() and (err <= atol + rtol * np.abs(exp)).all())
            assert ours, (record["variant"], entry["test_set"], err.max())
            assert entry["passed"] is ours
            (figures,) = entry["outputs"]
            assert figures["name"] == want.name and figures["passed"] is ours
            where = (record["variant"], entry["test_set"])
            assert figures["max_abs"] == pytest.approx(err.max(), rel=1e-5, abs=1e-12), where
            assert figures["mean_abs"] == pytest.approx(err.mean(), rel=1e-5, abs=1e-12), where
            assert figures["max_rel"] == pytest.approx((err / np.abs(exp)).max(), rel=1e-5, abs=1e-12), where
        assert record["passed"] is record["report"]["passed"] is True  # every set recomputed above passed


def test_every_variant_is_checked_by_a_runtime_independent_of_the_executor(release):
    """Below opset 7 the reference evaluator's kernels compute as the executor does; the variant is
    also run on onnxruntime after a lift to opset 7, and parity.json and the README say so."""
    records = {r["opset"]: r for r in json.loads((release / "parity.json").read_text())}
    for opset, record in records.items():
        ran = {s["runtime"] for s in record["report"]["sets"]}
        expected = {"reference", "onnxruntime-lifted"} if opset < 7 else {"onnxruntime"}
        assert ran == expected == set(record["runtimes"]), opset
        assert all(s["error"] is None and s["passed"] for s in record["report"]["sets"])
    assert "lifted in memory to opset 7" in records[3]["runtimes"]["onnxruntime-lifted"]
    text = (release / "README.md").read_text()
    assert f"`{NAME}-3`: 3 test sets, pass; max abs error on onnxruntime-lifted " in text
    assert "`onnxruntime-lifted`: onnxruntime (CPU) on the model lifted in memory to opset 7" in text


def test_zoo_validate_accepts_release(release):
    result = CliRunner().invoke(validate_cli.main, [str(release)])
    assert result.exit_code == 0, result.output


# ------------------------------------------------------- expected outputs come from the source


def test_test_data_comes_from_seeds_and_caffe2_executor(shared, extracted):
    caffe2 = lenet_source(shared).caffe2
    (input_name,) = caffe2.inputs
    shape = tuple(dict(caffe2.input_shapes)[input_name])
    assert shape == (1, 1, 28, 28)
    for n in range(3):
        drawn = np.random.default_rng(0 + n).uniform(0.0, 1.0, shape).astype(np.float32)
        (expected,) = run_net(caffe2, {input_name: drawn}).values()
        for opset, top in extracted.items():
            recorded = onnx.numpy_helper.to_array(onnx.load_tensor(str(top / f"test_data_set_{n}" / "input_0.pb")))
            np.testing.assert_array_equal(recorded, drawn)
            got = onnx.numpy_helper.to_array(onnx.load_tensor(str(top / f"test_data_set_{n}" / "output_0.pb")))
            assert got.dtype == expected.dtype and got.shape == expected.shape
            np.testing.assert_array_equal(got, expected, err_msg=f"opset {opset} set {n}")
    # every variant carries the same, source-computed, test data
    reference = data_files(extracted[OPSETS[0]])
    for top in extracted.values():
        assert data_files(top) == reference


def test_recorded_outputs_are_what_opencvs_caffe_computes(shared, extracted):
    """The recorded expected outputs against an implementation that shares no code with the
    executor that made them: OpenCV's Caffe importer on the same LeNet files and the recorded
    inputs (the test above only shows they are the executor's, bit for bit)."""
    cv2 = pytest.importorskip("cv2", reason="OpenCV (opencv-python-headless<5) is not installed")
    if not hasattr(cv2.dnn, "readNetFromCaffe"):
        pytest.skip(f"OpenCV {cv2.__version__} has no Caffe importer (removed in 5.0)")
    net = cv2.dnn.readNetFromCaffe(*(str(p) for p in lenet_files(shared)))
    for opset, top in extracted.items():
        for n in range(3):
            fed = onnx.numpy_helper.to_array(onnx.load_tensor(str(top / f"test_data_set_{n}" / "input_0.pb")))
            recorded = onnx.numpy_helper.to_array(onnx.load_tensor(str(top / f"test_data_set_{n}" / "output_0.pb")))
            net.setInput(fed)
            caffe = net.forward("prob")
            assert caffe.shape == recorded.shape == (1, 10)
            np.testing.assert_allclose(recorded, caffe, rtol=0, atol=1e-5, err_msg=f"opset {opset} set {n}")


def test_onnx_source_outputs_come_from_source_model(shared, tmp_path, onnx_run):
    source_path = tmp_path / "lenet-source.onnx"
    api.convert_caffe(*lenet_files(shared), api.ConvertOptions(opset=9)).save(source_path)
    out = tmp_path / "from-onnx"
    build_release(onnx_source(source_path, api.ConvertOptions()), lenet_options(opsets=(7, 13)), out)
    assert set(tree(out)) == {f"{NAME}-{o}.{ext}" for o in (7, 13) for ext in ("onnx", "tar.gz")} | {
        "README.md", "manifest.json", "parity.json", "SHA256SUMS", "provenance.intoto.jsonl"}
    for opset in (7, 13):
        top = extract(out / f"{NAME}-{opset}.tar.gz", tmp_path / "x" / str(opset))
        for n in range(3):
            feed = onnx.load_tensor(str(top / f"test_data_set_{n}" / "input_0.pb"))
            recorded = onnx.numpy_helper.to_array(onnx.load_tensor(str(top / f"test_data_set_{n}" / "output_0.pb")))
            (expected,) = onnx_run(source_path, {feed.name: onnx.numpy_helper.to_array(feed)}).values()
            np.testing.assert_allclose(recorded, expected, rtol=0, atol=1e-6)
    assert f"- `{source_path.name}`: sha256 `{sha256(source_path)}`" in (out / "README.md").read_text()


def test_netdef_source_gives_the_caffe_builds_test_data(release, extracted, tmp_path):
    folder = release / "caffe2"
    source = netdef_source(folder / "predict_net.pb", folder / "init_net.pb", folder / "value_info.json",
                           api.ConvertOptions())
    out = tmp_path / "from-netdef"
    build_release(source, lenet_options(), out)
    assert not (out / "caffe2").exists()
    for opset in OPSETS:
        top = extract(out / f"{NAME}-{opset}.tar.gz", tmp_path / "x" / str(opset))
        assert data_files(top) == data_files(extracted[opset])


# --------------------------------------------------------------------------- all or nothing


def _break_softmax_at(monkeypatch, opset: int) -> None:  # noqa: ANN001
    original = ReleaseSource.variant

    def variant(self, target):  # noqa: ANN001, ANN202
        model = original(self, target)
        if target != opset:
            return model
        skeleton = onnx.ModelProto()
        skeleton.CopyFrom(model.skeleton)
        for node in skeleton.graph.node:
            if node.op_type == "Softmax":
                node.op_type = "Identity"
                del node.attribute[:]
        return OnnxModel(skeleton, dict(model.large))

    monkeypatch.setattr(ReleaseSource, "variant", variant)


@pytest.mark.parametrize("existing", [False, True], ids=["new-out", "old-release"])
def test_failing_variant_fails_the_build(shared, tmp_path, monkeypatch, existing):
    out = tmp_path / "rel"
    before = None
    if existing:
        build_release(lenet_source(shared), lenet_options(), out)
        before = tree(out)
    _break_softmax_at(monkeypatch, 9)
    result = CliRunner().invoke(package_cli.main, package_args(shared, out, "--quiet"))
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert errors[0].startswith(f"error: variant {NAME}-9 fails parity"), errors[0]
    assert "prob_1" in errors[0]
    assert_nothing_half_written(out, before)


def test_failing_variant_raises_release_error(shared, tmp_path, monkeypatch):
    _break_softmax_at(monkeypatch, 13)
    with pytest.raises(ReleaseError, match=f"variant {NAME}-13 fails parity"):
        build_release(lenet_source(shared), lenet_options(), tmp_path / "rel")
    assert_nothing_half_written(tmp_path / "rel", None)


@pytest.mark.parametrize("existing", [False, True], ids=["new-out", "old-release"])
def test_interrupted_build_leaves_nothing(shared, tmp_path, monkeypatch, existing):
    out = tmp_path / "rel"
    before = None
    if existing:
        build_release(lenet_source(shared), lenet_options(), out)
        before = tree(out)
    calls = []
    original = release_module.write_tarball

    def write_tarball(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(args[0])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(release_module, "write_tarball", write_tarball)
    with pytest.raises(KeyboardInterrupt):
        build_release(lenet_source(shared), lenet_options(), out)
    assert len(calls) == 2
    assert_nothing_half_written(out, before)


# -------------------------------------------------------------------------------------- CLI


def test_help_explains_options():
    result = CliRunner().invoke(package_cli.main, ["--help"])
    assert result.exit_code == 0
    for option in ("--out", "--opsets", "--name", "--input-range", "--seed", "--test-sets", "--rtol", "--atol",
                   "--quiet", "--builtin", "--init-net", "SOURCE_DATE_EPOCH"):
        assert option in result.output, option


def test_missing_prototxt_is_one_error_line(shared, tmp_path):
    _, weights = lenet_files(shared)
    out = tmp_path / "rel"
    result = CliRunner().invoke(package_cli.main, [str(tmp_path / "missing.prototxt"), str(weights),
                                                   "--out", str(out)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "missing.prototxt" in lines[0]
    assert "Traceback" not in result.output
    assert not out.exists()


def test_quiet_prints_no_progress(shared, tmp_path):
    loud = CliRunner().invoke(package_cli.main, package_args(shared, tmp_path / "loud"))
    assert loud.exit_code == 0, loud.output
    assert "zoo-package" in loud.stderr  # the progress bar
    quiet = CliRunner().invoke(package_cli.main, package_args(shared, tmp_path / "quiet", "--quiet"))
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stderr == ""
    assert quiet.stdout.startswith(f"wrote {tmp_path / 'quiet'}: 3 variants")


def test_bad_epoch_is_an_error(shared, tmp_path):
    result = CliRunner().invoke(package_cli.main, package_args(shared, tmp_path / "rel", "-q"),
                                env={"SOURCE_DATE_EPOCH": "yesterday"})
    assert result.exit_code == 2
    assert result.stderr.startswith("error: SOURCE_DATE_EPOCH='yesterday'")


# ---------------------------------------------------------------------- built-in AlexNet


def test_builtin_alexnet_release_states_synthetic_weights(tmp_path):
    """The full-size built-in AlexNet at one opset with one test set (the full release runs in CI):
    named, tagged, shaped and with its feature port as the hub's bvlcalexnet-12 entry (test_hub_manifest),
    its tags then saying synthetic-weights (the hub's entry has trained weights)."""
    from test_hub_manifest import HUB_ALEXNET_12

    out = tmp_path / "alexnet"
    options = ReleaseOptions(opsets=(12,), test_sets=1, recipe=InputRecipe(0, -128.0, 128.0), quantize=(),
                             extra_ports=(("features", "fc7_1"),))
    build_release(builtin_source("alexnet", api.ConvertOptions(names="zoo")), options, out)
    (entry,) = json.loads((out / "manifest.json").read_text())
    hub = {**HUB_ALEXNET_12, "tags": [*HUB_ALEXNET_12["tags"], "synthetic-weights"]}
    assert {key: entry["metadata"].get(key, entry.get(key)) for key in HUB_ALEXNET_12} == hub
    text = (out / "README.md").read_text()
    assert text.startswith("# AlexNet\n") and "**Synthetic weights.**" in text
    assert "Caffe BVLC AlexNet ==> Caffe2 AlexNet ==> ONNX AlexNet" in text
    assert "data_0: float[1, 3, 224, 224]" in text and "prob_1: float[1, 1000]" in text
    assert "The weights are synthetic" in text and "None: the weights are synthetic" in text
    assert "(seed 2012, scaled for inputs of standard deviation 73.9 and logits of standard deviation 4;" in text
    assert "|AlexNet| " in text and "| 1.7 | 12 |" in text
    assert (out / "bvlcalexnet-12.onnx").stat().st_size > 200 * 2**20
    records = json.loads((out / "parity.json").read_text())
    assert [r["passed"] for r in records] == [True]


# ---------------------------------------------------------------------- quantized variants


def test_lenet_release_with_int8_and_qdq_evaluated_on_mnist(shared, tmp_path):
    """The published LeNet scores about 99.1% on MNIST t10k; int8 and QDQ stay within 0.3 points."""
    mnist = shared / "data" / "mnist_t10k"
    out = tmp_path / "lenet-q"
    prototxt, weights = lenet_files(shared)
    result = CliRunner().invoke(package_cli.main, [
        str(prototxt), str(weights), "--name", NAME, "--opsets", "12", "--input-range", "0,1", "--out", str(out),
        "--quantize", "int8,qdq", "--calibration", str(mnist), "--eval-dataset", str(mnist),
        "--preprocess", "mnist", "-q"])
    assert result.exit_code == 0, result.output
    rows = [line for line in (out / "README.md").read_text().splitlines() if line.startswith("|LeNet")]
    table = {line.split("|")[1]: [cell.strip() for cell in line.split("|")[2:-1]] for line in rows}
    assert set(table) == {"LeNet", "LeNet-int8", "LeNet-qdq"}
    top1 = {name: float(cells[4]) for name, cells in table.items()}
    assert top1["LeNet"] >= 99.0, top1
    assert abs(top1["LeNet-int8"] - top1["LeNet"]) <= 0.3 and abs(top1["LeNet-qdq"] - top1["LeNet"]) <= 0.3, top1
    text = (out / "README.md").read_text()
    assert "int8's top-1 accuracy drop ratio is" in text and "10000 images" in text
    records = {r["variant"]: r for r in json.loads((out / "parity.json").read_text())}
    for fmt in ("int8", "qdq"):
        agreement = records[f"lenet-12-{fmt}"]["top1_agreement"]
        assert agreement["calibration"]["total"] == 100
        assert agreement["calibration"]["agree"] >= 98
    import onnx

    int8 = onnx.load(str(out / "lenet-12-int8.onnx"))
    assert "QLinearConv" in {n.op_type for n in int8.graph.node}
    qdq = onnx.load(str(out / "lenet-12-qdq.onnx"))
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in qdq.graph.node}
    assert CliRunner().invoke(validate_cli.main, [str(out), "-q"]).exit_code == 0


# ---------------------------------------------------------------------- provenance


def test_release_statements_are_slsa_provenance_of_every_artifact(release, shared):
    from zooforge.converters.lineage import read_lineage
    from zooforge.artifacts.provenance.statements import check_subjects, read_statements

    statements = read_statements(release / "provenance.intoto.jsonl")
    assert check_subjects(release, statements) == []
    subjects = {}
    for entry in statements:
        assert entry["_type"] == "https://in-toto.io/Statement/v1"
        assert entry["predicateType"] == "https://slsa.dev/provenance/v1"
        (subject,) = entry["subject"]
        digest = hashlib.sha256((release / subject["name"]).read_bytes()).hexdigest()
        assert subject["digest"] == {"sha256": digest}
        subjects[subject["name"]] = entry
    expected = {f"{NAME}-{o}.{ext}" for o in OPSETS for ext in ("onnx", "tar.gz")}
    expected |= {"caffe2/predict_net.pb", "caffe2/init_net.pb", "caffe2/value_info.json"}
    assert set(subjects) == expected
    sources = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in lenet_files(shared)}
    for opset in OPSETS:
        lineage = read_lineage(release / f"{NAME}-{opset}.onnx")
        assert lineage.settings["target_opset"] == opset
        assert {p.name for p in lineage.parents} == {"caffe2/predict_net.pb", "caffe2/init_net.pb"}
        for parent in lineage.parents:
            assert parent.sha256 == hashlib.sha256((release / parent.name).read_bytes()).hexdigest()
        assert {s.name: s.sha256 for s in lineage.sources} == sources
        deps = subjects[f"{NAME}-{opset}.onnx"]["predicate"]["buildDefinition"]["resolvedDependencies"]
        assert {d["name"]: d["digest"]["sha256"] for d in deps if d["annotations"]["role"] == "source"} == sources
