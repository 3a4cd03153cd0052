"""Tests aimed at mutants that survived a mutmut run over the Caffe -> NetDef translator
(``converters/caffe2/translate.py``) and ``--compat zoo`` (``converters/caffe2/compat.py``).

Expected values are independent of the code under test: real Caffe2 running the NetDef we write
(``real_caffe2``), NumPy formulas from Caffe's layer documentation, Caffe's own blob counts
(its layers' ``ExactNum/Min/MaxNum{Bottom,Top}Blobs``), and shapes and sentences worked out by hand.
"""

from __future__ import annotations

import numpy as np
import pytest
from google.protobuf import text_format

from zooforge.converters.caffe import schema
from zooforge.converters.caffe.loader import build_net
from zooforge.converters.caffe2.compat import zoo_compat
from zooforge.converters.caffe2.netdef import op_args
from zooforge.converters.caffe2.translate import _BLOB_COUNTS, TRANSLATORS, Translation, _elementwise, translate
from zooforge.converters.errors import ZooforgeError

X = np.random.default_rng(11).normal(size=(1, 4, 6, 6)).astype(np.float32)


def _net(layers: str, weights: dict | None = None, inputs: dict[str, tuple[int, ...]] | None = None):
    declared = "".join(f'input: "{name}" input_shape {{ {" ".join(f"dim: {d}" for d in shape)} }}\n'
                       for name, shape in (inputs or {"data": (1, 4, 6, 6)}).items())
    return build_net(text_format.Parse(f'name: "t" {declared}{layers}', schema.NetParameter()), weights or {})


def _translated(layers: str, weights: dict | None = None, inputs: dict | None = None):
    return translate(_net(layers, weights, inputs))


def _refusal(layers: str, weights: dict | None = None, inputs: dict | None = None) -> str:
    with pytest.raises(ZooforgeError) as caught:
        _translated(layers, weights, inputs)
    return str(caught.value)


def _layer(kind: str, params: str = "", bottoms: tuple[str, ...] = ("data",), tops: tuple[str, ...] = ("y",),
           name: str = "l") -> str:
    blobs = " ".join([*(f'bottom: "{b}"' for b in bottoms), *(f'top: "{t}"' for t in tops)])
    return f'layer {{ name: "{name}" type: "{kind}" {blobs} {params} }}\n'


def _ops(model) -> list[tuple[str, list[str], list[str]]]:
    return [(op.type, list(op.input), list(op.output)) for op in model.predict_net.op]


def _conv(blob0_shape: tuple[int, ...], params: str = "num_output: 2 kernel_size: 3") -> tuple[str, dict]:
    weights = {"l": [np.zeros(blob0_shape, np.float32), np.zeros(2, np.float32)]}
    return _layer("Convolution", f"convolution_param {{ {params} }}"), weights


# -- refusals: one sentence naming the layer and what is wrong ---------------------------------------

SMALLER = _layer("Pooling", "pooling_param { pool: MAX kernel_size: 3 stride: 1 }", tops=("q",), name="p")


@pytest.mark.parametrize("name", ["sum", "a: b"])
def test_a_shape_the_executor_refuses_is_reported_against_the_layer(name: str) -> None:
    """6x6 and (6 - 3 + 1) = 4x4 bottoms cannot be summed; the executor's operator prefix is cut
    exactly, also when the layer's name itself holds ': '."""
    message = _refusal(SMALLER + _layer("Eltwise", bottoms=("data", "q"), name=name))
    assert message == f"layer '{name}' (Eltwise): inputs must share one shape, found [[1, 4, 6, 6], [1, 4, 4, 4]]"


def test_a_weight_blob_of_the_wrong_shape_names_both_shapes() -> None:
    message = _refusal(*_conv((2, 4, 3, 2)))
    assert message == "layer 'l' (Convolution): weight blob 0 has shape [2, 4, 3, 2], expected [2, 4, 3, 3]"


def test_an_axis_out_of_range_is_named_axis() -> None:
    message = _refusal(_layer("Softmax", "softmax_param { axis: 4 }"))
    assert message == "layer 'l' (Softmax): axis 4 is out of range for a 4-D input (-4 to 3)"


@pytest.mark.parametrize("stride, values", [("stride: 0", "[0, 0]"), ("stride_h: 0 stride_w: 1", "[0, 1]")])
def test_a_convolution_stride_of_zero_is_refused_for_the_stride(stride: str, values: str) -> None:
    message = _refusal(*_conv((2, 4, 3, 3), f"num_output: 2 kernel_size: 3 {stride}"))
    assert message == f"layer 'l' (Convolution): stride {values} must be at least 1"


def test_a_pooling_pad_error_names_the_layer() -> None:
    """Caffe: "pad is pad OR pad_h and pad_w are required"."""
    message = _refusal(_layer("Pooling", "pooling_param { pool: MAX kernel_size: 3 pad_h: 1 }"))
    assert message == "layer 'l' (Pooling): pad_h and pad_w must be given together"


def test_padded_average_pooling_of_a_5d_input_is_refused_with_a_sentence() -> None:
    """Caffe's Pooling: "Input must have 4 axes, corresponding to (num, channels, height, width)"."""
    message = _refusal(_layer("Pooling", "pooling_param { pool: AVE kernel_size: 3 pad: 1 }"),
                       inputs={"data": (1, 4, 6, 6, 6)})
    assert message == ("layer 'l' (Pooling): pooling takes a 4-axis (num, channels, height, width) input; "
                       "'data' has shape [1, 4, 6, 6, 6]")


def test_eltwise_coefficients_sentence_is_whole() -> None:
    message = _refusal(_layer("Eltwise", "eltwise_param { operation: MAX coeff: 1 coeff: 2 }", ("data", "data")))
    assert message == ("layer 'l' (Eltwise): 2 coefficients for 2 bottoms "
                       "(coefficients need the SUM operation and one per bottom)")


# -- Caffe's blob counts (CheckBlobCounts when Caffe sets a net up) --------------------------------

@pytest.mark.parametrize("layers, sentence", [
    (_layer("ELU", bottoms=("data", "data")), "layer 'l' (ELU) takes 1 bottom blob(s)"),
    (_layer("Split", bottoms=("data", "data"), tops=("y", "z")), "layer 'l' (Split) takes 1 bottom blob(s)"),
    (_layer("Dropout", tops=("y", "mask")), "layer 'l' (Dropout) takes 1 top blob(s)"),
    (_layer("Pooling", "pooling_param { pool: AVE kernel_size: 2 }", tops=("y", "mask")),
     "layer 'l' (Pooling) takes 1 top blob(s)"),
    (_layer("Eltwise"), "layer 'l' (Eltwise) takes at least 2 bottom blob(s)"),
    (_layer("Crop"), "layer 'l' (Crop) takes 2 bottom blob(s)"),
    (_layer("Bias", bottoms=("data", "data", "data")), "layer 'l' (Bias) takes 1 to 2 bottom blob(s)"),
    (_layer("ReLU", bottoms=()), "layer 'l' (ReLU) takes 1 bottom blob(s)"),
], ids=["elu-2-bottoms", "split-2-bottoms", "dropout-2-tops", "ave-pool-mask", "eltwise-1-bottom", "crop-1-bottom",
        "bias-3-bottoms", "relu-no-bottom"])
def test_blob_counts_caffe_refuses_are_refused(layers: str, sentence: str) -> None:
    message = _refusal(layers)
    assert message.startswith(sentence) and "as Caffe requires" in message, message


def test_batch_norm_with_a_second_top_is_refused() -> None:
    weights = {"l": [np.zeros(4, np.float32), np.ones(4, np.float32), np.ones(1, np.float32)]}
    message = _refusal(_layer("BatchNorm", tops=("y", "extra")), weights)
    assert message == "layer 'l' (BatchNorm) takes 1 top blob(s), as Caffe requires, found 2"


def test_every_translated_layer_type_has_caffes_blob_counts() -> None:
    assert set(_BLOB_COUNTS) == set(TRANSLATORS)


# -- what translated layers compute --------------------------------------------------------------

@pytest.mark.parametrize("op_type", ["Sigmoid", "Tanh", "Abs", "Softplus"])
def test_the_elementwise_factory_makes_one_operator_on_the_first_bottom(op_type: str) -> None:
    """Called here, not only when TRANSLATORS is built at import."""
    net = _net(_layer("ReLU"))
    t = Translation(net)
    t.begin_layer(net.layers[0])
    _elementwise(op_type)(t, net.layers[0])
    assert [(op.type, list(op.input), list(op.output), op.name) for op in t.predict.op] == \
        [(op_type, ["data"], ["y"], "l")]
    assert t.shape("y") == (1, 4, 6, 6)


def test_power_with_default_parameters_is_a_copy_on_real_caffe2(real_caffe2) -> None:
    """(shift + scale * x) ^ power with 0, 1, 1 is x."""
    model = _translated(_layer("Power"))
    assert _ops(model) == [("Copy", ["data"], ["y"])]
    assert np.array_equal(real_caffe2.run(model, {"data": X})["y"], X)


def test_the_natural_log_is_one_log_operator(real_caffe2) -> None:
    """base -1 (e): no change of base, so no Mul by 1 and no weight."""
    model = _translated(_layer("Log"))
    assert _ops(model) == [("Log", ["data"], ["y"])] and model.weights == {}
    positive = np.abs(X) + 0.5
    np.testing.assert_allclose(real_caffe2.run(model, {"data": positive})["y"], np.log(positive), rtol=1e-6)


def test_scale_by_a_second_bottom_adds_the_layers_only_blob_as_bias(real_caffe2) -> None:
    """Caffe's Scale with two bottoms: y = x * s + b, ``s`` along the channels, ``b`` blob 0."""
    s = np.array([0.5, -1.0, 2.0, 3.0], np.float32)
    b = np.array([1.0, 2.0, -3.0, 0.25], np.float32)
    model = _translated(_layer("Scale", "scale_param { bias_term: true }", ("data", "s")), {"l": [b]},
                        {"data": (1, 4, 6, 6), "s": (4,)})
    got = real_caffe2.run(model, {"data": X, "s": s})["y"]
    np.testing.assert_allclose(got, X * s[:, None, None] + b[:, None, None], rtol=1e-6, atol=1e-6)


# -- --compat zoo -----------------------------------------------------------------------------------

def _pools(first: str = "pool1", second: str = "pool2") -> str:
    """8x8 -> MAX 3/2 -> MAX 2/2, with tops named apart from the layers. Caffe (ceil) gives
    ceil(5/2)+1 = 4 then ceil(2/2)+1 = 2; rounding down, pool1 gives floor(5/2)+1 = 3."""
    return (_layer("Pooling", "pooling_param { pool: MAX kernel_size: 3 stride: 2 }", tops=("p1",), name=first)
            + _layer("Pooling", "pooling_param { pool: MAX kernel_size: 2 stride: 2 }", ("p1",), ("p2",), second))


def test_compat_without_a_fully_connected_layer_pads_the_last_pooling() -> None:
    """No FC: the last pooling is padded to Caffe's size at that point, ceil((3 - 2) / 2) + 1 = 2,
    which covers (2 - 1) * 2 + 2 = 4 rows of 3: one row of end padding."""
    model = _translated(_pools(), inputs={"data": (1, 1, 8, 8)})
    result, deviations = zoo_compat(model)
    args = [op_args(op) for op in result.predict_net.op]
    assert [a["legacy_pad"] for a in args] == [0, 0]
    assert args[1]["pads"] == [0, 0, 1, 1] and "pads" not in args[0]
    assert [str(d) for d in deviations] == ["pool1: 3x3 (Caffe: 4x4)"]


def test_compat_deviations_name_the_operator_or_else_its_output() -> None:
    model = _translated(_pools("first", "second"), inputs={"data": (1, 1, 8, 8)})
    assert [str(d) for d in zoo_compat(model)[1]] == ["first: 3x3 (Caffe: 4x4)"]
    model.predict_net.op[0].name = ""
    assert [str(d) for d in zoo_compat(model)[1]] == ["p1: 3x3 (Caffe: 4x4)"]
