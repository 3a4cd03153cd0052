"""One import package, ``zooforge``: the installed layout, its one-way dependencies and its front door.

The wheel test builds zooforge's wheel and sdist, installs the wheel into a fresh virtual environment
beside PyPI's ``artifacts`` (ForensicArtifacts) and ``converters`` projects, which claim the top-level
names zooforge's folders have, converts LeNet, uninstalls them, and converts again.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pytest

import zooforge
from shared_paths import on_ci

REPO = Path(__file__).resolve().parents[1]
SUBPACKAGES = ("converters", "versioning", "artifacts")
# The design's one-way dependencies: a package may import only those after it.
ORDER = ("artifacts", "converters", "versioning")


def _modules(folder: str) -> list[Path]:
    return sorted(p for p in (REPO / folder).rglob("*.py") if "__pycache__" not in p.parts)


def _imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", ORDER)
def test_dependencies_run_one_way(package):
    """artifacts -> converters -> versioning: nothing imports a package before it in that order."""
    forbidden = tuple(f"zooforge.{name}" for name in ORDER[: ORDER.index(package)])
    offenders = [f"{path.relative_to(REPO)} imports {name}" for path in _modules(package)
                 for name in _imported(path) if name.startswith(forbidden)]
    assert not offenders


def test_nothing_imports_the_old_top_level_names():
    """Every import of zooforge's code goes through ``zooforge.``: a bare ``converters`` would be PyPI's."""
    files = [p for folder in (*SUBPACKAGES, "zooforge", "tests", "scripts", "benchmarks") for p in _modules(folder)]
    offenders = [f"{path.relative_to(REPO)}: {name}" for path in files for name in _imported(path)
                 if name.split(".")[0] in SUBPACKAGES]
    assert not offenders


def test_every_package_folder_is_installed_under_zooforge():
    settings = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))["tool"]["setuptools"]
    assert settings["package-dir"] == {"zooforge": "zooforge", **{f"zooforge.{p}": p for p in SUBPACKAGES}}
    folders = {"zooforge"} | {
        "zooforge." + init.parent.relative_to(REPO).as_posix().replace("/", ".")
        for package in SUBPACKAGES for init in (REPO / package).rglob("__init__.py")
    }
    assert set(settings["packages"]) == folders


def test_front_door_names_resolve():
    assert sorted(zooforge.__all__) == sorted(set(zooforge.__all__))
    for name in zooforge.__all__:
        assert getattr(zooforge, name) is not None, name
    assert issubclass(zooforge.ZooforgeError, Exception)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        zooforge.nothing  # noqa: B018
    assert (REPO / "zooforge" / "py.typed").is_file()


def test_front_door_refuses_in_one_sentence(tmp_path):
    with pytest.raises(zooforge.ZooforgeError, match=r"^give MODEL and WEIGHTS"):
        zooforge.convert(tmp_path / "deploy.prototxt", output=tmp_path / "m.onnx")
    with pytest.raises(zooforge.ZooforgeError, match="opset 2"):
        zooforge.convert(builtin="alexnet", output=tmp_path / "m.onnx", to_opset=2)
    with pytest.raises(zooforge.ZooforgeError, match="--optimize needs opset 7"):
        zooforge.convert(builtin="alexnet", output=tmp_path / "m.onnx", to_opset=6, optimize=True)
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize(("settings", "said"), [
    ({"name": "../evil"}, "release name '../evil' must be 1-100 letters"),
    ({"name": "a/b"}, "release name 'a/b' must be"),
    ({"title": "A|B"}, "release title 'A|B' must be 1-100 characters without '|'"),
])
def test_front_door_refuses_a_bad_release_name_or_title(tmp_path, settings, said):
    """The library, not only the command, refuses names that would become paths (the CLI's checks are its)."""
    with pytest.raises(zooforge.ZooforgeError, match=re.escape(said)):
        zooforge.package(out=tmp_path / "release", opsets=(12,), quantize=(), **settings)
    assert list(tmp_path.iterdir()) == []


def _lenet(shared: Path) -> tuple[Path, Path]:
    folder = shared / "caffe" / "trained" / "lenet_mnist_v2"
    return folder / "lenet.prototxt", folder / "lenet_iter_10000.caffemodel"


def test_front_door_convert_matches_opencv(shared, tmp_path):
    """zooforge.convert's LeNet on onnxruntime gives OpenCV's Caffe importer's probabilities."""
    cv2 = pytest.importorskip("cv2")
    import onnxruntime as ort

    prototxt, weights = _lenet(shared)
    output = tmp_path / "lenet.onnx"
    result = zooforge.convert(prototxt, weights, output=output, to_opset=9)
    assert output.is_file() and result.model is not None
    image = np.random.default_rng(0).uniform(0, 1, (1, 1, 28, 28)).astype(np.float32)
    session = ort.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: image})
    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(weights))
    net.setInput(image)
    expected = net.forward()
    np.testing.assert_allclose(got.reshape(expected.shape), expected, rtol=1e-5, atol=1e-6)


def test_front_door_package_then_validate(shared, tmp_path):
    prototxt, weights = _lenet(shared)
    summary = zooforge.package(prototxt, weights, out=tmp_path / "release", name="lenet", opsets=(9, 12),
                               quantize=(), test_sets=1)
    assert {p.name for p in summary.files} >= {"lenet-9.onnx", "lenet-12.tar.gz", "manifest.json"}
    report = zooforge.validate(tmp_path / "release", runtimes=["onnxruntime"])
    assert report.passed and len(report.sets) == 2  # 2 opsets x 1 test set x 1 runtime
    with pytest.raises(zooforge.ZooforgeError):
        zooforge.validate(tmp_path / "absent")


def _pip(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), "-m", "pip", "--disable-pip-version-check", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.slow
def test_wheel_installs_beside_pypi_artifacts_and_converters(shared, tmp_path):
    """The wheel's only top-level package is zooforge; PyPI's artifacts and converters neither break nor
    are broken by it, installed beside it or removed after it."""
    dist = tmp_path / "dist"
    built = subprocess.run([sys.executable, "-m", "build", "--wheel", "--sdist", "--outdir", str(dist), str(REPO)],
                           cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    if built.returncode != 0 and not on_ci() and "Could not find a version" in built.stdout + built.stderr:
        pytest.skip("the package index is unreachable: cannot install the build backend")
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = dist.glob("zooforge-*.whl")
    (sdist,) = dist.glob("zooforge-*.tar.gz")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert {name.split("/")[0] for name in names} == {"zooforge", wheel.name.split("-py3")[0] + ".dist-info"}
    assert "zooforge/py.typed" in names and "zooforge/converters/caffe/proto/caffe.desc" in names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    with tarfile.open(sdist) as archive:
        members = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"LICENSE", "docs/provenance-format.md", "zooforge/py.typed", "tests/test_packaging.py"} <= members

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    others = _pip(python, "install", "--no-deps", "--ignore-installed", "artifacts", "converters", cwd=tmp_path)
    if others.returncode != 0 and not on_ci():
        pytest.skip(f"cannot install PyPI's artifacts and converters: {others.stderr.strip()[-300:]}")
    assert others.returncode == 0, others.stderr
    mine = _pip(python, "install", "--no-deps", "--ignore-installed", str(wheel), cwd=tmp_path)
    assert mine.returncode == 0, mine.stderr
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run([str(python), "-c", "import artifacts, converters, zooforge.converters.api as a; "
                            "print(artifacts.__file__); print(converters.__file__); print(a.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=True)
    theirs_artifacts, theirs_converters, ours = where.stdout.split()
    assert ours.startswith(str(venv)) and "zooforge" in Path(ours).parts
    assert "zooforge" not in theirs_artifacts and "zooforge" not in theirs_converters

    prototxt, weights = _lenet(shared)

    def convert(output: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(venv / "bin" / "zoo-convert"), str(prototxt), str(weights), "-o", output],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)

    first = convert("beside.onnx")
    assert first.returncode == 0, first.stderr
    removed = _pip(python, "uninstall", "-y", "artifacts", "converters", cwd=tmp_path)
    assert removed.returncode == 0, removed.stderr
    second = convert("after.onnx")
    assert second.returncode == 0, second.stderr
    assert (tmp_path / "beside.onnx").read_bytes() == (tmp_path / "after.onnx").read_bytes()
