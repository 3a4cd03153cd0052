"""Tests aimed at mutants that survived a mutmut run over the NetDef -> ONNX handlers of
``converters/onnx/handlers/nn.py`` and ``tensor.py``.

Each case is one Caffe2 operator on a tiny input. Expected values are independent of the code under
test: what REAL Caffe2 computes on the same NetDef (the ``real_caffe2`` fixture), compared with the
exported model on onnxruntime; node forms and shapes computed by hand from ONNX's operator specs
(pooling: ``out = floor_or_ceil((in + pad_begin + pad_end - kernel) / stride) + 1``); refusals by
the sentence that names the operator and the blob.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from real_caffe2.conformance import bound, max_error

from zooforge.converters.caffe2 import schema
from zooforge.converters.caffe2.netdef import Caffe2Model, make_op
from zooforge.converters.errors import ExportError, NetDefError
from zooforge.converters.onnx.frontend import ExportOptions, caffe2_to_onnx
from zooforge.versioning import latest_opset
from zooforge.versioning.runtime import run_with

LATEST = latest_opset()
RNG = np.random.default_rng(41)


def _f(*shape: int) -> np.ndarray:
    return RNG.normal(size=shape).astype(np.float32)


IMG = _f(1, 2, 7, 8)  # H 7, W 8
X4 = _f(2, 3, 4, 5)
ROWS = _f(2, 12)


def _model(op_type: str, feeds: dict[str, np.ndarray], weights: dict[str, np.ndarray], outputs: list[str],
           external: int = 1, **args: Any) -> Caffe2Model:
    """One operator named after its type, reading the feeds then the weights."""
    net = schema.NetDef(name="mutants")
    inputs = [*feeds, *weights]
    net.op.append(make_op(op_type, inputs, outputs, name=op_type.lower(), **args))
    net.external_input.extend(inputs)
    net.external_output.extend(outputs[:external])
    return Caffe2Model(net, dict(weights), {k: v.shape for k, v in feeds.items()})


def _export(model: Caffe2Model, opset: int, **options: Any) -> onnx.ModelProto:
    proto = caffe2_to_onnx(model, ExportOptions(opset=opset, **options)).to_proto()
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _init(proto: onnx.ModelProto, name: str) -> list:
    return next(numpy_helper.to_array(t).tolist() for t in proto.graph.initializer if t.name == name)


def _assert_as_real_caffe2(real_caffe2, model: Caffe2Model, feeds: dict[str, np.ndarray], opsets: tuple[int, ...],
                           **options: Any) -> None:
    """The export at each opset, on onnxruntime, gives what real Caffe2 computes (shape and values)."""
    (theirs,) = real_caffe2.run(model, feeds, fetch=["y"]).values()
    for opset in opsets:
        proto = _export(model, opset, **options)
        (ours,) = run_with("onnxruntime", proto, {f"{k}_0": v for k, v in feeds.items()}).values()
        assert ours.shape == theirs.shape, (opset, ours.shape, theirs.shape)
        assert max_error(ours, theirs) <= bound(theirs), opset


# -- ConvTranspose ---------------------------------------------------------------------------------

@pytest.mark.parametrize("adj_h, adj_w", [(0, 1), (1, 0)])
def test_convtranspose_output_padding_per_side(adj_h: int, adj_w: int, real_caffe2) -> None:
    """adj_h/adj_w given apart: each side's own extra row/column (Caffe2: H 13 + adj_h, W 15 + adj_w)."""
    model = _model("ConvTranspose", {"x": IMG}, {"w": _f(2, 3, 3, 3), "b": _f(3)}, ["y"],
                   kernel=3, stride=2, pad=1, adj_h=adj_h, adj_w=adj_w)
    _assert_as_real_caffe2(real_caffe2, model, {"x": IMG}, (11, LATEST))


# -- pooling: ceil_mode only where Caffe's rounding is ONNX's --------------------------------------

@pytest.mark.parametrize("op_type", ["MaxPool", "AveragePool"])
def test_asymmetric_declared_pads_keep_the_floor_size_from_opset_10(op_type: str, real_caffe2) -> None:
    """pad_b 2 alone (no legacy_pad): Caffe2 rounds down, H (7 + 2 - 3) // 2 + 1 = 4, W 3; ceil_mode with
    the leading pads repeated would give H 3, W 4."""
    model = _model(op_type, {"x": IMG}, {}, ["y"], kernel=3, stride=2, pad_t=0, pad_l=0, pad_b=2, pad_r=0)
    _assert_as_real_caffe2(real_caffe2, model, {"x": IMG}, (10, LATEST))


@pytest.mark.parametrize("op_type, pad, pads", [("MaxPool", 1, [1, 1, 1, 1]), ("AveragePool", 0, [0, 0, 0, 0])])
def test_caffe_rounding_is_ceil_mode_from_opset_10(op_type: str, pad: int, pads: list[int]) -> None:
    """Caffe's rounding up (legacy_pad 3) where ONNX's ceil_mode gives the same size: one pool with
    ceil_mode 1 and symmetric pads. W 8, kernel 3, stride 2: ceil((8 + 2 * pad - 3) / 2) + 1 is one
    more than floor, so end padding alone would need a pad the leading one does not have."""
    model = _model(op_type, {"x": IMG}, {}, ["y"], kernel=3, stride=2, pad=pad, legacy_pad=3)
    for opset in (10, LATEST):
        (node,) = _export(model, opset).graph.node
        assert node.op_type == op_type
        assert _attrs(node) == {"kernel_shape": [3, 3], "strides": [2, 2], "pads": pads, "ceil_mode": 1}


# -- FC --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dynamic_batch, shape", [(False, [2, 60]), (True, [-1, 60])])
def test_zoo_fc_flattens_with_a_literal_reshape(dynamic_batch: bool, shape: list[int], real_caffe2) -> None:
    """--compat zoo: FC on [2, 3, 4, 5] is Reshape to [batch, 3 * 4 * 5] then Gemm, as the zoo's graphs."""
    model = _model("FC", {"x": X4}, {"w": _f(6, 60), "b": _f(6)}, ["y"])
    proto = _export(model, 9, compat="zoo", dynamic_batch=dynamic_batch)
    reshape, gemm = proto.graph.node
    assert (reshape.op_type, gemm.op_type) == ("Reshape", "Gemm")
    assert reshape.input[0] == "x_0" and _init(proto, reshape.input[1]) == shape
    assert list(gemm.input) == [reshape.output[0], "w_0", "b_0"]
    _assert_as_real_caffe2(real_caffe2, model, {"x": X4}, (9,), compat="zoo", dynamic_batch=dynamic_batch)


def test_fc_with_a_fed_2d_weight_is_one_gemm(real_caffe2) -> None:
    """A weight fed at run time that is already [outputs, features] goes to Gemm as it is (no Reshape)."""
    feeds = {"x": ROWS, "w": _f(6, 12)}
    model = _model("FC", feeds, {"b": _f(6)}, ["y"])
    (gemm,) = _export(model, 11).graph.node
    assert gemm.op_type == "Gemm" and list(gemm.input) == ["x_0", "w_0", "b_0"]
    _assert_as_real_caffe2(real_caffe2, model, feeds, (11,))


@pytest.mark.parametrize("w_shape, args, outputs", [((6, 3, 4), {}, 6), ((3, 4), {"axis_w": 0}, 1)])
def test_fc_weight_folded_at_axis_w(w_shape: tuple[int, ...], args: dict[str, int], outputs: int,
                                    real_caffe2) -> None:
    """W folded to [prod(W[:axis_w]), prod(W[axis_w:])]: a 3-D W at the default axis_w 1, a 2-D W at 0."""
    model = _model("FC", {"x": ROWS}, {"w": _f(*w_shape), "b": _f(outputs)}, ["y"], **args)
    _assert_as_real_caffe2(real_caffe2, model, {"x": ROWS}, (7, 11, LATEST))


# -- Dropout ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("opset", [7, 12, LATEST])
def test_dropout_mask_read_later_is_refused(opset: int) -> None:
    """Test-mode Caffe2 leaves the mask unwritten, and the export does not reproduce it either."""
    model = _model("Dropout", {"x": X4}, {}, ["y", "mask"], external=2, is_test=1)
    with pytest.raises(ExportError, match=r"^Dropout 'dropout': extra output\(s\) \['mask'\] cannot be exported$"):
        caffe2_to_onnx(model, ExportOptions(opset=opset))


def test_fc_without_its_bias_is_refused_before_export():
    """Caffe2's FC schema takes exactly 3 inputs (real Caffe2 refuses a 2-input FC), so the handler
    never has to invent a zero bias: the export refuses with the operator named."""
    model = _model("FC", {"x": ROWS}, {"w": _f(3, 12)}, ["y"])
    with pytest.raises(NetDefError, match=r"^operator 0 \(FC 'fc'\) has 2 inputs; Caffe2's schema expects 3$"):
        caffe2_to_onnx(model, ExportOptions(opset=9))


@pytest.mark.parametrize("to", ["int64", "DOUBLE", 2])
def test_cast_to_a_type_name_or_code_exports_as_real_caffe2_computes(to: Any, real_caffe2) -> None:
    """Caffe2 reads a string ``to`` as a type name in any case (GetCastDataType)."""
    model = _model("Cast", {"x": X4 * 4}, {}, ["y"], to=to)
    (theirs,) = real_caffe2.run(model, {"x": X4 * 4}, fetch=["y"]).values()
    for opset in (5, 13):  # Cast-1 (the type by name) and Cast-6 onward (by code)
        (ours,) = run_with("reference" if opset < 7 else "onnxruntime", _export(model, opset), {"x_0": X4 * 4}).values()
        assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs), opset
