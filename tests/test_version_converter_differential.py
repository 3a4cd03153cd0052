"""A second opinion on zooforge's opset converter: wherever ``onnx.version_converter`` succeeds
on a model and target opset, its result and zooforge's compute the same outputs (onnxruntime from
opset 7; below it the reference evaluator with zooforge's legacy kernels, which both run through).
Where it refuses, zooforge must still convert; the refusals are printed (``-s``) for the record."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import version_converter

from zooforge.converters.api import ConvertOptions, convert_builtin, convert_caffe
from zooforge.versioning import latest_opset
from zooforge.versioning.convert import convert_opset, model_opset
from zooforge.versioning.runtime import run_with

TOLERANCE = 1e-6  # both are float32 graphs of the same operators: differences are ulp-level
SMALL_TARGETS = tuple(range(3, latest_opset() + 1))
ALEXNET_TARGETS = (3, 6, 7, 8, 12, 17)


def _sources(shared: Path) -> dict[str, tuple[onnx.ModelProto, tuple[int, ...], float]]:
    trained = shared / "caffe" / "trained"
    lenet = convert_caffe(trained / "lenet_mnist_v2/lenet.prototxt", trained / "lenet_mnist_v2/lenet_iter_10000.caffemodel",
                          ConvertOptions(opset=9))
    cifar = convert_caffe(trained / "v1_binaries/cifar10_full.prototxt",
                          trained / "v1_binaries/cifar10_full_iter_70000.caffemodel", ConvertOptions(opset=9))
    return {"lenet-9": (lenet.onnx_model, SMALL_TARGETS, 1.0), "cifar10_full-9": (cifar.onnx_model, SMALL_TARGETS, 128.0)}


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    runtime = "onnxruntime" if model_opset(model) >= 7 else "reference"
    (out,) = run_with(runtime, model, {model.graph.input[0].name: x}).values()
    return out


def _differential(name: str, model: onnx.ModelProto, targets: tuple[int, ...], scale: float) -> dict[int, str]:
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(9).uniform(-scale, scale, shape).astype(np.float32)
    outcome = {}
    for target in targets:
        ours = convert_opset(model, target)  # zooforge converts every one of them
        try:
            theirs = version_converter.convert_version(model, target)
        except Exception as exc:  # noqa: BLE001 - the converter's C++ assertions have no common type
            outcome[target] = "refused: " + str(exc).strip().splitlines()[0].split(": ", 2)[-1][:90]
            continue
        error = float(np.abs(_run(ours, x).astype(np.float64) - _run(theirs, x)).max())
        assert error <= TOLERANCE, f"{name} -> opset {target}: zooforge and onnx.version_converter differ by {error:.3g}"
        outcome[target] = f"agree ({error:.1e})"
    print(f"\n[version_converter] {name}: " + "; ".join(f"{t}: {o}" for t, o in outcome.items()))
    assert any(o.startswith("agree") for o in outcome.values()), f"{name}: nothing to compare"
    return outcome


@pytest.mark.parametrize("name", ["lenet-9", "cifar10_full-9"])
def test_small_nets_every_opset(shared: Path, name: str) -> None:
    model, targets, scale = _sources(shared)[name]
    _differential(name, model, targets, scale)


@pytest.mark.slow  # about 40 s: onnx's version_converter on the 233 MiB AlexNet, six opsets
def test_alexnet_from_opset_9(shared: Path) -> None:
    model = convert_builtin("alexnet", ConvertOptions(opset=9, input_shapes=(1, 3, 227, 227))).onnx_model
    outcome = _differential("bvlcalexnet-9", model, ALEXNET_TARGETS, 128.0)
    assert all(o.startswith("agree") for o in outcome.values()), outcome  # as measured for the issue


def test_alexnet_from_opset_12_is_refused_by_version_converter_only(shared: Path) -> None:
    model = convert_builtin("alexnet", ConvertOptions(opset=12, input_shapes=(1, 3, 227, 227))).onnx_model
    with pytest.raises(Exception, match="No Adapter To Version \\$11 for Dropout"):
        version_converter.convert_version(model, 9)
    assert model_opset(convert_opset(model, 9)) == 9
