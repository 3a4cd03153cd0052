"""zoo-validate on the zoo's other layouts: a model folder or tarball whose top folder holds any single
``*.onnx`` (``<name>/<name>.onnx``, ``model/<name>.onnx``) beside its test sets, as onnx/models' own
scripts accept; two models in one folder are refused by name; hostile tarballs of the new layouts are
still refused. The models and expected outputs are onnx's own backend-test data in ../shared."""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner
import onnx
from onnx import numpy_helper

from zooforge.artifacts.validation.validate_cli import main

REAL = Path("onnx") / "pytorch-converted" / "test_Conv2d_groups"  # opset 6: reference + onnxruntime-lifted
NAME = "test_Conv2d_groups"


def validate(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def zoo_folder(shared: Path, dest: Path, model_name: str = f"{NAME}.onnx") -> Path:
    """onnx's real backend-test folder, its model renamed ``model_name``."""
    shutil.copytree(shared / REAL, dest)
    for path in [dest, *dest.rglob("*")]:  # ../shared is read-only; the copy must be writable
        path.chmod(0o755 if path.is_dir() else 0o644)
    (dest / "model.onnx").rename(dest / model_name)
    return dest


def tarball(folder: Path, archive: Path, top: str) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=top)
    return archive


@pytest.mark.parametrize("top", [NAME, "model"])
def test_tarball_whose_top_folder_holds_one_named_model(shared: Path, tmp_path: Path, top: str) -> None:
    archive = tarball(zoo_folder(shared, tmp_path / "m"), tmp_path / f"{NAME}.tar.gz", top)
    result = validate(archive)
    assert result.exit_code == 0, result.output
    assert f"PASS  {archive} / test_data_set_0" in result.output  # the set was really run
    assert "passed: 2 model/test set/runtime run(s)" in result.output  # reference and onnxruntime-lifted


def test_the_named_model_is_really_compared(shared: Path, tmp_path: Path) -> None:
    """The same layout with one expected value off fails, naming the output: the model was run."""
    folder = zoo_folder(shared, tmp_path / "m")
    output = folder / "test_data_set_0" / "output_0.pb"
    tensor = numpy_helper.to_array(onnx.load_tensor_from_string(output.read_bytes()))
    wrong = tensor.copy()
    wrong.flat[0] += 1.0
    output.write_bytes(numpy_helper.from_array(wrong).SerializeToString())
    result = validate(tarball(folder, tmp_path / "m.tar.gz", NAME))
    assert result.exit_code == 1, result.output
    assert "FAILED" in result.output and "test_data_set_0" in result.output


def test_model_folder_with_a_named_model(shared: Path, tmp_path: Path) -> None:
    folder = zoo_folder(shared, tmp_path / NAME)
    for path in (folder, folder / f"{NAME}.onnx"):
        result = validate(path)
        assert result.exit_code == 0, result.output
        assert f"PASS  {folder} / test_data_set_0" in result.output


def test_a_macos_companion_file_is_not_a_second_model(shared: Path, tmp_path: Path) -> None:
    folder = zoo_folder(shared, tmp_path / "m")
    (folder / f"._{NAME}.onnx").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    result = validate(tarball(folder, tmp_path / "m.tar.gz", NAME))
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("as_tarball", [True, False])
def test_two_models_in_one_folder_are_refused_by_name(shared: Path, tmp_path: Path, as_tarball: bool) -> None:
    folder = zoo_folder(shared, tmp_path / NAME)
    shutil.copyfile(folder / f"{NAME}.onnx", folder / "model.onnx")
    path = tarball(folder, tmp_path / "two.tar.gz", NAME) if as_tarball else folder
    result = validate(path)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert f"holds 2 .onnx files (model.onnx, {NAME}.onnx)" in result.output


def test_release_folder_with_named_model_tarball_and_its_standalone_copy(shared: Path, tmp_path: Path) -> None:
    folder = zoo_folder(shared, tmp_path / "m")
    release = tmp_path / "release"
    release.mkdir()
    tarball(folder, release / f"{NAME}.tar.gz", NAME)
    shutil.copyfile(folder / f"{NAME}.onnx", release / f"{NAME}.onnx")
    assert validate(release).exit_code == 0
    (release / f"{NAME}.onnx").write_bytes((shared / "onnx" / "simple" / "test_single_relu_model"
                                           / "model.onnx").read_bytes())
    result = validate(release)
    assert result.exit_code == 1, result.output
    assert f"{NAME}.onnx: standalone model differs from the one in the tarball" in result.output


def _member(tar: tarfile.TarFile, name: str, data: bytes = b"", **fields: object) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in fields.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data) if data else None)


@pytest.mark.parametrize("hostile", ["link-model", "dotdot", "absolute"])
def test_hostile_tarballs_of_the_new_layout_are_still_refused(shared: Path, tmp_path: Path, hostile: str) -> None:
    folder = zoo_folder(shared, tmp_path / "m")
    archive = tmp_path / "hostile.tar.gz"
    victim = tmp_path / "victim.onnx"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder / "test_data_set_0", arcname=f"{NAME}/test_data_set_0")
        model = (folder / f"{NAME}.onnx").read_bytes()
        if hostile == "link-model":
            _member(tar, f"{NAME}/{NAME}.onnx", type=tarfile.SYMTYPE, linkname=str(shared / REAL / "model.onnx"))
        elif hostile == "dotdot":
            _member(tar, f"{NAME}/../../victim.onnx", model)
        else:
            _member(tar, str(victim), model)
    result = validate(archive)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "error:" in result.output
    assert not victim.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hostile.tar.gz", "m"]
