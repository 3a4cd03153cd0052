"""Tests aimed at mutants that survived the third mutmut run over the NetDef -> ONNX export
(``converters/onnx/handlers/*.py`` and ``converters/onnx/model.py``).

Expected values are independent of the code under test: what REAL Caffe2 computes on the same NetDef
(the ``real_caffe2`` fixture) compared with the export on onnxruntime (onnx's reference evaluator below
opset 7); Caffe2's documented LRN default bias 1 (hand-computed y = x * 1^-beta = x when alpha is 0);
the attributes of the ONNX zoo's published AlexNet graph (``--compat zoo`` reproduces it node for node);
ONNX's Softmax-13, which normalises along one axis, so a Caffe2 softmax over the last axis is that one
node; and refusal sentences written here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from zooforge.converters.errors import ExportError
from zooforge.converters.onnx.frontend import ExportOptions, caffe2_to_onnx
from zooforge.converters.onnx.handlers.base import Handler
from zooforge.versioning.runtime import run_with

from test_handler_mutants_nn import LATEST, X4, _assert_as_real_caffe2, _attrs, _export, _f, _model


# -- a handler with no version at or below the opset -----------------------------------------------

class _Late(Handler):
    caffe2_type = "Late"

    @classmethod
    def version_5(cls, e) -> None: ...

    @classmethod
    def version_9(cls, e) -> None: ...


def test_an_opset_below_every_handler_version_is_refused_by_name() -> None:
    assert [_Late.chosen_version(opset) for opset in (5, 8, 9, 21)] == [5, 5, 9, 9]
    with pytest.raises(ExportError) as caught:
        _Late.chosen_version(4)
    assert str(caught.value) == "Caffe2 operator Late cannot be exported at opset 4; its handler has versions [5, 9]"


# -- LRN: Caffe2's default bias 1 and its second output ---------------------------------------------

@pytest.mark.parametrize("args", [{"size": 3, "alpha": 0.5, "beta": 0.75}, {"size": 3, "alpha": 0.5, "beta": 0.5}])
def test_lrn_without_bias_uses_caffe2s_default_bias(args: dict, real_caffe2) -> None:
    """No bias argument: Caffe2 takes bias 1 (not 2, and not a missing value)."""
    x = X4 * 3
    model = _model("LRN", {"x": x}, {}, ["y"], **args)
    _assert_as_real_caffe2(real_caffe2, model, {"x": x}, (7, LATEST))


@pytest.mark.parametrize("opset", [3, 7, LATEST])
def test_lrn_with_alpha_0_and_no_bias_is_the_identity(opset: int) -> None:
    """alpha 0, beta 0.75, no bias: y = x * (1 + 0)^-0.75 = x (by hand)."""
    model = _model("LRN", {"x": X4}, {}, ["y"], size=3, beta=0.75)
    runtime = "reference" if opset < 7 else "onnxruntime"
    (ours,) = run_with(runtime, _export(model, opset), {"x_0": X4}).values()
    np.testing.assert_allclose(ours, X4, rtol=1e-6, atol=0)


@pytest.mark.parametrize("opset", [3, 7, LATEST])
def test_lrn_scale_output_read_later_is_refused(opset: int) -> None:
    """Caffe2's LRN may write its scale as a second output; the export does not reproduce it."""
    model = _model("LRN", {"x": X4}, {}, ["y", "scale"], external=2, size=3, alpha=0.5, beta=0.75, bias=1.0)
    with pytest.raises(ExportError, match=r"^LRN 'lrn': extra output\(s\) \['scale'\] cannot be exported$"):
        caffe2_to_onnx(model, ExportOptions(opset=opset))


# -- Conv: no dilations attribute without dilation, as the zoo's graph -------------------------------

def test_undilated_conv_attributes_are_the_published_zoo_graphs(shared: Path) -> None:
    """AlexNet's conv1 (kernel 11, stride 4, no pad, no dilation) on a small image: the attributes the
    published bvlcalexnet-9 graph gives its first Conv (kernel_shape, pads, strides; no dilations)."""
    published = onnx.load(str(shared / "onnx" / "light" / "light_bvlc_alexnet.onnx"))
    theirs = next(n for n in published.graph.node if n.op_type == "Conv")
    x = _f(1, 3, 19, 19)
    model = _model("Conv", {"x": x}, {"w": _f(4, 3, 11, 11), "b": _f(4)}, ["y"], kernel=11, stride=4)
    for compat in (None, "zoo"):
        (node,) = _export(model, 9, compat=compat).graph.node
        assert _attrs(node) == _attrs(theirs), compat


# -- Softmax from opset 13: one node over the last axis ----------------------------------------------

@pytest.mark.parametrize("feed, axis", [(X4, 3), (X4, -1), (_f(2, 6), 1)])
def test_softmax_over_the_last_axis_is_one_node_from_opset_13(feed: np.ndarray, axis: int, real_caffe2) -> None:
    model = _model("Softmax", {"x": feed}, {}, ["y"], axis=axis)
    for opset in (13, LATEST):
        (node,) = _export(model, opset).graph.node
        assert node.op_type == "Softmax" and _attrs(node) == {"axis": feed.ndim - 1}, opset
    _assert_as_real_caffe2(real_caffe2, model, {"x": feed}, (13, LATEST))


def test_softmax_over_the_last_axis_of_an_empty_tensor_from_opset_13() -> None:
    """[2, 0, 3] over axis 2: an empty [2, 0, 3] result (no rows to normalise). Flattening first would
    end in a Reshape to [-1, 0, 3], whose inferred dim 0 is 0, not the batch 2 (the checker refuses it)."""
    x = np.zeros((2, 0, 3), np.float32)
    model = _model("Softmax", {"x": x}, {}, ["y"], axis=2)
    (ours,) = run_with("onnxruntime", _export(model, 13), {"x_0": x}).values()
    assert ours.shape == (2, 0, 3)
