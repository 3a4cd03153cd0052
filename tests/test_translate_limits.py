"""Caffe -> Caffe2 translation at the edges of what a layer's parameters allow.

Each case is a small deploy net whose parameters sit on a boundary Caffe itself draws (a 1x1
pooling window, a dropout ratio of 0, a group that divides, a crop with one offset for all axes):
the net translates and the NetDef computes the shape worked out by hand; one step past the
boundary, the translation is refused with a sentence naming the layer and the reason.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from google.protobuf import text_format

from zooforge.converters.caffe import schema
from zooforge.converters.caffe.loader import build_net
from zooforge.converters.caffe2.executor import infer_shapes
from zooforge.converters.caffe2.translate import translate
from zooforge.converters.errors import CaffeModelError, ZooforgeError

RNG = np.random.default_rng(5)


def _translated(layers: str, weights: dict[str, list[np.ndarray]] | None = None,
                shape: tuple[int, ...] = (1, 4, 6, 6)):
    dims = " ".join(f"dim: {d}" for d in shape)
    text = f'name: "t" input: "data" input_shape {{ {dims} }}\n{layers}'
    net = build_net(text_format.Parse(text, schema.NetParameter()), weights or {})
    return translate(net)


def _top_shape(model, top: str) -> tuple[int, ...]:
    given = {**model.input_shapes, **{k: v.shape for k, v in model.weights.items()}}
    return infer_shapes(model.predict_net, given)[top]


def _refused(layers: str, words: str, weights: dict | None = None, shape: tuple[int, ...] = (1, 4, 6, 6)) -> None:
    """One sentence that starts with the layer's name and type and gives the reason."""
    with pytest.raises(ZooforgeError) as caught:
        _translated(layers, weights, shape)
    message = str(caught.value)
    assert message.startswith("layer 'l' (") and "\n" not in message, message
    assert re.search(words, message), message


def _layer(kind: str, params: str = "", bottoms: tuple[str, ...] = ("data",)) -> str:
    bottom = " ".join(f'bottom: "{b}"' for b in bottoms)
    return f'layer {{ name: "l" type: "{kind}" {bottom} top: "y" {params} }}\n'


def _conv_weights(out: int, per_group_in: int, k: int = 3, bias: bool = True) -> dict[str, list[np.ndarray]]:
    blobs = [RNG.normal(size=(out, per_group_in, k, k)).astype(np.float32)]
    return {"l": blobs + ([RNG.normal(size=(out,)).astype(np.float32)] if bias else [])}


def test_pooling_window_of_one_is_allowed_and_a_pad_as_large_is_not() -> None:
    model = _translated(_layer("Pooling", "pooling_param { pool: MAX kernel_size: 1 stride: 1 }"))
    assert _top_shape(model, "y") == (1, 4, 6, 6)
    _refused(_layer("Pooling", "pooling_param { pool: MAX kernel_size: 1 pad: 1 }"),
             r"pad \[1, 1\] must be smaller than the kernel \[1, 1\]")


@pytest.mark.parametrize("ratio, allowed", [(0.0, True), (0.999, True), (1.0, False), (1.5, False)])
def test_dropout_ratio_lies_in_zero_to_one(ratio: float, allowed: bool) -> None:
    layers = _layer("Dropout", f"dropout_param {{ dropout_ratio: {ratio} }}")
    if allowed:
        assert _top_shape(_translated(layers), "y") == (1, 4, 6, 6)
    else:
        _refused(layers, rf"dropout_ratio {ratio:g} must lie in \[0, 1\)")


@pytest.mark.parametrize("group, out, allowed", [(2, 4, True), (4, 8, True), (3, 3, False), (2, 3, False)])
def test_convolution_group_must_divide_channels_and_outputs(group: int, out: int, allowed: bool) -> None:
    layers = _layer("Convolution", f"convolution_param {{ num_output: {out} kernel_size: 3 group: {group} }}")
    weights = _conv_weights(out, 4 // group if 4 % group == 0 else 1)
    if allowed:
        assert _top_shape(_translated(layers, weights), "y") == (1, out, 4, 4)
    else:
        _refused(layers, rf"group {group} does not divide 4 input and {out} output channels", weights)


def test_a_missing_bias_blob_is_named_with_the_count_given() -> None:
    layers = _layer("Convolution", "convolution_param { num_output: 2 kernel_size: 3 }")
    _refused(layers, r"needs weight blob 1, but the weights file gives it 1", _conv_weights(2, 4, bias=False))
    assert _top_shape(_translated(layers.replace("kernel_size: 3", "kernel_size: 3 bias_term: false"),
                                  _conv_weights(2, 4, bias=False)), "y") == (1, 2, 4, 4)


@pytest.mark.parametrize("values, expected", [([], (4, 4)), ([2], (2, 2)), ([1, 2], (4, 2))])
def test_dilation_of_one_or_two_values(values: list[int], expected: tuple[int, int]) -> None:
    """Output = (6 - dilation*(3-1) - 1) + 1 per axis: 4 for dilation 1, 2 for dilation 2."""
    dilation = " ".join(f"dilation: {v}" for v in values)
    layers = _layer("Convolution", f"convolution_param {{ num_output: 2 kernel_size: 3 {dilation} }}")
    assert _top_shape(_translated(layers, _conv_weights(2, 4)), "y") == (1, 2, *expected)


def test_dilation_of_three_values_is_refused() -> None:
    layers = _layer("Convolution", "convolution_param { num_output: 2 kernel_size: 3 dilation: 1 dilation: 1 "
                                   "dilation: 1 }")
    _refused(layers, r"only 2-D dilation is supported, found \[1, 1, 1\]", _conv_weights(2, 4))


def test_reshape_with_two_inferred_dimensions_is_refused() -> None:
    _refused(_layer("Reshape", "reshape_param { shape { dim: -1 dim: -1 } }"), r"infers more than one dimension")
    model = _translated(_layer("Reshape", "reshape_param { shape { dim: 0 dim: -1 } }"))
    assert _top_shape(model, "y") == (1, 144)


@pytest.mark.parametrize("offsets, expected", [("", (1, 4, 2, 3)), ("offset: 1", (1, 4, 2, 3)),
                                               ("offset: 1 offset: 2", (1, 4, 2, 3))])
def test_crop_takes_no_one_or_one_offset_per_axis(offsets: str, expected: tuple[int, ...]) -> None:
    ref = 'layer { name: "r" type: "Pooling" bottom: "data" top: "ref" pooling_param { pool: MAX kernel_h: 5 ' \
          "kernel_w: 4 stride: 1 } }\n"
    model = _translated(ref + _layer("Crop", f"crop_param {{ axis: 2 {offsets} }}", ("data", "ref")))
    assert _top_shape(model, "y") == expected


def test_crop_with_two_offsets_for_three_axes_is_refused() -> None:
    ref = 'layer { name: "r" type: "Pooling" bottom: "data" top: "ref" pooling_param { pool: MAX kernel_size: 3 ' \
          "stride: 1 } }\n"
    _refused(ref + _layer("Crop", "crop_param { axis: 1 offset: 0 offset: 1 }", ("data", "ref")),
             r"2 offsets for 3 cropped axes")


@pytest.mark.parametrize("field", ["axis", "concat_dim"])
def test_concat_axis_out_of_range_names_the_field_given(field: str) -> None:
    with pytest.raises(CaffeModelError, match=rf"\b{field}\b"):
        _translated(_layer("Concat", f"concat_param {{ {field}: 4 }}", ("data", "data")))
    assert _top_shape(_translated(_layer("Concat", f"concat_param {{ {field}: 1 }}", ("data", "data"))), "y") == \
        (1, 8, 6, 6)


def test_eltwise_coefficients_need_sum() -> None:
    _refused(_layer("Eltwise", "eltwise_param { operation: PROD coeff: 1 coeff: 2 }", ("data", "data")),
             re.escape("(coefficients need the SUM operation and one per bottom)"))
