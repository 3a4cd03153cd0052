"""SSD's Normalize and PriorBox (issue 13) beyond the shared layer cases: the ONNX legacy opsets,
a batch of two, and the refusals (each one sentence naming the layer and its type).

The layer cases themselves (``SSD_CASES`` in ``layer_cases.py``) run in ``test_layers.py`` (OpenCV,
NumPy transcriptions of Caffe's C++, the executor, onnxruntime at 12, 13 and the newest opset) and
``test_caffe2_conformance.py`` (real Caffe2); here the same cases go through onnxruntime at the
opsets where the handlers they use change (7, 9, 11: ReduceSum's attribute form) and through
zooforge's reference runtime at opsets 3 and 6 (legacy broadcasting, batch 1).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from zooforge.converters.api import ConvertOptions, convert_caffe_net
from zooforge.converters.caffe.loader import load_caffe
from zooforge.converters.caffe.weights import write_caffemodel
from zooforge.converters.caffe2.executor import run_net
from zooforge.converters.errors import CaffeModelError, ExportError, UnsupportedLayerError
from zooforge.versioning.runtime import run_with

from conftest import ort_session
from layer_cases import SSD_CASES, _normalize_ref, prepare

TOLERANCE = 1e-5


def _check(ours: np.ndarray, ref: np.ndarray, where: str) -> float:
    assert ours.shape == ref.shape, f"{where}: shape {ours.shape} != {ref.shape}"
    error = float(np.max(np.abs(ours.astype(np.float64) - ref)))
    assert error <= TOLERANCE * max(1.0, float(np.max(np.abs(ref)))), f"{where}: max abs error {error:.3g}"
    return error


def _zoo(names: list[str], blob: str) -> str:
    (name,) = [n for n in names if re.fullmatch(rf"{re.escape(blob)}_\d+", n)]
    return name


@pytest.mark.parametrize("opset", [7, 9, 11])
@pytest.mark.parametrize("case", SSD_CASES, ids=[c.id for c in SSD_CASES])
def test_onnx_runtime_at_older_opsets(case, opset, tmp_path_factory) -> None:
    prepared = prepare(case, tmp_path_factory)
    session = ort_session(prepared.conversion(opset).onnx_model)
    inputs = [i.name for i in session.get_inputs()]
    feeds = {_zoo(inputs, name): value for name, value in prepared.feeds.items() if any(
        re.fullmatch(rf"{re.escape(name)}_\d+", i) for i in inputs)}
    (value,) = session.run([_zoo([o.name for o in session.get_outputs()], "y")], feeds)
    _check(value, prepared.numpy["y"], f"{case.id} opset {opset}")


@pytest.mark.parametrize("opset", [3, 6])
@pytest.mark.parametrize("case", SSD_CASES, ids=[c.id for c in SSD_CASES])
def test_reference_runtime_at_legacy_opsets(case, opset, tmp_path_factory) -> None:
    """Batch 1: the norm (1, 1, H, W) or (1, 1, 1, 1) broadcasts in ONNX's legacy form too."""
    prepared = prepare(case, tmp_path_factory)
    model = prepared.conversion(opset).onnx_model
    inputs = [i.name for i in model.graph.input]
    feeds = {_zoo(inputs, name): value for name, value in prepared.feeds.items()
             if any(re.fullmatch(rf"{re.escape(name)}_\d+", i) for i in inputs)}
    outputs = run_with("reference", model, feeds)
    _check(np.asarray(outputs[_zoo(list(outputs), "y")]), prepared.numpy["y"], f"{case.id} opset {opset}")


# -- a batch of two --------------------------------------------------------------------------------

_HEAD = 'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 4 dim: 9 dim: 11 } } }\n'


def _normalize_net(tmp_path: Path, params: str, blob: np.ndarray) -> tuple[Path, Path]:
    prototxt = tmp_path / "norm.prototxt"
    prototxt.write_text(_HEAD + f'layer {{ name: "conv4_3_norm" type: "Normalize" bottom: "data" top: "y" '
                        f"norm_param {{ {params} }} }}\n")
    weights = tmp_path / "norm.caffemodel"
    write_caffemodel({"conv4_3_norm": [blob]}, weights)
    return prototxt, weights


@pytest.mark.parametrize("across", [False, True], ids=["spatial", "across"])
def test_batch_of_two(tmp_path, across) -> None:
    scale = np.random.default_rng(3).uniform(10, 30, 4).astype(np.float32)
    prototxt, weights = _normalize_net(tmp_path, f"across_spatial: {str(across).lower()} channel_shared: false",
                                       scale)
    x = np.random.default_rng(4).uniform(-2, 2, (2, 4, 9, 11)).astype(np.float32)
    ref = _normalize_ref(across)({"data": x}, {"layer": [scale]})["y"]
    net = load_caffe(prototxt, weights, {"data": (2, 4, 9, 11)})
    _check(run_net(convert_caffe_net(net, ConvertOptions(opset=13)).caffe2, {"data": x})["y"], ref, "executor")
    for opset in (7, 13):
        session = ort_session(convert_caffe_net(net, ConvertOptions(opset=opset)).onnx_model)
        (value,) = session.run(None, {session.get_inputs()[0].name: x})
        _check(value, ref, f"onnxruntime opset {opset}")


def test_batch_of_two_per_position_is_refused_before_opset_7(tmp_path) -> None:
    """(2, 1, H, W) onto (2, C, H, W) is NumPy broadcasting only: the Div of the layer says so."""
    prototxt, weights = _normalize_net(tmp_path, "across_spatial: false channel_shared: false",
                                       np.full(4, 20, np.float32))
    net = load_caffe(prototxt, weights, {"data": (2, 4, 9, 11)})
    with pytest.raises(ExportError, match=r"^layer 'conv4_3_norm' \(Normalize\): Div 'conv4_3_norm_\d+': shape "
                                          r"\[2, 1, 9, 11\] broadcasts onto \[2, 4, 9, 11\] in a way ONNX before "
                                          r"opset 7 cannot express$"):
        convert_caffe_net(net, ConvertOptions(opset=6))


# -- refusals --------------------------------------------------------------------------------------

_PRIOR_HEAD = ('layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 8 dim: 5 dim: 5 } } }\n'
               'layer { name: "image" type: "Input" top: "image" input_param { shape { dim: 1 dim: 3 dim: 300 dim: 300 } } }\n')

PRIOR_REFUSALS = {
    # id: (prior_box_param text, error type, what the sentence says after the layer)
    "no-min-size": ("max_size: 60 variance: 0.1", CaffeModelError, "min_size is required"),
    "max-below-min": ("min_size: 60 max_size: 30", CaffeModelError, "max_size 30 must be greater than min_size 60"),
    "max-equal-min": ("min_size: 60 max_size: 60", CaffeModelError, "max_size 60 must be greater than min_size 60"),
    "two-max-one-min": ("min_size: 30 max_size: 60 max_size: 90", CaffeModelError,
                        "2 max_size values for 1 min_size values"),
    "variance-2": ("min_size: 30 variance: 0.1 variance: 0.2", CaffeModelError, "2 variance values; Caffe takes 1 or 4"),
    "variance-3": ("min_size: 30 variance: 0.1 variance: 0.1 variance: 0.2", CaffeModelError,
                   "3 variance values; Caffe takes 1 or 4"),
    "variance-0": ("min_size: 30 variance: 0", CaffeModelError, "variance 0 must be positive"),
    "min-size-negative": ("min_size: -30", CaffeModelError, "min_size -30 must be positive"),
    "aspect-ratio-0": ("min_size: 30 aspect_ratio: 0", CaffeModelError, "aspect_ratio 0 must be positive"),
    "img-size-and-img-h": ("min_size: 30 img_size: 300 img_h: 300 img_w: 300", CaffeModelError,
                           "give either img_size or img_h/img_w, not both"),
    "img-h-without-img-w": ("min_size: 30 img_h: 300", CaffeModelError, "img_w 0 must be positive"),
    "step-and-step-w": ("min_size: 30 step: 8 step_h: 8 step_w: 8", CaffeModelError,
                        "give either step or step_h/step_w, not both"),
    "offset-h": ("min_size: 30 offset_h: 0.5 offset_w: 0.5", UnsupportedLayerError,
                 "offset_h (OpenCV's extension of PriorBox) cannot be converted"),
    "explicit-widths": ("width: 30 height: 30", UnsupportedLayerError,
                        "width (OpenCV's extension of PriorBox) cannot be converted"),
}


@pytest.mark.parametrize("case", list(PRIOR_REFUSALS))
def test_prior_box_refusals(tmp_path, case) -> None:
    params, error, sentence = PRIOR_REFUSALS[case]
    prototxt = tmp_path / "prior.prototxt"
    prototxt.write_text(_PRIOR_HEAD + 'layer { name: "conv11_mbox_priorbox" type: "PriorBox" bottom: "data" '
                        f'bottom: "image" top: "y" prior_box_param {{ {params} }} }}\n')
    with pytest.raises(error, match=f"^{re.escape(f'layer {chr(39)}conv11_mbox_priorbox{chr(39)} (PriorBox): {sentence}')}$"):
        convert_caffe_net(load_caffe(prototxt, None))


NORMALIZE_REFUSALS = {
    "eps-negative": ("eps: -0.001", np.full(4, 20, np.float32), "eps -0.001 must be a finite number of at least 0"),
    "blob-per-channel-when-shared": ("channel_shared: true", np.full(4, 20, np.float32),
                                     "weight blob 0 has shape [4], expected []"),
    "blob-shared-when-per-channel": ("channel_shared: false", np.full(1, 20, np.float32),
                                     "weight blob 0 has shape [1], expected [4]"),
    "blob-of-3-for-4-channels": ("channel_shared: false", np.full(3, 20, np.float32),
                                 "weight blob 0 has shape [3], expected [4]"),
}


@pytest.mark.parametrize("case", list(NORMALIZE_REFUSALS))
def test_normalize_refusals(tmp_path, case) -> None:
    params, blob, sentence = NORMALIZE_REFUSALS[case]
    prototxt, weights = _normalize_net(tmp_path, params, blob)
    with pytest.raises(CaffeModelError, match=f"^{re.escape(f'layer {chr(39)}conv4_3_norm{chr(39)} (Normalize)')}"
                                              f"[ :]+{re.escape(sentence)}$"):
        convert_caffe_net(load_caffe(prototxt, weights))


def test_normalize_without_its_blob_is_refused(tmp_path) -> None:
    prototxt, _ = _normalize_net(tmp_path, "channel_shared: false", np.ones(4, np.float32))
    with pytest.raises(CaffeModelError, match="conv4_3_norm") as caught:
        convert_caffe_net(load_caffe(prototxt, {}))
    print(caught.value)
