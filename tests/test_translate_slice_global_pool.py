"""Tests aimed at mutants of the Caffe -> NetDef translator (``converters/caffe2/translate.py``) that
survived the second mutmut run: the unknown-type sentence, global pooling, Softmax along the last
axis, Slice's refusals, weight names, helper blobs whose names a Caffe blob already holds, and
synthetic weights, which now refuse the blob counts Caffe refuses as translate() does.

Expected values are independent of the code under test: real Caffe2 running the NetDef we write
(``real_caffe2``), the real historical ``caffe_translator`` (``real_caffe2.translate``), Caffe's
own checks (BVLC ``slice_layer.cpp``: ``CHECK_GT(slice_point_[i], prev)``, "should evenly divide"),
the README's list of supported layers, the Caffe2 zoo's lower-case weight names, NumPy formulas
and sentences written out by hand.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from zooforge.converters.builtin import synthetic_weights
from zooforge.converters.caffe.weights import write_caffemodel
from zooforge.converters.caffe2.netdef import op_args, read_netdef
from zooforge.converters.errors import ZooforgeError

from test_netdef_mutants import X, _layer, _net, _refusal, _translated

OTHER = np.random.default_rng(12).normal(size=X.shape).astype(np.float32)

# The README's "Supported Caffe layers" (input layers aside), in Python's sorted order.
SUPPORTED = ("AbsVal, ArgMax, Axpy, BNLL, BatchNorm, Bias, Concat, Convolution, ConvolutionDepthwise, Crop, "
             "Deconvolution, DetectionOutput, Dropout, ELU, Eltwise, Exp, Flatten, InnerProduct, LRN, Log, Normalize, "
             "PReLU, Permute, Pooling, Power, PriorBox, ReLU, Reshape, Scale, ShuffleChannel, Sigmoid, Slice, Softmax, "
             "Split, TanH, Upsample")


def test_an_unknown_layer_type_is_refused_with_every_supported_type() -> None:
    message = _refusal(_layer("Foo", name="mystery"))
    assert message == f"layer 'mystery' has type 'Foo', which zooforge cannot convert; supported types: {SUPPORTED}"


# -- global pooling ---------------------------------------------------------------------------------

GLOBAL = "pooling_param {{ pool: {} global_pooling: true }}"


@pytest.mark.parametrize("pool, reduce", [("MAX", np.max), ("AVE", np.mean)])
def test_global_pooling_named_pool_runs_on_real_caffe2(real_caffe2, pool: str, reduce) -> None:
    """Real Caffe2 refuses a kernel-less pooling operator whose name holds "Pool" ("you will need to
    set explicitly the kernel size"), global_pooling or not."""
    model = _translated(_layer("Pooling", GLOBAL.format(pool), name="Pool5"))
    got = real_caffe2.run(model, {"data": X})["y"]
    np.testing.assert_allclose(got, reduce(X, axis=(2, 3), keepdims=True), rtol=1e-6, atol=1e-7)


def test_global_pooling_writes_order_and_global_pooling_as_caffe_translator(real_caffe2, tmp_path: Path) -> None:
    layer = _layer("Pooling", GLOBAL.format("AVE"), name="pool5")
    prototxt, caffemodel = tmp_path / "net.prototxt", tmp_path / "net.caffemodel"
    prototxt.write_text(f'name: "t" input: "data" input_shape {{ dim: 1 dim: 4 dim: 6 dim: 6 }}\n{layer}')
    write_caffemodel({}, caffemodel)
    (theirs,) = read_netdef(real_caffe2.translate(prototxt, caffemodel, tmp_path / "c2")[0]).op
    (ours,) = _translated(layer).predict_net.op
    keys = ("order", "global_pooling")
    assert {k: op_args(ours)[k] for k in keys} == {k: op_args(theirs)[k] for k in keys} == \
        {"order": "NCHW", "global_pooling": 1}


# -- Softmax ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("axis", [-1, 3])
def test_softmax_along_the_last_of_four_axes_on_real_caffe2(real_caffe2, axis: int) -> None:
    """Caffe2's Softmax flattens from its axis (default 1) on: the last axis must be said."""
    got = real_caffe2.run(_translated(_layer("Softmax", f"softmax_param {{ axis: {axis} }}")), {"data": X})["y"]
    e = np.exp(X.astype(np.float64) - X.max(axis=3, keepdims=True))
    np.testing.assert_allclose(got, e / e.sum(axis=3, keepdims=True), rtol=1e-5, atol=1e-7)


# -- Slice's refusals: Caffe's SliceLayer checks, one sentence each --------------------------------

@pytest.mark.parametrize("params, tops, reason", [
    ("axis: 4", ("a", "b"), "axis 4 is out of range for a 4-D input (-4 to 3)"),
    ("slice_dim: 4", ("a", "b"), "slice_dim 4 is out of range for a 4-D input (-4 to 3)"),
    ("slice_point: 1 slice_point: 2", ("a", "b"), "2 slice points for 2 tops"),
    ("slice_point: 0", ("a", "b"), "slice points [0] do not increase within 4"),
    ("slice_point: 2 slice_point: 2", ("a", "b", "c"), "slice points [2, 2] do not increase within 4"),
    ("", ("a", "b", "c"), "dimension 4 does not split evenly into 3 tops"),
], ids=["axis", "slice-dim", "point-count", "point-zero", "point-repeated", "uneven"])
def test_slice_refusals_name_the_layer_and_the_reason(params: str, tops: tuple[str, ...], reason: str) -> None:
    message = _refusal(_layer("Slice", f"slice_param {{ {params} }}", tops=tops))
    assert message == f"layer 'l' (Slice): {reason}"


# -- names ------------------------------------------------------------------------------------------

def test_weights_are_named_layer_and_a_lower_case_suffix() -> None:
    """The Caffe2 zoo's style (conv1_w, conv1_b): PReLU's slope, Scale's factor and bias."""
    prelu = _translated(_layer("PReLU", name="p"), {"p": [np.full(4, 0.25, np.float32)]})
    scale = _translated(_layer("Scale", "scale_param { bias_term: true }"),
                        {"l": [np.ones(4, np.float32), np.zeros(4, np.float32)]})
    assert (sorted(prelu.weights), sorted(scale.weights)) == (["p_slope"], ["l_b", "l_w"])


@pytest.mark.parametrize("layer, weights, blob, expected", [
    (_layer("Power", "power_param { power: 2 scale: 2 }", name="p"), {}, "_p_base", (2 * X) ** 2),
    (_layer("Scale", "scale_param { bias_term: true }", name="p"),
     {"p": [np.full(4, 3, np.float32), np.ones(4, np.float32)]}, "_p_scaled", 3 * X + 1),
], ids=["power-base", "scale-product"])
def test_a_helper_blob_never_overwrites_a_caffe_blob_of_its_name(real_caffe2, layer, weights, blob, expected):
    """Caffe blob names are free: an input named like a layer's helper blob keeps its own values."""
    model = _translated(layer + _layer("Eltwise", bottoms=("y", blob), tops=("z",), name="e"), weights,
                        {"data": X.shape, blob: X.shape})
    got = real_caffe2.run(model, {"data": X, blob: OTHER})["z"]
    np.testing.assert_allclose(got, expected + OTHER, rtol=1e-5, atol=1e-5)


# -- synthetic weights refuse the blob counts Caffe refuses, as translate() does -------------------

@pytest.mark.parametrize("layer, sentence", [
    (_layer("ReLU", "relu_param { negative_slope: 0.1 }", ("data", "data")),
     "layer 'l' (ReLU) takes 1 bottom blob(s), as Caffe requires, found 2"),
    (_layer("Flatten", "flatten_param { axis: 2 }", ("data", "data")),
     "layer 'l' (Flatten) takes 1 bottom blob(s), as Caffe requires, found 2"),
], ids=["leaky-relu-2-bottoms", "flatten-2-bottoms"])
def test_synthetic_weights_refuse_a_layer_with_more_bottoms_than_caffe_allows(layer: str, sentence: str) -> None:
    """Caffe's NeuronLayer and FlattenLayer: ExactNumBottomBlobs 1."""
    with pytest.raises(ZooforgeError) as caught:
        synthetic_weights(_net(layer), seed=0)
    assert str(caught.value) == sentence
