"""Tests aimed at mutants that survived the second mutmut run over the NetDef -> ONNX export
(``converters/onnx/handlers/nn.py``, ``elementwise.py``, ``base.py`` and ``converters/onnx/model.py``).

Each case is one Caffe2 operator on a tiny input. Expected values are independent of the code under
test: what REAL Caffe2 computes on the same NetDef (the ``real_caffe2`` fixture), compared with the
export on onnxruntime (the reference evaluator below opset 7); Caffe2's documented defaults (Dropout
ratio 0.5, LRN alpha 0 / beta 0 / bias 1); sentences and sizes written here (the checker's rule that
a tensor of ``LARGE_TENSOR_BYTES`` or more is large). The LRN cases with beta 0 pin a fix: the export
wrote an LRN with beta 0, which onnxruntime refuses ("beta_ > 0"), where Caffe2 computes y = x.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper
from real_caffe2.conformance import bound, max_error

from zooforge.converters.errors import ExportError
from zooforge.converters.onnx.frontend import ExportOptions, caffe2_to_onnx
from zooforge.converters.onnx.handlers.base import Handler, build_registry
from zooforge.converters.onnx.model import OnnxModel
from zooforge.versioning.checker import LARGE_TENSOR_BYTES
from zooforge.versioning.runtime import run_with

from test_handler_mutants_nn import IMG, LATEST, X4, _assert_as_real_caffe2, _attrs, _export, _f, _model


# -- the registry ----------------------------------------------------------------------------------

def _handler(caffe2_type: str) -> type[Handler]:
    return type(f"H{caffe2_type}", (Handler,), {"caffe2_type": caffe2_type})


def test_registry_indexes_handlers_by_type_and_refuses_a_type_twice() -> None:
    a, b, a_again = _handler("A"), _handler("B"), _handler("A")
    assert build_registry([a], [b]) == {"A": a, "B": b}
    with pytest.raises(RuntimeError, match=r"^two handlers for Caffe2 operator A$"):
        build_registry([a, b], [a_again])


# -- binary operators: axis without broadcast is NumPy broadcasting --------------------------------

@pytest.mark.parametrize("op_type", ["Add", "Mul"])
def test_axis_without_broadcast_broadcasts_numpy_style(op_type: str, real_caffe2) -> None:
    """Caffe2 reads ``axis`` only with broadcast=1: [4, 1] onto [2, 4, 4, 5] lines up with the trailing
    dims (rows of H), not from axis 1 (channels)."""
    x, z = _f(2, 4, 4, 5), _f(4, 1)
    model = _model(op_type, {"x": x, "z": z}, {}, ["y"], axis=1)
    _assert_as_real_caffe2(real_caffe2, model, {"x": x, "z": z}, (7, LATEST))


# -- Conv: legacy_pad SAME from the input's size ---------------------------------------------------

def test_conv_same_padding_comes_from_the_input_size(real_caffe2) -> None:
    """legacy_pad 2 (SAME), kernel 3, stride 2 on H 7, W 8: pads H 1+1, W 0+1 (a 3x3 kernel would give 1+1)."""
    model = _model("Conv", {"x": IMG}, {"w": _f(3, 2, 3, 3), "b": _f(3)}, ["y"], kernel=3, stride=2, legacy_pad=2)
    (node,) = _export(model, 11).graph.node
    assert _attrs(node)["pads"] == [1, 0, 1, 1]
    _assert_as_real_caffe2(real_caffe2, model, {"x": IMG}, (11,))


# -- AveragePool before opset 7: explicit zero padding on each side --------------------------------

def test_count_include_pad_below_opset_7_pads_each_side_apart(real_caffe2) -> None:
    """pad_l 1 and pad_b 0 differ: the Pad before the pool pads W by 1 at its start, H not at its end."""
    model = _model("AveragePool", {"x": IMG}, {}, ["y"], kernel=3, stride=1,
                   pad_t=0, pad_l=1, pad_b=0, pad_r=1, count_include_pad=1)
    (theirs,) = real_caffe2.run(model, {"x": IMG}, fetch=["y"]).values()
    assert theirs.shape == (1, 2, 5, 8)  # H 7 - 3 + 1, W 8 + 2 - 3 + 1
    for opset in (3, 6):
        (ours,) = run_with("reference", _export(model, opset), {"x_0": IMG}).values()
        assert ours.shape == theirs.shape and max_error(ours, theirs) <= bound(theirs), opset


# -- LRN: Caffe2's defaults and beta ---------------------------------------------------------------

LRN_CASES = {
    # Caffe2's beta 0 raises the scale to 0: y = x; onnxruntime refuses an LRN with beta 0 ("beta_ > 0")
    "beta-default-with-alpha": dict(size=3, alpha=0.5, bias=2.0),
    "beta-0-with-alpha": dict(size=3, alpha=0.5, beta=0.0, bias=2.0),
    "beta-default-alpha-0": dict(size=3, bias=2.0),  # y = x * 2^-0
    "beta-given": dict(size=3, alpha=0.5, beta=0.5, bias=2.0),  # not ONNX's default 0.75
}


@pytest.mark.parametrize("case", LRN_CASES)
def test_lrn_beta_as_real_caffe2(case: str, real_caffe2) -> None:
    x = X4 * 3
    model = _model("LRN", {"x": x}, {}, ["y"], **LRN_CASES[case])
    _assert_as_real_caffe2(real_caffe2, model, {"x": x}, (7, LATEST))


# -- FC under --compat zoo away from axis 1 --------------------------------------------------------

def test_zoo_fc_at_axis_2_flattens_from_axis_2(real_caffe2) -> None:
    """The zoo's literal Reshape to [batch, features] is for axis 1 only: at axis 2, [2, 3, 4, 5] is
    [6, 20] rows and the result [2, 3, 6]."""
    model = _model("FC", {"x": X4}, {"w": _f(6, 20), "b": _f(6)}, ["y"], axis=2)
    _assert_as_real_caffe2(real_caffe2, model, {"x": X4}, (9,), compat="zoo")


# -- Dropout: Caffe2's default ratio and the refused mask below opset 7 ----------------------------

def test_dropout_default_ratio_is_caffe2s_half(real_caffe2) -> None:
    """Without a ratio Caffe2 drops 0.5; onnxruntime refuses a ratio input outside [0, 1) (opset 12+)."""
    model = _model("Dropout", {"x": X4}, {}, ["y"], is_test=1)
    for opset in (3, 7):
        (node,) = _export(model, opset).graph.node
        assert _attrs(node)["ratio"] == 0.5, opset
    _assert_as_real_caffe2(real_caffe2, model, {"x": X4}, (12, LATEST))


@pytest.mark.parametrize("opset", [3, 6])
def test_dropout_mask_read_later_is_refused_below_opset_7(opset: int) -> None:
    model = _model("Dropout", {"x": X4}, {}, ["y", "mask"], external=2, is_test=1)
    with pytest.raises(ExportError, match=r"^Dropout 'dropout': extra output\(s\) \['mask'\] cannot be exported$"):
        caffe2_to_onnx(model, ExportOptions(opset=opset))


# -- the model writer: LARGE_TENSOR_BYTES or more stays aside ---------------------------------------

@pytest.mark.parametrize("count, large", [(LARGE_TENSOR_BYTES // 4, True), (LARGE_TENSOR_BYTES // 4 - 1, False)])
def test_an_initializer_of_the_threshold_size_is_kept_aside(count: int, large: bool) -> None:
    """1024 bytes (256 floats) are large, as the checker counts them; 1020 go into the skeleton."""
    array = np.arange(count, dtype=np.float32)
    model = OnnxModel.build(helper.make_model(helper.make_graph([], "g", [], [])), {"w": array})
    assert ("w" in model.large) == large
    assert [t.name for t in model.skeleton.graph.initializer] == ([] if large else ["w"])
    (tensor,) = model.to_proto().graph.initializer
    assert tensor.name == "w" and np.array_equal(numpy_helper.to_array(tensor), array)
