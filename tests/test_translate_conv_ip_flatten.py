"""Tests aimed at second-round mutation survivors in the Caffe -> Caffe2 translators of
``converters/caffe2/translate.py`` (Convolution, LRN, InnerProduct, Eltwise, Flatten, Crop).

Expected values are independent of the code under test: real Caffe2 running the NetDef we write
(``real_caffe2``), NumPy formulas from Caffe's layer documentation (InnerProduct y = x W^T + b,
Eltwise SUM y = sum of coeff_i * x_i), Caffe's own rules (num_output 1 is allowed, Flatten's
``count(axis, end_axis + 1)`` with end_axis == axis allowed), and shapes and sentences worked out by hand.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_netdef_mutants import _layer, _ops, _refusal, _translated
from test_translate_limits import _top_shape

from zooforge.converters.caffe2.netdef import op_args

X = np.random.default_rng(23).normal(size=(1, 4, 6, 6)).astype(np.float32)
RNG = np.random.default_rng(29)
ANY_WEIGHTS = {"l": [np.zeros(1, np.float32)]}  # the refusal comes before any blob is read


def _normal(*shape: int) -> np.ndarray:
    return RNG.normal(size=shape).astype(np.float32)


# -- refusals: one sentence naming the layer and what is wrong ---------------------------------------

@pytest.mark.parametrize("params, sentence", [
    ("num_output: 2", "kernel_size is required"),
    ("num_output: 2 kernel_size: 0", "kernel_size [0, 0] must be at least 1"),
    ("num_output: 2 kernel_h: 3", "kernel_h and kernel_w must be given together"),
])
def test_a_bad_convolution_kernel_is_refused_against_the_layer(params: str, sentence: str) -> None:
    message = _refusal(_layer("Convolution", f"convolution_param {{ {params} }}"), ANY_WEIGHTS)
    assert message == f"layer 'l' (Convolution): {sentence}"


def test_flatten_with_end_axis_before_axis_is_refused_with_both_axes() -> None:
    message = _refusal(_layer("Flatten", "flatten_param { axis: 2 end_axis: 1 }"))
    assert message == "layer 'l' (Flatten): end_axis 1 comes before axis 2"


def test_crop_of_bottoms_with_different_ranks_is_refused_with_both_ranks() -> None:
    """Caffe's CropLayer: CHECK_EQ(bottom[0]->num_axes(), bottom[1]->num_axes())."""
    message = _refusal(_layer("Crop", "crop_param { axis: 2 }", ("data", "ref")),
                       inputs={"data": (1, 4, 6, 6), "ref": (4, 4)})
    assert message == "layer 'l' (Crop): bottoms of 4 and 2 dimensions"


# -- boundaries Caffe allows ----------------------------------------------------------------------

def test_a_convolution_of_one_output_channel_runs_on_real_caffe2(real_caffe2) -> None:
    """num_output 1 (a 1x1 kernel): y = sum over channels of w[c] * x[c] + b."""
    w, b = _normal(1, 4, 1, 1), _normal(1)
    model = _translated(_layer("Convolution", "convolution_param { num_output: 1 kernel_size: 1 }"),
                        {"l": [w, b]})
    conv = model.predict_net.op[0]
    assert conv.type == "Conv" and op_args(conv)["order"] == "NCHW"
    expected = np.einsum("c,nchw->nhw", w[0, :, 0, 0], X)[:, None] + b[0]
    np.testing.assert_allclose(real_caffe2.run(model, {"data": X})["y"], expected, rtol=1e-5, atol=1e-5)


def test_a_deconvolution_says_its_order() -> None:
    """Every layout-dependent operator the translator writes names NCHW, as Pooling, LRN and
    SpatialBN do."""
    model = _translated(_layer("Deconvolution", "convolution_param { num_output: 2 kernel_size: 2 bias_term: false }"),
                        {"l": [_normal(4, 2, 2, 2)]})
    deconv = model.predict_net.op[0]
    assert deconv.type == "ConvTranspose" and op_args(deconv)["order"] == "NCHW"
    assert _top_shape(model, "y") == (1, 2, 7, 7)  # (6 - 1) * 1 + 2


@pytest.mark.parametrize("bias_term", [True, False])
def test_inner_product_of_one_output_with_or_without_bias_on_real_caffe2(real_caffe2, bias_term: bool) -> None:
    """Caffe's InnerProduct: y = x.reshape(N, -1) @ W.T (+ b); without a bias term Caffe2's FC gets zeros."""
    w, b = _normal(1, 144), _normal(1)
    params = f"inner_product_param {{ num_output: 1 bias_term: {str(bias_term).lower()} }}"
    model = _translated(_layer("InnerProduct", params), {"l": [w, b] if bias_term else [w]})
    expected = X.reshape(1, -1) @ w.T + (b if bias_term else 0.0)
    np.testing.assert_allclose(real_caffe2.run(model, {"data": X})["y"], expected, rtol=1e-5, atol=1e-4)


def test_eltwise_sum_with_no_coefficient_of_one_scales_every_bottom(real_caffe2) -> None:
    """Caffe's Eltwise SUM: y = 2 * x + 3 * x = 5 * x (each bottom its own product, summed)."""
    model = _translated(_layer("Eltwise", "eltwise_param { operation: SUM coeff: 2 coeff: 3 }", ("data", "data")))
    assert [op.type for op in model.predict_net.op] == ["Mul", "Mul", "Sum"]
    np.testing.assert_allclose(real_caffe2.run(model, {"data": X})["y"], 5 * X, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("params, expected", [
    ("axis: 1 end_axis: 1", (1, 4, 6, 6)),  # count(1, 2) = 4: nothing merged
    ("axis: 2 end_axis: 2", (1, 4, 6, 6)),
    ("axis: 1 end_axis: 2", (1, 24, 6)),
    ("axis: 0 end_axis: 1", (4, 6, 6)),
])
def test_flatten_keeps_the_axes_after_end_axis(params: str, expected: tuple[int, ...]) -> None:
    """Caffe's FlattenLayer::Reshape: shape[:axis] + [count(axis, end_axis + 1)] + shape[end_axis + 1:]."""
    assert _top_shape(_translated(_layer("Flatten", f"flatten_param {{ {params} }}")), "y") == expected


# -- names --------------------------------------------------------------------------------------------

def test_within_channel_lrn_names_its_constants_after_the_layer() -> None:
    """The constants of 1 + alpha * mean and of -beta * log are weights ``<layer>_base0``,
    ``<layer>_base1`` and ``<layer>_exponent0`` (named as the layer's other chained constants)."""
    model = _translated(_layer("LRN", "lrn_param { norm_region: WITHIN_CHANNEL local_size: 3 }", name="norm"))
    assert sorted(model.weights) == ["norm_base0", "norm_base1", "norm_exponent0"]
    assert [op[0] for op in _ops(model)] == ["Mul", "AveragePool", "Mul", "Add", "Log", "Mul", "Exp", "Mul"]


def test_inner_product_of_more_than_int64_inputs_names_the_exact_count() -> None:
    """Two (1, 2^62, 1) bottoms concatenated give 2^63 inputs per row, past int64: the expected
    weight shape is [1, 2^63], not a wrapped negative count."""
    layers = (_layer("Concat", bottoms=("data", "data"), tops=("c",), name="c")
              + _layer("InnerProduct", "inner_product_param { num_output: 1 }", ("c",), ("z",), "l"))
    message = _refusal(layers, {"l": [_normal(1, 4), _normal(1)]}, {"data": (1, 2**62, 1)})
    assert message == f"layer 'l' (InnerProduct): weight blob 0 has shape [1, 4], expected [1, {2**63}]"
