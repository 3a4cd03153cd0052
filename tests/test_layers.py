"""Layer-by-layer agreement with independent oracles, for every Caffe layer type zooforge converts.

Each case is a small V2 net (Input layers, then the layer under test with one of its important
options), with seeded weights from ``synthetic_weights`` (or hand-made blobs) written as a real
``.caffemodel`` and read back. The final outputs of

* OpenCV's Caffe importer (``cv2.dnn.readNetFromCaffe``, an independent Caffe implementation),
* a NumPy reference written here from Caffe's documented formula (for the layers where that is a
  one-liner, and for those OpenCV lacks or gets wrong),
* zooforge's Caffe2 executor (``run_net`` on the translated NetDef),
* ONNX Runtime on the exported model at opset 12, 13 and the newest opset onnx knows,

must agree. The reference is the NumPy one when a case has it, else OpenCV; when both exist they
are checked against each other too. Tolerance: ``max|x - ref| <= 1e-5 * max(1, max|ref|)``, i.e.
an absolute 1e-5 for outputs of magnitude <= 1 and a relative 1e-5 of the largest magnitude for
larger outputs (Exp, Power, Deconvolution, ... reach a few units).

Run with ``-s`` to get the table of maximum errors per case and leg when the module ends.
"""


from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from zooforge.converters.api import convert_caffe_net
from zooforge.converters.caffe.loader import load_caffe
from zooforge.converters.caffe.weights import write_caffemodel
from zooforge.converters.caffe2.executor import run_net
from zooforge.converters.caffe2.translate import TRANSLATORS
from zooforge.converters.api import ConvertOptions
from zooforge.converters.errors import CaffeModelError, ExportError, UnsupportedLayerError
from zooforge.versioning import latest_opset

from conftest import ort_session
from layer_cases import COVERED_ELSEWHERE, CASES, Case, Prepared, _layer, layer_types, prepare

TOLERANCE = 1e-5
OPSETS = sorted({12, 13, latest_opset()})

ERRORS: dict[str, dict[str, float | str]] = {}


def _opencv(prepared: Prepared) -> tuple[dict[str, np.ndarray] | None, str]:
    """OpenCV's outputs, or None and the reason it cannot give them."""
    case = prepared.case
    if case.opencv_skip:
        return None, case.opencv_skip
    try:
        import cv2
    except ImportError:
        return None, "OpenCV (opencv-python-headless<5) is not installed"
    if not hasattr(cv2.dnn, "readNetFromCaffe"):
        return None, f"OpenCV {cv2.__version__} has no Caffe importer (removed in 5.0)"
    caffemodel = prepared.caffemodel
    if any(blob.ndim == 0 for blobs in prepared.table.values() for blob in blobs):
        # OpenCV 4.x cannot read a 0-d blob (Caffe's own form of a shared PReLU slope): give it (1,).
        caffemodel = caffemodel.with_name("opencv.caffemodel")
        write_caffemodel({k: [b.reshape(b.shape or (1,)) for b in v] for k, v in prepared.table.items()}, caffemodel)
    try:
        if prepared.table:
            net = cv2.dnn.readNetFromCaffe(str(prepared.prototxt), str(caffemodel))
        else:
            net = cv2.dnn.readNetFromCaffe(str(prepared.prototxt))
        for name, value in prepared.feeds.items():
            net.setInput(value, name)
        # OpenCV names outputs by layer: fetch every top of the producing layers
        # (OpenCV 4.14 names a layer with one top after that top)
        known = set(net.getLayerNames())
        pins = [_producer(case, top) for top in case.outputs]
        pins = [(top, 0) if layer not in known and top in known else (layer, index)
                for (layer, index), top in zip(pins, case.outputs)]
        layers = sorted({layer for layer, _ in pins})
        retrieved = dict(zip(layers, net.forwardAndRetrieve(layers)))
        values = [retrieved[layer][index] for layer, index in pins]
    except cv2.error as exc:
        message = str(exc).strip().splitlines()[-1]
        if "Can't create layer" in message:  # the layer type is unknown to OpenCV
            return None, f"OpenCV {cv2.__version__} lacks the layer: {message}"
        raise
    return dict(zip(case.outputs, values)), ""


def _producer(case: Case, top: str) -> tuple[str, int]:
    for match in re.finditer(r'layer \{ name: "(\w+)"[^\n]*', case.layers):
        tops = re.findall(r'top: "(\w+)"', match.group(0))
        if top in tops:
            found = (match.group(1), tops.index(top))
    return found


def _max_error(ours: np.ndarray, ref: np.ndarray, where: str) -> float:
    assert tuple(ours.shape) == tuple(ref.shape), f"{where}: shape {ours.shape} != reference {ref.shape}"
    error = float(np.max(np.abs(ours.astype(np.float64) - ref))) if ref.size else 0.0
    bound = TOLERANCE * max(1.0, float(np.max(np.abs(ref))) if ref.size else 1.0)
    assert error <= bound, f"{where}: max abs error {error:.3g} > {bound:.3g}"
    return error


def _reference(prepared: Prepared, opencv: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    if prepared.numpy is not None:
        return prepared.numpy
    assert opencv is not None, f"{prepared.case.id}: no reference (OpenCV unavailable, no NumPy formula)"
    return opencv


def _record(case_id: str, leg: str, outputs: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> None:
    ERRORS.setdefault(case_id, {})[leg] = max(
        _max_error(np.asarray(outputs[name]), np.asarray(ref[name], np.float64), f"{case_id} [{leg}] {name}")
        for name in ref
    )


_OPENCV_CACHE: dict[Path, tuple[dict[str, np.ndarray] | None, str]] = {}  # by file: one per session


def _opencv_cached(prepared: Prepared) -> tuple[dict[str, np.ndarray] | None, str]:
    if prepared.caffemodel not in _OPENCV_CACHE:
        _OPENCV_CACHE[prepared.caffemodel] = _opencv(prepared)
    return _OPENCV_CACHE[prepared.caffemodel]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_opencv(case: Case, tmp_path_factory: pytest.TempPathFactory) -> None:
    """OpenCV agrees with the NumPy formula (where the case has none, OpenCV is the reference)."""
    prepared = prepare(case, tmp_path_factory)
    opencv, reason = _opencv_cached(prepared)
    if opencv is None:
        ERRORS.setdefault(case.id, {})["opencv"] = "skipped"
        pytest.skip(reason)
    if prepared.numpy is None:
        ERRORS.setdefault(case.id, {})["opencv"] = "reference"
        return
    _record(case.id, "opencv", opencv, prepared.numpy)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_executor(case: Case, tmp_path_factory: pytest.TempPathFactory) -> None:
    """zooforge's Caffe2 executor on the translated NetDef agrees with the reference."""
    prepared = prepare(case, tmp_path_factory)
    ref = _reference(prepared, _opencv_cached(prepared)[0])
    ours = run_net(prepared.conversion(12).caffe2, prepared.feeds)
    _record(case.id, "executor", ours, ref)


@pytest.mark.parametrize("opset", OPSETS, ids=[f"opset{o}" for o in OPSETS])
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_onnx_runtime(case: Case, opset: int, tmp_path_factory: pytest.TempPathFactory) -> None:
    """ONNX Runtime on the exported model agrees with the reference."""
    prepared = prepare(case, tmp_path_factory)
    ref = _reference(prepared, _opencv_cached(prepared)[0])
    model = prepared.conversion(opset).onnx_model
    try:
        session = ort_session(model)
    except Exception as exc:  # noqa: BLE001 - ORT's errors have no common type
        message = str(exc)
        if opset > 13 and re.search(r"opset|NOT_IMPLEMENTED|implementation", message, re.I):
            ERRORS.setdefault(case.id, {})[f"ort{opset}"] = "skipped"
            pytest.skip(f"ONNX Runtime refuses opset {opset}: {message.strip().splitlines()[0][:300]}")
        raise
    # zoo-style ONNX names: a blob's n-th value is ``<blob>_<n>`` (inputs ``_0``)
    feeds = {_zoo_name(session.get_inputs(), name): value for name, value in prepared.feeds.items()}
    outputs = {name: _zoo_name(session.get_outputs(), name) for name in case.outputs}
    values = session.run(list(outputs.values()), feeds)
    _record(case.id, f"ort{opset}", dict(zip(outputs, values)), ref)


def _zoo_name(args: list[Any], blob: str) -> str:
    (name,) = [arg.name for arg in args if re.fullmatch(rf"{re.escape(blob)}_\d+", arg.name)]
    return name


def test_every_translator_has_a_case() -> None:
    covered = set().union(*(layer_types(case) for case in CASES), COVERED_ELSEWHERE)
    missing = sorted(set(TRANSLATORS) - covered)
    assert not missing, f"layer types with a translator but no case in test_layers.py: {missing}"


def test_unsupported_layer_names_layer_and_type(tmp_path: Path) -> None:
    prototxt = tmp_path / "mvn.prototxt"
    prototxt.write_text(
        'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 4 dim: 9 dim: 11 } } }\n'
        + _layer("MVN", name="norm")
    )
    with pytest.raises(UnsupportedLayerError, match=r"layer 'norm' has type 'MVN'"):
        convert_caffe_net(load_caffe(prototxt, None))


# -- refusals of the forks' layers (issue 13) ----------------------------------------------------

_W4 = {"dw": [np.ones((4, 1, 3, 3), np.float32), np.zeros(4, np.float32)]}  # what the fork's layer holds


def _net(tmp_path: Path, layers: str, inputs: dict[str, tuple[int, ...]] | None = None,
         weights: dict[str, list[np.ndarray]] | None = None):
    head = "".join(
        f'layer {{ name: "{name}" type: "Input" top: "{name}" input_param {{ shape {{ '
        + " ".join(f"dim: {d}" for d in shape) + " } } }\n"
        for name, shape in (inputs or {"data": (1, 4, 9, 11)}).items()
    )
    prototxt = tmp_path / "net.prototxt"
    prototxt.write_text(head + layers)
    if weights:
        write_caffemodel(weights, tmp_path / "net.caffemodel")
    return load_caffe(prototxt, tmp_path / "net.caffemodel" if weights else None)


FORK_REFUSALS = {
    # id: (layers, inputs or None, error type, the sentence's words[, weights])
    "pooling-round-mode-contradicts-ceil-mode": (
        _layer("Pooling", "pooling_param { pool: MAX kernel_size: 3 stride: 2 round_mode: CEIL ceil_mode: false }",
               name="pool"), None, CaffeModelError,
        "layer 'pool' (Pooling): round_mode CEIL (BVLC) and ceil_mode false (the forks') contradict each other"),
    "pooling-floor-round-mode-contradicts-ceil-mode-true": (
        _layer("Pooling", "pooling_param { pool: AVE kernel_size: 3 stride: 2 round_mode: FLOOR ceil_mode: true }",
               name="pool"), None, CaffeModelError,
        "layer 'pool' (Pooling): round_mode FLOOR (BVLC) and ceil_mode true (the forks') contradict each other"),
    "shuffle-group-does-not-divide": (
        _layer("ShuffleChannel", "shuffle_channel_param { group: 3 }", name="shuffle"), None, CaffeModelError,
        "layer 'shuffle' (ShuffleChannel): group 3 does not divide the 4 channels of 'data' [1, 4, 9, 11]"),
    "shuffle-group-0": (
        _layer("ShuffleChannel", "shuffle_channel_param { group: 0 }", name="shuffle"), None, CaffeModelError,
        "layer 'shuffle' (ShuffleChannel): group 0 does not divide"),
    "permute-duplicate-axis": (
        _layer("Permute", "permute_param { order: 0 order: 2 order: 2 }", name="perm"), None, CaffeModelError,
        "layer 'perm' (Permute): permute_param order [0, 2, 2] is not a list of distinct axes of a 4-D input"),
    "permute-axis-out-of-range": (
        _layer("Permute", "permute_param { order: 0 order: 4 }", name="perm"), None, CaffeModelError,
        "layer 'perm' (Permute): permute_param order [0, 4] is not a list of distinct axes of a 4-D input (0 to 3)"),
    "depthwise-num-output-differs": (
        _layer("ConvolutionDepthwise", "convolution_param { num_output: 8 kernel_size: 3 }", name="dw"), None,
        CaffeModelError, "layer 'dw' (ConvolutionDepthwise): num_output 8 differs from the input's 4 channels", _W4),
    "depthwise-group-differs": (
        _layer("ConvolutionDepthwise", "convolution_param { group: 2 kernel_size: 3 }", name="dw"), None,
        CaffeModelError, "layer 'dw' (ConvolutionDepthwise): group 2 differs from the input's 4 channels", _W4),
    "convolution-group-does-not-divide": (
        _layer("Convolution", "convolution_param { num_output: 6 group: 4 kernel_size: 3 }", name="conv"), None,
        CaffeModelError, "layer 'conv' (Convolution): group 4 does not divide 4 input and 6 output channels",
        {"conv": [np.ones((6, 1, 3, 3), np.float32), np.zeros(6, np.float32)]}),
    "upsample-segnet-two-bottoms": (
        _layer("Upsample", "upsample_param { scale: 2 }", bottoms=("data", "mask"), name="up"),
        {"data": (1, 4, 9, 11), "mask": (1, 4, 9, 11)}, UnsupportedLayerError,
        "layer 'up' (Upsample) has 2 bottoms: SegNet's max-unpooling Upsample (a pooling mask as second bottom) "
        "cannot be converted"),
    "upsample-scale-0": (
        _layer("Upsample", "upsample_param { scale: 0 }", name="up"), None, CaffeModelError,
        "layer 'up' (Upsample): upsample_param.scale must be at least 1, found 0"),
    "upsample-of-a-2d-blob": (
        _layer("Upsample", "upsample_param { scale: 2 }", name="up"), {"data": (1, 4)}, CaffeModelError,
        "layer 'up' (Upsample): Upsample takes a 4-axis (num, channels, height, width) input"),
    "axpy-scale-of-other-channels": (
        _layer("Axpy", bottoms=("a", "data", "other"), name="axpy"),
        {"a": (1, 3, 1, 1), "data": (1, 4, 9, 11), "other": (1, 4, 9, 11)}, CaffeModelError,
        "layer 'axpy' (Axpy): the scale bottom 'a' has shape [1, 3, 1, 1]; Axpy needs [1, 4] or [1, 4, 1, 1]"),
    "axpy-scale-not-per-channel": (
        _layer("Axpy", bottoms=("a", "data", "other"), name="axpy"),
        {"a": (1, 4, 9, 1), "data": (1, 4, 9, 11), "other": (1, 4, 9, 11)}, CaffeModelError,
        "the scale bottom 'a' has shape [1, 4, 9, 1]"),
    "axpy-x-and-y-differ": (
        _layer("Axpy", bottoms=("a", "data", "other"), name="axpy"),
        {"a": (1, 4, 1, 1), "data": (1, 4, 9, 11), "other": (1, 4, 9, 10)}, CaffeModelError,
        "layer 'axpy' (Axpy): bottoms 'data' [1, 4, 9, 11] and 'other' [1, 4, 9, 10] must share one shape"),
    "axpy-two-bottoms": (
        _layer("Axpy", bottoms=("a", "data"), name="axpy"), {"a": (1, 4, 1, 1), "data": (1, 4, 9, 11)},
        CaffeModelError, "layer 'axpy' (Axpy) takes 3 bottom blob(s), as Caffe requires, found 2"),
}


@pytest.mark.parametrize("case", list(FORK_REFUSALS))
def test_fork_layer_refusals_are_one_sentence(case: str, tmp_path: Path) -> None:
    layers, inputs, error, words, *weights = FORK_REFUSALS[case]
    with pytest.raises(error) as caught:
        convert_caffe_net(_net(tmp_path, layers, inputs, *weights))
    message = str(caught.value)
    assert words in message and "\n" not in message, message


@pytest.mark.parametrize("opset", [3, 6])
def test_upsample_below_opset_7_names_layer_type_and_opset(opset: int, tmp_path: Path) -> None:
    net = _net(tmp_path, _layer("Upsample", "upsample_param { scale: 2 }", name="up"))
    with pytest.raises(ExportError) as caught:
        convert_caffe_net(net, ConvertOptions(opset=opset))
    message = str(caught.value)
    assert "'up'" in message and "Upsample" in message and "needs opset 7 or later" in message, message
    assert f"opset {opset}" in message and "\n" not in message


@pytest.fixture(scope="module", autouse=True)
def _print_errors():
    yield
    if not ERRORS:
        return
    legs = ["opencv", "executor", *(f"ort{o}" for o in OPSETS)]
    lines = ["", f"{'case':32} " + " ".join(f"{leg:>9}" for leg in legs)]
    for case in CASES:
        row = ERRORS.get(case.id, {})
        cells = []
        for leg in legs:
            value = row.get(leg, "-")
            cells.append(f"{value:9.1e}" if isinstance(value, float) else f"{str(value)[:9]:>9}")
        lines.append(f"{case.id:32} " + " ".join(cells))
    lines += [f"{case}: OpenCV skipped: {reason}" for case, (out, reason) in _OPENCV_CACHE.items() if out is None]
    print("\n".join(lines))
