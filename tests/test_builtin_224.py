"""The built-in AlexNet takes the ONNX zoo's interface, ``data_0: float[1, 3, 224, 224]``, with
Caffe's own pooling there; presets whose recipe fixes a size refuse a model of another size.

Expected spatial sizes are worked by hand from Caffe's rules (convolution rounds down, pooling up):
conv1 k11 s4 on 224: floor((224 - 11) / 4) + 1 = 54; pool1 k3 s2: ceil((54 - 3) / 2) + 1 = 27;
conv2 p2 k5 keeps 27; pool2: ceil((27 - 3) / 2) + 1 = 13; conv3-5 keep 13; pool5: ceil(10 / 2) + 1 = 6.
OpenCV's Caffe importer, an independent Caffe implementation, must agree.
"""

from __future__ import annotations

import sys
import subprocess
from pathlib import Path

import numpy as np
import pytest

from zooforge.artifacts.quantization.preprocess import PreprocessError, get_preset
from zooforge.artifacts.release.source import builtin_source
from zooforge.converters.api import ConvertOptions, convert_builtin
from zooforge.converters.builtin import BUILTIN_MODELS, load_builtin
from zooforge.converters.caffe2.executor import run_net
from zooforge.converters.caffe2.translate import translate

HAND_SIZES = {"conv1": 54, "pool1": 27, "conv2": 27, "pool2": 13, "conv5": 13, "pool5": 6}


def _x(shape=(1, 3, 224, 224), seed: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-128, 128, shape).astype(np.float32)


def test_default_input_is_the_zoos_224() -> None:
    net = load_builtin("alexnet")
    blobs = run_net(translate(net), {"data": _x()}, keep_all=True)
    assert blobs["data"].shape == (1, 3, 224, 224)
    assert {name: blobs[name].shape[-1] for name in HAND_SIZES} == HAND_SIZES
    assert {name: blobs[name].shape[-2] for name in HAND_SIZES} == HAND_SIZES
    assert blobs["prob"].shape == (1, 1000)


def test_release_source_defaults_to_224_and_input_shape_still_gives_227() -> None:
    assert builtin_source("alexnet", ConvertOptions(names="zoo")).input_shapes == {"data": (1, 3, 224, 224)}
    wide = builtin_source("alexnet", ConvertOptions(names="zoo", input_shapes=(1, 3, 227, 227)))
    assert wide.input_shapes == {"data": (1, 3, 227, 227)}
    assert BUILTIN_MODELS["alexnet"].input_shape == (1, 3, 224, 224)


def test_opencv_caffe_pools_224_as_worked_by_hand(opencv_alexnet) -> None:
    opencv_alexnet.setInput(_x())
    outs = opencv_alexnet.forward(["pool1", "pool2", "pool5"])
    assert [o.shape for o in outs] == [(1, 96, 27, 27), (1, 256, 13, 13), (1, 256, 6, 6)]


@pytest.mark.parametrize("opset", [9, 12])  # end padding below opset 10, ceil_mode from 10
def test_default_onnx_model_computes_what_opencv_computes(opencv_alexnet, onnx_run, opset: int) -> None:
    model = convert_builtin("alexnet", ConvertOptions(opset=opset, names="zoo")).onnx_model
    (value,) = [v for v in model.graph.input if v.name == "data_0"]
    assert [d.dim_value for d in value.type.tensor_type.shape.dim] == [1, 3, 224, 224]
    x = _x(seed=opset)
    opencv_alexnet.setInput(x)
    theirs = opencv_alexnet.forward("prob")
    (ours,) = onnx_run(model, {"data_0": x}).values()
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)


def test_compat_zoo_keeps_working_at_the_default_size() -> None:
    result = convert_builtin("alexnet", ConvertOptions(opset=9, compat="zoo"))
    assert any("pool1: 26x26 (Caffe: 27x27)" in note for note in result.notes)


# ------------------------------------------------------------------ presets that fix a size


def test_inc_alexnet_refuses_another_size_in_one_sentence() -> None:
    with pytest.raises(PreprocessError) as caught:
        get_preset("inc-alexnet", (1, 3, 227, 227))
    message = str(caught.value)
    for part in ("'inc-alexnet'", "224x224", "227x227", "--input-shape 1,3,224,224"):
        assert part in message, message
    assert "\n" not in message and message.count(". ") == 0
    assert get_preset("inc-alexnet", (1, 3, 224, 224)).resize == (224, 224)
    assert get_preset("inc-alexnet", ("N", 3, "H", "W")).resize == (224, 224)  # symbolic: the recipe's size
    assert get_preset("caffe-imagenet", (1, 3, 227, 227)).crop == (227, 227)  # follows the model by design


def test_zoo_package_refuses_a_fixed_size_preset_before_any_work(shared: Path, tmp_path: Path) -> None:
    out = tmp_path / "release"
    run = subprocess.run(
        [sys.executable, "-m", "zooforge.artifacts.release.package_cli", "--input-shape", "1,3,227,227",
         "--quantize", "none", "--opsets", "12", "--eval-dataset", str(shared / "data" / "imagenet_samples"),
         "--preprocess", "inc-alexnet", "--out", str(out), "-q"],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: preprocess 'inc-alexnet' resizes to 224x224"), lines
    assert "227x227" in lines[0]
    assert not out.exists() and list(tmp_path.iterdir()) == []
