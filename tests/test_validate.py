"""zoo-validate: the real ONNX backend-test folders pass, corrupted data fails by name, unusable
input exits 2, reports round-trip through JSON and re-threshold, legacy unnamed sets map by position."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from zooforge.artifacts.validation.parity import (
    RethresholdError,
    Tolerance,
    ValidationReport,
    compare_output,
    validate_path,
)
from zooforge.artifacts.validation.validate_cli import main
from conftest import SHARED

REPO = Path(__file__).resolve().parents[1]
BACKEND_GROUPS = ("pytorch-converted", "pytorch-operator", "simple")
BACKEND_FOLDERS = sorted(
    f"{group}/{p.name}"
    for group in BACKEND_GROUPS
    if (SHARED / "onnx" / group).is_dir()
    for p in (SHARED / "onnx" / group).iterdir()
    if (p / "model.onnx").is_file()
)
RELU = "simple/test_single_relu_model"  # opset 9, named tensors: runs on onnxruntime and the reference
CONV = "pytorch-converted/test_Conv2d"  # opset 6, unnamed tensors: reference evaluator only


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def copy_folder(shared: Path, rel: str, tmp_path: Path) -> Path:
    dest = tmp_path / Path(rel).name
    shutil.copytree(shared / "onnx" / rel, dest)
    for p in [dest, *dest.rglob("*")]:  # ../shared is read-only; the copy must be writable
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dest


def make_tarball(folder: Path, archive: Path, top: str = "top") -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=top)
    return archive


# --------------------------------------------------------------------------- (a), (c) real folders


@pytest.mark.parametrize("rel", BACKEND_FOLDERS)
def test_backend_folder_passes_in_every_runtime(shared: Path, rel: str) -> None:
    report = validate_path(shared / "onnx" / rel)
    assert report.passed, report.failures()
    opset = onnx.load(shared / "onnx" / rel / "model.onnx", load_external_data=False).opset_import[0].version
    expected = {"onnxruntime", "reference"} if opset >= 7 else {"reference", "onnxruntime-lifted"}
    assert {s.runtime for s in report.sets} == expected
    assert all(o.compared for s in report.sets for o in s.outputs)


def test_backend_groups_cover_what_the_brief_names(shared: Path) -> None:
    groups = {rel.split("/")[0] for rel in BACKEND_FOLDERS}
    assert groups == set(BACKEND_GROUPS)
    assert len(BACKEND_FOLDERS) >= 38  # 30 pytorch-converted, 7 pytorch-operator, 1 simple


def test_cli_on_a_collection_folder_exits_0(shared: Path) -> None:
    result = invoke(shared / "onnx" / "pytorch-operator")
    assert result.exit_code == 0, result.output
    assert result.output.count("PASS") == 14  # 7 opset-6 folders, each on reference and onnxruntime-lifted
    assert "FAIL" not in result.output


# --------------------------------------------------------------------------- (b) a flipped byte


def flip_output_byte(folder: Path) -> tuple[int, ...]:
    """Flip a mantissa bit of the largest expected value of output_0.pb; return its index."""
    path = folder / "test_data_set_0" / "output_0.pb"
    data = bytearray(path.read_bytes())
    tensor = onnx.load_tensor(str(path))
    values = numpy_helper.to_array(tensor)
    assert tensor.raw_data and values.dtype == np.float32
    index = int(np.argmax(np.abs(values)))
    start = bytes(data).find(tensor.raw_data)
    assert start >= 0
    data[start + 4 * index + 2] ^= 0x01  # mantissa bit 16: a relative change of 2**-8 .. 2**-7
    path.write_bytes(bytes(data))
    changed = numpy_helper.to_array(onnx.load_tensor(str(path)))
    assert abs(changed.flat[index] - values.flat[index]) > 1e-3 * abs(values.flat[index]) + 1e-7
    return tuple(int(i) for i in np.unravel_index(index, values.shape))


@pytest.mark.parametrize("rel", [CONV, RELU])
def test_flipped_byte_fails_naming_model_set_and_output(shared: Path, tmp_path: Path, rel: str) -> None:
    folder = copy_folder(shared, rel, tmp_path)
    worst = flip_output_byte(folder)
    result = invoke(folder)
    assert result.exit_code == 1, result.output
    output_name = onnx.load(folder / "model.onnx").graph.output[0].name
    failing = [line for line in result.output.splitlines() if line.startswith("  ")]
    assert failing and all(f"{folder} / test_data_set_0 / {output_name}: values differ" in line for line in failing)
    report = validate_path(folder)
    assert {s.runtime for s in report.sets if not s.passed} == {s.runtime for s in report.sets}
    assert all(s.outputs[0].worst_index == worst for s in report.sets)


# --------------------------------------------------------------------------- (d) tarballs, releases


def test_tarball_validates(shared: Path, tmp_path: Path) -> None:
    archive = make_tarball(shared / "onnx" / RELU, tmp_path / "relu-9.tar.gz")
    result = invoke(archive)
    assert result.exit_code == 0, result.output
    assert f"PASS  {archive} / test_data_set_0  onnxruntime" in result.output
    assert list(tmp_path.iterdir()) == [archive]  # nothing extracted beside it


def test_release_folder_checks_standalone_models(shared: Path, tmp_path: Path) -> None:
    release = tmp_path / "release"
    release.mkdir()
    make_tarball(shared / "onnx" / RELU, release / "relu-9.tar.gz")
    make_tarball(shared / "onnx" / CONV, release / "conv-6.tgz", top="test_Conv2d")
    shutil.copyfile(shared / "onnx" / RELU / "model.onnx", release / "relu-9.onnx")
    (release / "lonely-9.onnx").write_bytes((shared / "onnx" / RELU / "model.onnx").read_bytes())
    report = validate_path(release)
    assert report.passed, report.failures()
    assert [(Path(s.model).name, s.runtime) for s in report.sets] == [
        ("conv-6.tgz", "reference"), ("conv-6.tgz", "onnxruntime-lifted"), ("relu-9.tar.gz", "onnxruntime"),
        ("relu-9.tar.gz", "reference")]
    assert any("lonely-9.onnx: no test data" in w for w in report.warnings)

    model = onnx.load(release / "relu-9.onnx")
    model.producer_name = "someone else"
    onnx.save(model, release / "relu-9.onnx")
    result = invoke(release)
    assert result.exit_code == 1
    assert f"{release}/relu-9.onnx: standalone model differs from the one in the tarball relu-9.tar.gz" in result.output


def test_release_manifest_sha_is_checked(shared: Path, tmp_path: Path) -> None:
    release = tmp_path / "release"
    release.mkdir()
    make_tarball(shared / "onnx" / RELU, release / "relu-9.tar.gz")
    shutil.copyfile(shared / "onnx" / RELU / "model.onnx", release / "relu-9.onnx")
    entry = {"model": "relu", "model_path": "relu-9.onnx",
             "metadata": {"model_sha": "0" * 64, "model_with_data_path": "relu-9.tar.gz"}}
    (release / "manifest.json").write_text(json.dumps([entry]))
    report = validate_path(release)
    assert report.failures() == [f"{release}/manifest.json: sha256 of relu-9.onnx differs from the manifest"]


# --------------------------------------------------------------------------- (e) unusable input


def test_unusable_input_exits_2_with_one_error_line(shared: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    garbage = copy_folder(shared, RELU, tmp_path)
    (garbage / "model.onnx").write_bytes(b"\x0fnot an onnx model at all\xff" * 3)
    no_sets = tmp_path / "no_sets"
    no_sets.mkdir()
    shutil.copyfile(shared / "onnx" / RELU / "model.onnx", no_sets / "model.onnx")
    bad_tar = tmp_path / "bad.tar.gz"
    bad_tar.write_bytes(b"this is not gzip")
    cases = {
        tmp_path / "missing": "does not exist",
        empty: "holds no model",
        garbage: "is not a readable ONNX model",
        no_sets: "no test_data_set_N folder",
        bad_tar: str(bad_tar),
    }
    for path, words in cases.items():
        result = invoke(path)
        assert result.exit_code == 2, (path, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], lines


def test_tarball_escaping_its_folder_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "evil.tar.gz"
    payload = tmp_path / "payload"
    payload.write_bytes(b"x")
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(payload, arcname="../escaped")
    result = invoke(archive)
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and not (tmp_path.parent / "escaped").exists()


def test_tarball_with_a_link_or_an_oversize_member_is_refused(tmp_path: Path, monkeypatch) -> None:
    import io

    link = tmp_path / "link.tar.gz"
    with tarfile.open(link, "w:gz") as tar:
        member = tarfile.TarInfo("top/model.onnx")
        member.type, member.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(member)
    result = invoke(link)
    assert result.exit_code == 2 and "symbolic link" in result.output, result.output

    big = tmp_path / "big.tar.gz"
    with tarfile.open(big, "w:gz") as tar:  # 64 MiB of zeros: a few KiB compressed
        member = tarfile.TarInfo("top/model.onnx")
        member.size = 64 * 2**20
        tar.addfile(member, io.BytesIO(bytes(member.size)))
    import zooforge.artifacts.release.tarball as tarball

    limited = tarball.safe_extract
    monkeypatch.setattr(tarball, "safe_extract", lambda a, d, **k: limited(a, d, max_bytes=2**20))
    result = invoke(big)
    assert result.exit_code == 2 and "top/model.onnx" in result.output, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.tar.gz", "link.tar.gz"]


# --------------------------------------------------------------------------- (f) JSON, re-threshold


def test_json_report_and_rethreshold(shared: Path, tmp_path: Path) -> None:
    folder = copy_folder(shared, CONV, tmp_path)
    report_path = tmp_path / "report.json"
    result = invoke(folder, "--json", report_path)
    assert result.exit_code == 0, result.output
    data = json.loads(report_path.read_text())
    (out,) = data["sets"][0]["outputs"]
    for key in ("max_abs", "max_rel", "mean_abs", "worst_index", "needed_rtol", "needed_atol"):
        assert key in out
    assert len(out["worst_index"]) == 4 and out["max_abs"] > 0  # float32 rounding vs PyTorch

    saved = ValidationReport.from_json(report_path.read_text())
    assert saved.to_dict() == data
    assert saved.rethreshold(Tolerance()).passed
    assert not saved.rethreshold(Tolerance(rtol=0.0, atol=1e-7)).passed  # atol kept: exact
    assert saved.rethreshold(Tolerance(rtol=1e-3, atol=0.0)).passed  # max_rel < rtol: exact
    per_output = Tolerance(rtol=0.0, atol=0.0, per_output={out["name"]: Tolerance(1e-3, 1e-7)})
    assert saved.rethreshold(per_output).passed
    # Each answer agrees with running the model again at that tolerance.
    for tol in (Tolerance(0.0, 1e-7), Tolerance(1e-3, 0.0), Tolerance(1e-6, 1e-7), Tolerance(1e-7, 1e-7), Tolerance(1e-3, 1e-9)):
        assert saved.rethreshold(tol).passed == validate_path(folder, tol).passed, tol

    flip_output_byte(folder)
    failing = validate_path(folder)
    assert not failing.passed
    reloaded = ValidationReport.from_json(failing.to_json())
    assert reloaded.rethreshold(Tolerance(rtol=0.01, atol=1e-7)).passed
    assert not reloaded.rethreshold(Tolerance(rtol=0.001, atol=1e-6)).passed  # rtol kept: exact
    assert reloaded.rethreshold(Tolerance(rtol=0.001, atol=1.0)).passed
    for tol in (Tolerance(0.01, 1e-7), Tolerance(0.001, 1e-6), Tolerance(0.001, 0.05), Tolerance(0.0, 0.05)):
        assert reloaded.rethreshold(tol).passed == validate_path(folder, tol).passed, tol
    with pytest.raises(RethresholdError, match="cannot decide"):
        reloaded.rethreshold(Tolerance(rtol=0.005, atol=1e-4))


def test_compare_output_semantics() -> None:
    tol = Tolerance(rtol=1e-3, atol=1e-7)
    exp = np.array([1.0, 3.0, 5.0, 0.0, -2.0], np.float32)
    assert compare_output("y", exp, exp.copy(), tol).passed
    # NaN never matches, not even NaN; an infinity fails wherever it is, expected or produced
    for position, value in ((1, np.nan), (2, np.inf), (2, -np.inf)):
        odd = exp.copy()
        odd[position] = value
        for expected, got in ((odd, odd.copy()), (exp, odd), (odd, exp)):
            report = compare_output("y", expected, got, tol)
            assert not report.passed and report.max_abs == np.inf and report.worst_index == (position,)
            assert "non-finite values" in report.reason and "NaN never matches" in report.reason
    got = exp.copy()
    got[4] = -2.0015  # |err| 1.5e-3 <= 1e-7 + 1e-3 * 2: passes
    close = compare_output("y", exp, got, tol)
    assert close.passed and close.worst_index == (4,)
    # Hand arithmetic: float32(-2.0015) = -round(2.0015 * 2**22) / 2**22 = -8394899 / 2**22
    # = -2.001499891281128, so |err| = (8394899 - 2 * 2**22) / 2**22 = 6291 / 2**22
    # = 0.0014998912811279297, and |exp| = 2.
    assert float(np.float32(-2.0015)) == -8394899 / 2**22  # float32 spacing in [2, 4) is 2**-22
    assert close.max_abs == pytest.approx(0.0014998912811279297, rel=1e-12)
    assert close.max_rel == pytest.approx(7.499456405639648e-4, rel=1e-12)  # 0.0014998912811279297 / 2
    assert close.mean_abs == pytest.approx(2.9997825622558595e-4, rel=1e-12)  # 0.0014998912811279297 / 5
    # needed_rtol: the smallest rtol passing at atol 1e-7 (module doc) = (|err| - atol) / |exp|
    assert close.needed_rtol == pytest.approx(7.498956405639648e-4, rel=1e-12)  # (0.0014998912811279297 - 1e-7) / 2
    # needed_atol: the smallest atol passing at rtol 1e-3 = max(|err| - 1e-3 * 2, 0) = 0
    assert close.needed_atol == 0.0
    assert not compare_output("y", exp, exp.astype(np.float64), tol).passed
    shape = compare_output("y", exp, exp.reshape(5, 1), tol)
    assert not shape.passed and "shape [5, 1] where [5] is expected" in shape.reason
    zero = compare_output("y", np.zeros(2, np.float32), np.array([0, 1e-6], np.float32), tol)
    assert not zero.passed and zero.max_rel == np.inf and zero.needed_rtol == np.inf
    assert json.loads(ValidationReport("p", tol).to_json())["passed"] is True


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_a_non_finite_output_never_matches_a_finite_expectation(value: float) -> None:
    """README: "NaN never matches ... an infinity, expected or produced, is a failure"."""
    expected = np.array([0.5, -1.0, 2.0], np.float32)
    got = expected.copy()
    got[1] = value
    report = compare_output("y", expected, got, Tolerance(rtol=1e-3, atol=1e-7))
    assert not report.passed and report.worst_index == (1,)
    assert "0 expected and 1 produced elements are NaN or infinite" in report.reason


def test_nan_does_not_match_nan() -> None:
    """README: "NaN never matches, not even NaN"."""
    both = np.array([0.5, np.nan], np.float32)
    report = compare_output("y", both, both.copy(), Tolerance(rtol=1e-3, atol=1e-7))
    assert not report.passed and "1 expected and 1 produced elements" in report.reason


def _identity_folder(tmp_path: Path, fed: np.ndarray, expected: np.ndarray) -> Path:
    """A model folder: y = Identity(x) at opset 13, one test set feeding ``fed``, expecting ``expected``."""
    folder = tmp_path / "identity"
    (folder / "test_data_set_0").mkdir(parents=True)
    node = onnx.helper.make_node("Identity", ["x"], ["y"])
    value = [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, list(fed.shape)) for n in "xy"]
    graph = onnx.helper.make_graph([node], "identity", value[:1], value[1:])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.save(model, str(folder / "model.onnx"))
    for kind, name, array in (("input", "x", fed), ("output", "y", expected)):
        onnx.save_tensor(numpy_helper.from_array(array, name), str(folder / "test_data_set_0" / f"{kind}_0.pb"))
    return folder


@pytest.mark.parametrize("produced", [np.nan, np.inf], ids=["nan", "inf"])
def test_validate_fails_a_model_that_produces_non_finite_values(tmp_path: Path, produced: float) -> None:
    """zoo-validate (the release parity gate's check): a NaN or infinity the model produces where
    the test data expects a finite value fails, on every runtime, naming the output."""
    expected = np.array([[0.25, 1.5, -3.0]], np.float32)
    assert validate_path(_identity_folder(tmp_path / "ok", expected, expected)).passed  # the control
    fed = expected.copy()
    fed[0, 1] = produced
    folder = _identity_folder(tmp_path, fed, expected)
    report = validate_path(folder)
    assert {s.runtime for s in report.sets} == {"onnxruntime", "reference"}
    assert not any(s.passed for s in report.sets)
    assert all(f"{folder} / test_data_set_0 / y: non-finite values" in line for line in report.failures())
    assert invoke(folder).exit_code == 1


# --------------------------------------------------------------------------- (g) legacy sets


def test_unnamed_tensors_map_by_position_with_a_warning(shared: Path, tmp_path: Path) -> None:
    folder = copy_folder(shared, RELU, tmp_path)
    for pb in (folder / "test_data_set_0").glob("*.pb"):
        tensor = onnx.load_tensor(str(pb))
        assert tensor.name in ("x", "y")
        tensor.name = ""
        onnx.save_tensor(tensor, str(pb))
    report = validate_path(folder)
    assert report.passed, report.failures()
    assert report.warnings == (f"{folder} / test_data_set_0: tensors without names (pre-2019 test data) "
                               "mapped by position: input_0.pb -> 'x', output_0.pb -> 'y'",)
    result = invoke(folder)
    assert result.exit_code == 0 and "warning:" in result.output


def test_misnamed_tensor_and_numeric_set_order(shared: Path, tmp_path: Path) -> None:
    folder = copy_folder(shared, RELU, tmp_path)
    for n in (2, 10, 9):
        shutil.copytree(folder / "test_data_set_0", folder / f"test_data_set_{n}")
    pb = folder / "test_data_set_10" / "output_0.pb"
    tensor = onnx.load_tensor(str(pb))
    tensor.name = "prob"
    onnx.save_tensor(tensor, str(pb))
    report = validate_path(folder, runtimes=["reference"])
    assert [s.test_set for s in report.sets] == [f"test_data_set_{n}" for n in (0, 2, 9, 10)]
    assert report.failures() == [
        f"{folder} / test_data_set_10: output_0.pb names output 'prob', which the graph does not have "
        "(graph outputs: 'y') (reference)"]


def test_runtime_restriction_and_subprocess(shared: Path, tmp_path: Path) -> None:
    report = validate_path(shared / "onnx" / CONV, runtimes=["onnxruntime", "reference"])
    assert [s.runtime for s in report.sets] == ["reference"]
    assert any("onnxruntime cannot run opset 6" in w for w in report.warnings)
    proc = subprocess.run(
        [sys.executable, "-m", "zooforge.artifacts.validation.validate_cli", str(shared / "onnx" / RELU), "--runtime", "onnxruntime",
         "-q", "--json", str(tmp_path / "r.json")],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and json.loads((tmp_path / "r.json").read_text())["passed"] is True
