"""Tests aimed at mutants of the Caffe -> NetDef translator (``converters/caffe2/translate.py``) that
survived the second mutmut run: ceil-mode pooling whose last window lies past the input, helper blob
names that a Caffe blob already has, the names of the weights a layer adds, and refusal sentences.

Expected values are independent of the code under test: real Caffe2 running the NetDef we write
(``real_caffe2``), Caffe's pooling rule (ceil rounding, last window clipped only when padded) worked by
hand, NumPy formulas, and sentences and names worked out from Caffe's layer checks and the naming rule.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_netdef_mutants import _layer, _refusal, _translated

X = np.random.default_rng(23).normal(size=(1, 4, 6, 6)).astype(np.float32)


def test_ceil_pooling_with_a_last_window_past_the_input_is_translated(real_caffe2) -> None:
    """Kernel 2, stride 4 on 4x4: Caffe gives ceil((4 - 2) / 4) + 1 = 2 windows per axis (no pad, so
    the second, starting at 4, is kept); no explicit pad fits, so the legacy form must be written."""
    x = X[:, :2, :4, :4]
    model = _translated(_layer("Pooling", "pooling_param { pool: MAX kernel_size: 2 stride: 4 }"),
                        inputs={"data": (1, 2, 4, 4)})
    got = real_caffe2.run(model, {"data": x})["y"]
    assert got.shape == (1, 2, 2, 2)
    np.testing.assert_array_equal(got[:, :, 0, 0], x[:, :, :2, :2].max(axis=(2, 3)))


HELPER_BLOBS = [  # (a layer that makes a helper blob, the name Translation.temp gives it)
    (_layer("Pooling", "pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 }", name="p"), "_p_kernel_mean"),
    (_layer("Concat", bottoms=("data", "data"), name="c"), "_c_split_info"),
]


@pytest.mark.parametrize("layer, taken", HELPER_BLOBS, ids=["pooling", "concat"])
def test_a_caffe_blob_named_like_a_helper_blob_keeps_its_value(real_caffe2, layer: str, taken: str) -> None:
    """Caffe allows any blob name: a net output '_p_kernel_mean' made before layer 'p' stays relu(x)."""
    model = _translated(_layer("ReLU", tops=(taken,), name="r") + layer)
    got = real_caffe2.run(model, {"data": X}, fetch=[taken])[taken]
    np.testing.assert_array_equal(got, np.maximum(X, 0))


BN_BLOBS = [np.array([0.5, -1, 2, 0], np.float32), np.array([1, 2, 0.5, 4], np.float32), np.array([2], np.float32)]


@pytest.mark.parametrize("layer, weights, names", [
    (_layer("BatchNorm", name="bn"), {"bn": BN_BLOBS}, ["bn_s", "bn_b", "bn_rm", "bn_riv"]),
    (_layer("Pooling", "pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 }", name="p"), None,
     ["p_divisor_fix"]),
], ids=["batch_norm", "pooling"])
def test_the_weights_a_layer_adds_are_named_after_it(layer: str, weights: dict | None, names: list[str]) -> None:
    """The init net's blobs (the NetDef's external inputs) are '<layer>_<role>'."""
    model = _translated(layer, weights)
    assert list(model.weights) == names
    assert list(model.predict_net.external_input) == ["data", *names]


@pytest.mark.parametrize("kind", ["Scale", "Bias"])
@pytest.mark.parametrize("num_axes", [3, -2])
def test_a_num_axes_that_does_not_fit_names_num_axes_axis_and_rank(kind: str, num_axes: int) -> None:
    """Caffe's Scale/Bias: num_axes >= -1 and axis + num_axes <= bottom rank (here axis 2 of a 4-D input)."""
    param = f"{kind.lower()}_param {{ axis: 2 num_axes: {num_axes} }}"
    message = _refusal(_layer(kind, param), {"l": [np.ones(4, np.float32)]})
    assert f"layer 'l' ({kind}): num_axes {num_axes} from axis 2 does not fit a 4-D input" in message


@pytest.mark.parametrize("param", ["top_k: 2", "out_max_val: true"])
def test_argmax_beyond_top_1_without_values_is_refused_with_a_sentence(param: str) -> None:
    message = _refusal(_layer("ArgMax", f"argmax_param {{ {param} }}"))
    assert "layer 'l' (ArgMax): only top_k 1 without out_max_val is supported" in message
