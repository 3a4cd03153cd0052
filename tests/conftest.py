"""Shared fixtures: the real models and data in ``../shared``, and an ONNX Runtime helper."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
import pytest

from shared_paths import SHARED, SHARED_MISSING, SHARED_VARIABLE, on_ci


def pytest_configure(config) -> None:
    """On CI (``CI=true``) a missing ``../shared`` fails the run at once instead of skipping."""
    if on_ci() and not SHARED.is_dir():
        raise pytest.UsageError(
            f"CI=true but the real models and data are missing: no folder {SHARED} "
            f"(lay ../shared beside the clone or set {SHARED_VARIABLE})"
        )


def shared_work_scope(fixture_name: str, config) -> str:
    """Scope of a fixture that runs project code many tests then judge: once per module, except
    under mutation testing (mutmut sets MUTANT_UNDER_TEST), where each test must run that code
    itself, or mutmut charges it all to the first test and tries its mutants against that one only.
    """
    return "function" if os.environ.get("MUTANT_UNDER_TEST") else "module"


def build_lenet_release(shared: Path, out: Path) -> Path:
    """The trained LeNet released at opsets 9 and 12 (zoo names, one test set of inputs in [0, 1))."""
    from zooforge.artifacts.release.build import ReleaseOptions, build_release
    from zooforge.artifacts.release.source import caffe_source
    from zooforge.artifacts.release.testdata import InputRecipe
    from zooforge.converters.api import ConvertOptions

    folder = shared / "caffe" / "trained" / "lenet_mnist_v2"
    source = caffe_source(folder / "lenet.prototxt", folder / "lenet_iter_10000.caffemodel",
                          ConvertOptions(names="zoo"))
    build_release(source, ReleaseOptions(name="lenet", opsets=(9, 12), quantize=(), test_sets=1,
                                         recipe=InputRecipe(0, 0.0, 1.0)), out)
    return out


@pytest.fixture(scope="session")
def shared() -> Path:
    """``<repo root>/../shared``; tests that use it skip when it is absent."""
    if not SHARED.is_dir():
        pytest.skip(SHARED_MISSING)
    return SHARED


def ort_session(model: onnx.ModelProto | Path | str):
    """A CPU-only ONNX Runtime session for a model in memory or on disk."""
    import onnxruntime as ort

    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def run_onnx(model, feeds: Mapping[str, np.ndarray], session=None) -> dict[str, np.ndarray]:
    """Run ``model`` (or a ready ``session``) on ``feeds``; outputs by graph output name."""
    session = session or ort_session(model)
    names = [output.name for output in session.get_outputs()]
    values = session.run(names, {k: np.asarray(v, np.float32) for k, v in feeds.items()})
    return dict(zip(names, values))


@pytest.fixture(scope="session")
def onnx_session():
    """``ort_session`` as a fixture, so test modules need not import conftest."""
    return ort_session


@pytest.fixture(scope="session")
def onnx_run():
    """``run_onnx`` as a fixture."""
    return run_onnx


@pytest.fixture(scope="session")
def real_caffe2():
    """The REAL historical Caffe2 (torch 1.10.2, Python 3.8) in its own interpreter.

    Built on first use by ``shared/tools/caffe2-historical-setup.sh`` (CI builds it beforehand);
    tests skip only where no Python 3.8 interpreter or no ``../shared`` exists.
    """
    from real_caffe2 import RealCaffe2, Unavailable, environment

    try:
        env = environment()
    except Unavailable as exc:
        if os.environ.get("ZOOFORGE_REQUIRE_REAL_CAFFE2") == "1":  # CI: the oracle must be there
            pytest.fail(f"real Caffe2 is required here (ZOOFORGE_REQUIRE_REAL_CAFFE2=1): {exc}")
        pytest.skip(str(exc))
    real = RealCaffe2(env)
    yield real
    real.close()


LIGHT_ALEXNET = Path("onnx") / "light" / "light_bvlc_alexnet.onnx"
LIGHT_INPUT_SCALE = 128.0  # Caffe-preprocessed pixels: large enough for LRN's alpha term to matter
LIGHT_LOGIT_GAIN = 0.05  # fc8: logits of standard deviation ~5 (measured 4.8), softmax not saturated


def randomize_light_weights(model: onnx.ModelProto, seed: int = 0) -> onnx.ModelProto:
    """A copy of the light zoo AlexNet whose ConstantOfShape weights (every one 0.02, so every
    class gets 1/1000 whatever the graph computes) become seeded random initializers.

    Kernels are He-normal (std sqrt(2 / fan_in)), keeping activations near the input's RMS (~74
    for LIGHT_INPUT_SCALE) through every ReLU layer; the layer feeding the Softmax gets
    ``LIGHT_LOGIT_GAIN / sqrt(fan_in)``; biases are N(0, 1). The initializers are also listed as
    graph inputs, as IR 3 requires."""
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(seed)
    shapes = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    producers = {out: node for node in model.graph.node for out in node.output}
    (softmax,) = [n for n in model.graph.node if n.op_type == "Softmax"]
    logit_weight = producers[softmax.input[0]].input[1]
    constants = [n for n in model.graph.node if n.op_type == "ConstantOfShape"]
    weights = []
    for node in constants:
        shape = tuple(int(d) for d in shapes[node.input[0]])
        if len(shape) == 1:
            array = rng.standard_normal(shape, dtype=np.float32)
        else:
            gain = LIGHT_LOGIT_GAIN if node.output[0] == logit_weight else np.sqrt(2.0)
            array = rng.standard_normal(shape, dtype=np.float32) * np.float32(gain / np.sqrt(np.prod(shape[1:])))
        weights.append(numpy_helper.from_array(array, node.output[0]))
    gone = {n.input[0] for n in constants}
    randomized = onnx.ModelProto()
    randomized.CopyFrom(model)
    graph = randomized.graph
    nodes = [n for n in graph.node if n.op_type != "ConstantOfShape"]
    initializers = [t for t in graph.initializer if t.name not in gone] + weights
    inputs = [i for i in graph.input if i.name not in gone]
    inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in weights]
    for field, values in ((graph.node, nodes), (graph.initializer, initializers), (graph.input, inputs)):
        del field[:]
        field.extend(values)
    return randomized


def light_input(seed: int) -> np.ndarray:
    """A seeded input for the light AlexNet, uniform in +-LIGHT_INPUT_SCALE."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-LIGHT_INPUT_SCALE, LIGHT_INPUT_SCALE, (1, 3, 224, 224)).astype(np.float32)


@pytest.fixture(scope="session")
def light_random(shared: Path, tmp_path_factory) -> Path:
    """``randomize_light_weights`` of the light zoo AlexNet, saved to a temporary file; checked to
    give an informative output (neither 1/1000 everywhere nor a saturated softmax)."""
    model = randomize_light_weights(onnx.load(str(shared / LIGHT_ALEXNET)))
    onnx.checker.check_model(model)
    path = tmp_path_factory.mktemp("light_random") / "light_bvlc_alexnet_random.onnx"
    onnx.save(model, str(path))
    (prob,) = run_onnx_file(path, {"data_0": light_input(0)})
    assert 0.05 < float(prob.max()) < 0.95 and float(prob.min()) < 1e-4, (prob.max(), prob.min())
    return path


def run_onnx_file(path, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """onnxruntime on a model file; outputs in the graph's order, inputs fed by name."""
    session = ort_session(path)
    names = {i.name for i in session.get_inputs()}
    return session.run(None, {k: v for k, v in feeds.items() if k in names})


@pytest.fixture(scope="module")
def opencv_alexnet(tmp_path_factory: pytest.TempPathFactory):
    """OpenCV's Caffe importer on the built-in AlexNet (its prototxt, its seeded weights as a .caffemodel)."""
    cv2 = pytest.importorskip("cv2", reason="OpenCV (opencv-python-headless<5) is not installed")
    if not hasattr(cv2.dnn, "readNetFromCaffe"):
        pytest.skip(f"OpenCV {cv2.__version__} has no Caffe importer (removed in 5.0)")
    from zooforge.converters.builtin import BUILTIN_MODELS, load_builtin
    from zooforge.converters.caffe.weights import write_caffemodel

    caffemodel = tmp_path_factory.mktemp("alexnet") / "alexnet.caffemodel"
    write_caffemodel(load_builtin("alexnet"), caffemodel)
    return cv2.dnn.readNetFromCaffe(str(BUILTIN_MODELS["alexnet"].prototxt), str(caffemodel))
