"""The executor's semantics where its other tests leave it free: arguments at values other than
the ones zooforge's translator writes (defaults left out, one spelling of a pair, legacy_pad
strategies at sizes where they pad, rectangular kernels, float64 weights), its shape inference,
and its refusals, word for word.

Expected values come from the REAL historical Caffe2 (the ``real_caffe2`` fixture), run on the
same single-operator NetDef, from onnxruntime, or from NumPy written here for a tiny case; never
from the executor itself. Where real Caffe2 refuses, zooforge must refuse too, with its sentence.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from onnx import TensorProto, helper

from zooforge.converters.caffe2 import schema
from zooforge.converters.caffe2.executor import infer_shapes, run_net, tensor
from zooforge.converters.caffe2.executor.geometry import pool_extent
from zooforge.converters.caffe2.netdef import Caffe2Model, make_op
from zooforge.converters.errors import NetDefError

from conftest import ort_session
from real_caffe2 import RealCaffe2Error
from real_caffe2.conformance import bound, max_error

RNG = np.random.default_rng(11)


def _f(*shape: int, dtype: Any = np.float32) -> np.ndarray:
    return RNG.normal(size=shape).astype(dtype)


X = _f(1, 4, 10, 11)          # the usual input: W = 11 odd, H = 10 even
X3 = _f(1, 4, 3, 3)           # a window of 3 fits exactly
X6 = _f(1, 6, 5, 5)           # 6 channels: group 2 of 3
THIN = _f(1, 4, 5, 1)         # W = 1: Caffe's ceil rounding gives an empty output
FAR = np.array([[1000.0, 1001.0, 999.0], [0.0, 1.0, 2.0]], np.float32)  # rows far apart


def _model(op_type: str, feeds: Mapping[str, np.ndarray], weights: Mapping[str, np.ndarray], n_out: int = 1,
           name: str = "", **args: Any) -> Caffe2Model:
    """One operator reading the feeds then the weights, writing y, y1, ... (y is the external output)."""
    net = schema.NetDef(name="semantics")
    inputs = [*feeds, *weights]
    net.op.append(make_op(op_type, inputs, ["y"] + [f"y{i}" for i in range(1, n_out)], name=name, **args))
    net.external_input.extend(inputs)
    net.external_output.append("y")
    return Caffe2Model(net, dict(weights), {k: v.shape for k, v in feeds.items()})


def _shapes(model: Caffe2Model) -> dict[str, tuple[int, ...]]:
    given = {**model.input_shapes, **{k: v.shape for k, v in model.weights.items()}}
    return {k: v for k, v in infer_shapes(model.predict_net, given).items() if k not in given}


def _sentence(model: Caffe2Model, reason: str) -> str:
    op = model.predict_net.op[0]
    return f"^{re.escape(f'operator 0 ({op.type} {op.name!r} -> {list(op.output)}): {reason}')}$"


# -- computed as on real Caffe2 -----------------------------------------------------------------

# id: (op type, feeds, weights, outputs, args)
COMPUTED: dict[str, tuple[str, dict, dict, int, dict]] = {
    "conv-default-stride": ("Conv", {"x": X}, {"w": _f(2, 4, 3, 3)}, 1, dict(kernel=3)),
    "conv-same-kernel-1": ("Conv", {"x": X}, {"w": _f(2, 4, 1, 1)}, 1, dict(kernel=1, legacy_pad=2)),
    "conv-same-stride-1": ("Conv", {"x": X}, {"w": _f(2, 4, 3, 3)}, 1, dict(kernel=3, legacy_pad=2)),
    "conv-exact-fit": ("Conv", {"x": X3}, {"w": _f(2, 4, 3, 3)}, 1, dict(kernel=3)),
    "conv-group-2": ("Conv", {"x": X6}, {"w": _f(4, 3, 3, 3)}, 1, dict(kernel=3, group=2)),
    "conv-float64-weights": ("Conv", {"x": X}, {"w": _f(2, 4, 3, 3, dtype=np.float64),
                                                "b": _f(2, dtype=np.float64)}, 1, dict(kernel=3, stride=2)),
    "convtranspose-adj-w": ("ConvTranspose", {"x": X}, {"w": _f(4, 2, 3, 3)}, 1,
                            dict(kernel=3, stride=2, adj_h=0, adj_w=1)),
    "avgpool-rect-include-pad": ("AveragePool", {"x": X}, {}, 1,
                                 dict(kernel_h=2, kernel_w=3, pad=1, count_include_pad=1)),
    "maxpool-float64-blob": ("MaxPool", {}, {"x": _f(1, 4, 10, 11, dtype=np.float64)}, 1, dict(kernel=2, stride=2)),
    "softmax-rows-far-apart": ("Softmax", {"x": FAR}, {}, 1, {}),
    "leakyrelu-default-alpha": ("LeakyRelu", {"x": X}, {}, 1, {}),
    "elu-default-alpha": ("Elu", {"x": X}, {}, 1, {}),
    "scale": ("Scale", {"x": X}, {}, 1, dict(scale=2.5)),
    "sqr": ("Sqr", {"x": X}, {}, 1, {}),
    "sqrt": ("Sqrt", {"x": X * X}, {}, 1, {}),  # SSD's Normalize (issue 13)
    "reducesum-axes-1-3": ("ReduceSum", {"x": X}, {}, 1, dict(axes=[1, 3])),
    "reducesum-negative-axis-flat": ("ReduceSum", {"x": X}, {}, 1, dict(axes=[-3], keepdims=0)),
    "reducesum-all-default": ("ReduceSum", {"x": X}, {}, 1, {}),
    "add-float64-weight": ("Add", {"x": X}, {"w": _f(11, dtype=np.float64)}, 1, {}),
    "sum-float64-weight": ("Sum", {"x": X}, {"w": _f(1, 4, 10, 11, dtype=np.float64)}, 1, {}),
    "flatten-axis-2": ("Flatten", {"x": X}, {}, 1, dict(axis=2)),
    "reshape-copy-and-infer": ("Reshape", {"x": X}, {}, 2, dict(shape=[0, -1, 5])),
    "transpose-default-axes": ("Transpose", {"x": X}, {}, 1, {}),
    "slice-negative-start": ("Slice", {"x": X}, {}, 1, dict(starts=[0, 0, -4, 0], ends=[-1, -1, -1, -1])),
    "split-axis-2": ("Split", {"x": X}, {}, 2, dict(axis=2)),
    "split-sizes-axis-3": ("Split", {"x": X}, {}, 3, dict(axis=3, split=[2, 4, 5])),
    "argmax-axis-1-no-keepdims": ("ArgMax", {"x": X}, {}, 1, dict(axis=1, keepdims=0)),
    "cast-int32": ("Cast", {"x": X * 10}, {}, 1, dict(to=2)),
    "cast-int64": ("Cast", {"x": X * 10}, {}, 1, dict(to=10)),
    "cast-double": ("Cast", {"x": X * 10}, {}, 1, dict(to=13)),  # caffe2.TensorProto DOUBLE is 13
    "avgpool-pads-excluded-rect": ("AveragePool", {"x": X}, {}, 1, dict(kernel=3, pad=1)),  # 10 x 11 out
    "avgpool-pads-excluded-stride": ("AveragePool", {"x": X}, {}, 1, dict(kernel_h=3, kernel_w=2, stride=2, pad=1)),
    "lrn-default-bias": ("LRN", {"x": X}, {}, 1, dict(size=3, alpha=0.5, beta=0.75)),
    "lrn-size-1": ("LRN", {"x": X}, {}, 1, dict(size=1, alpha=0.5, beta=0.75, bias=2.0)),
    "convtranspose-float64-weights": ("ConvTranspose", {"x": X}, {"w": _f(4, 2, 3, 3, dtype=np.float64)}, 1,
                                      dict(kernel=3, stride=2)),
    "conv-kernel-h-w-named-conv": ("Conv", {"x": X}, {"w": _f(2, 4, 3, 2)}, 1, dict(kernel_h=3, kernel_w=2)),
    # real Caffe2 reads pad_t/pad_l/pad_b/pad_r only when all four are given
    "conv-pad-top-alone": ("Conv", {"x": X}, {"w": _f(2, 4, 3, 3)}, 1, dict(kernel=3, pad_t=1)),
    "conv-three-sides": ("Conv", {"x": X}, {"w": _f(2, 4, 3, 3)}, 1, dict(kernel=3, pad_t=1, pad_l=1, pad_b=1)),
    "conv-four-sides": ("Conv", {"x": X}, {"w": _f(2, 4, 3, 3)}, 1, dict(kernel=3, pad_t=1, pad_l=2, pad_b=0,
                                                                         pad_r=1)),
}


@pytest.mark.parametrize("case", COMPUTED)
def test_computes_and_infers_shapes_as_real_caffe2(case: str, real_caffe2) -> None:
    op_type, feeds, weights, n_out, args = COMPUTED[case]
    model = _model(op_type, feeds, weights, n_out, **args)
    theirs = real_caffe2.run(model, feeds, fetch="*")
    ours = run_net(model, feeds, keep_all=True)
    assert sorted(theirs) == sorted(set(ours) - set(feeds) - set(weights))
    for name, value in theirs.items():
        assert ours[name].dtype == value.dtype, name
        assert ours[name].shape == value.shape, name
        assert max_error(ours[name], value) <= bound(value), f"{name}: {max_error(ours[name], value):.3g}"
    assert _shapes(model) == {name: value.shape for name, value in theirs.items()}


def test_a_float64_feed_is_read_as_float32(real_caffe2) -> None:
    """The inputs are declared FLOAT: a float64 array fed to them is their float32 value."""
    model = _model("Flatten", {"x": X}, {})
    (theirs,) = real_caffe2.run(model, {"x": X}).values()
    (ours,) = run_net(model, {"x": X.astype(np.float64)}).values()
    assert ours.dtype == theirs.dtype == np.float32
    np.testing.assert_array_equal(ours, theirs)


# -- refused, as on real Caffe2 -----------------------------------------------------------------

# id: (op type, feeds, weights, outputs, name, args, zooforge's reason)
REFUSED: dict[str, tuple[str, dict, dict, int, str, dict, str]] = {
    "conv-no-kernel": ("Conv", {"x": X}, {"w": _f(2, 4, 3, 3)}, 1, "", {},
                       "operator has no kernel size argument (Caffe2 needs kernel, kernel_h/kernel_w or kernels)"),
    "conv-kernel-h-alone": ("Conv", {"x": X}, {"w": _f(2, 4, 3, 3)}, 1, "", dict(kernel_h=3),
                            "'kernel_h' and 'kernel_w' must be given together"),
    "pool-kernel-0": ("MaxPool", {"x": X}, {}, 1, "", dict(kernel=0),
                      "kernel [0, 0], stride [1, 1] and dilation [1, 1] must be positive and pads [0, 0, 0, 0] "
                      "not negative"),
    "conv-same-dilation": ("Conv", {"x": X}, {"w": _f(2, 4, 3, 3)}, 1, "", dict(kernel=3, dilation=2, legacy_pad=2),
                           "legacy_pad SAME does not support dilation (Caffe2 refuses it)"),
    "conv-window-too-big": ("Conv", {"x": X3}, {"w": _f(2, 4, 5, 5)}, 1, "", dict(kernel=5),
                            "a window of 5 does not fit an input of 3 padded by 0+0"),
    "pool-dilation": ("MaxPool", {"x": X}, {}, 1, "", dict(kernel=2, dilation=2),
                      "Caffe2's pooling does not support dilation"),
    "pool-pad-not-below-kernel": ("MaxPool", {"x": X}, {}, 1, "", dict(kernel=2, pad=2),
                                  "pads [2, 2, 2, 2] must be smaller than the kernel [2, 2]"),
    "mul-legacy-axis-mismatch": ("Mul", {"x": X}, {"w": _f(5)}, 1, "", dict(broadcast=1, axis=1),
                                 "shape [5] cannot broadcast onto [1, 4, 10, 11] at axis 1"),
    "reshape-two-unknown": ("Reshape", {"x": X}, {}, 2, "", dict(shape=[-1, -1]),
                            "reshape spec [-1, -1] has more than one -1"),
    "reshape-no-shape": ("Reshape", {"x": X}, {}, 2, "", {},
                         "Reshape needs a 'shape' argument (a shape input is not supported)"),
    "slice-ends-short": ("Slice", {"x": X}, {}, 1, "", dict(starts=[0, 0, 0], ends=[-1, -1]),
                         "Slice starts [0, 0, 0] and ends [-1, -1] do not fit shape [1, 4, 10, 11]"),
    "slice-too-many-axes": ("Slice", {"x": X}, {}, 1, "", dict(starts=[0] * 5, ends=[-1] * 5),
                            "Slice starts [0, 0, 0, 0, 0] and ends [-1, -1, -1, -1, -1] do not fit shape "
                            "[1, 4, 10, 11]"),
    "split-sizes-sum-short": ("Split", {"x": X}, {}, 2, "", dict(axis=1, split=[1, 2]),
                              "split sizes [1, 2] do not cover a dimension of 4 in 2 outputs"),
    "split-sizes-too-few": ("Split", {"x": X}, {}, 3, "", dict(axis=1, split=[1, 3]),
                            "split sizes [1, 3] do not cover a dimension of 4 in 3 outputs"),
    "cast-float16": ("Cast", {"x": X}, {}, 1, "", dict(to=12),  # CPU Caffe2 cannot cast to FLOAT16
                     "Cast to data type 12 is not supported"),
    "conv-three-pads": ("Conv", {"x": X}, {"w": _f(2, 4, 3, 3)}, 1, "", dict(kernel=3, pads=[1, 1, 1]),
                        "'pads' must hold 4 values for a 2-D window, found [1, 1, 1]"),
    "sum-of-two-shapes": ("Sum", {"x": X, "z": _f(1, 4, 10, 10)}, {}, 1, "", {},
                          "inputs must share one shape, found [[1, 4, 10, 11], [1, 4, 10, 10]]"),
    "reshape-that-does-not-fit": ("Reshape", {"x": X}, {}, 2, "", dict(shape=[7, -1]),
                                  "cannot reshape [1, 4, 10, 11] to [7, -1]"),
    "reducesum-axis-out-of-range": ("ReduceSum", {"x": X}, {}, 1, "", dict(axes=[4]),  # SSD's Normalize (issue 13)
                                    "ReduceSum axes [4] are out of range for a 4-D input"),

}


@pytest.mark.parametrize("case", REFUSED)
def test_refuses_what_real_caffe2_refuses(case: str, real_caffe2) -> None:
    op_type, feeds, weights, n_out, name, args, reason = REFUSED[case]
    model = _model(op_type, feeds, weights, n_out, name, **args)
    with pytest.raises(RealCaffe2Error):
        real_caffe2.run(model, feeds, fetch="*")
    with pytest.raises(NetDefError, match=_sentence(model, reason)):
        run_net(model, feeds)
    with pytest.raises(NetDefError, match=_sentence(model, reason)):
        _shapes(model)


# Weights that do not fit: real Caffe2 refuses them when it runs; zooforge's run_net and shape
# inference too (run_net once skipped the shape rules: NumPy's ValueError or KeyError for most of
# these, and the group and size-1-bias misfits computed silently).
MISFITS: dict[str, tuple[str, dict, dict, int, dict, str]] = {
    "conv-outputs-not-divisible-by-group": ("Conv", {"x": X}, {"w": _f(3, 2, 3, 3)}, 1, dict(kernel=3, group=2),
                                            "Conv weight shape [3, 2, 3, 3] does not fit input [1, 4, 10, 11] "
                                            "with group 2"),
    "conv-bias-size": ("Conv", {"x": X}, {"w": _f(2, 4, 3, 3), "b": _f(4)}, 1, dict(kernel=3),
                       "Conv bias shape [4] is not [2], one value per output"),
    "spatialbn-scale-size": ("SpatialBN", {"x": X}, {"s": _f(3), "b": _f(4), "m": _f(4), "v": np.ones(4, np.float32)},
                             1, dict(is_test=1), "SpatialBN input 1 has shape [3], expected [4]"),
    "fc-bias-size": ("FC", {"x": X}, {"w": _f(3, 440), "b": _f(4)}, 1, {},
                     "FC bias shape [4] is not [3], one value per output"),
    "concat-second-input-off-axis": ("Concat", {"x": X, "z": _f(1, 3, 9, 11)}, {}, 2, dict(axis=1),
                                     "Concat inputs [[1, 4, 10, 11], [1, 3, 9, 11]] differ off axis 1"),
    "pow-without-exponent": ("Pow", {"x": X}, {}, 1, {}, "Pow needs an 'exponent' argument or a second input"),
    "conv-bias-of-one-for-two-outputs": ("Conv", {"x": X}, {"w": _f(2, 4, 3, 3), "b": _f(1)}, 1, dict(kernel=3),
                                         "Conv bias shape [1] is not [2], one value per output"),
}


@pytest.mark.parametrize("case", MISFITS)
def test_shape_inference_refuses_weights_real_caffe2_refuses(case: str, real_caffe2) -> None:
    op_type, feeds, weights, n_out, args, reason = MISFITS[case]
    model = _model(op_type, feeds, weights, n_out, **args)
    with pytest.raises(RealCaffe2Error):
        real_caffe2.run(model, feeds, fetch="*")
    with pytest.raises(NetDefError, match=_sentence(model, reason)):
        _shapes(model)
    with pytest.raises(NetDefError, match=_sentence(model, reason)):
        run_net(model, feeds)


@pytest.mark.parametrize("op_type, weights, what", [
    ("Conv", {"w": _f(2, 4, 3, 3)}, "Conv output"), ("MaxPool", {}, "pooling output")])
def test_an_empty_output_is_refused_where_real_caffe2_writes_an_empty_tensor(
        op_type: str, weights: dict, what: str, real_caffe2) -> None:
    """Caffe's ceil rounding (legacy_pad=3) on a width of 1 with kernel 3, stride 2: zero columns."""
    model = _model(op_type, {"x": THIN}, weights, kernel=3, stride=2, legacy_pad=3)
    (theirs,) = real_caffe2.run(model, {"x": THIN}).values()
    assert theirs.shape[2:] == (2, 0)
    reason = f"{what} would be empty for input [1, 4, 5, 1]"
    with pytest.raises(NetDefError, match=_sentence(model, reason)):
        run_net(model, {"x": THIN})
    with pytest.raises(NetDefError, match=_sentence(model, reason)):
        _shapes(model)


# -- the net around the operators (run.py) ------------------------------------------------------

def _net(ops: list[Any], outputs: list[str]) -> Caffe2Model:
    net = schema.NetDef(name="around")
    net.op.extend(ops)
    net.external_input.append("x")
    net.external_output.extend(outputs)
    return Caffe2Model(net, {}, {"x": X.shape})


@pytest.mark.parametrize("ops, outputs, reason", [
    ([make_op("Foo", ["x"], ["y"])], ["y"],
     "operator 0 (Foo, 'y') is not supported by the executor; supported: Abs, Add, ArgMax, AveragePool, "
     "BoxWithNMSLimit, Cast, "),
    ([make_op("Relu", ["x"], ["r"], name="r0"), make_op("Relu", ["x", "r"], ["y"], name="r1")], ["y"],
     "operator 1 (Relu 'r1') has 2 inputs; Caffe2's schema expects 1"),
    ([make_op("Relu", ["q"], ["y"], name="r")], ["y"], "operator 0 (Relu 'r' -> ['y']) reads undefined blob 'q'"),
    ([make_op("Relu", ["x"], ["y"], name="r")], ["y", "z"], "external output(s) ['z'] are never written"),
], ids=["unsupported", "arity", "undefined-blob", "unwritten-output"])
def test_net_refusals_as_on_real_caffe2(ops: list[Any], outputs: list[str], reason: str, real_caffe2) -> None:
    model = _net(ops, outputs)
    with pytest.raises(RealCaffe2Error):
        real_caffe2.run(model, {"x": X})
    with pytest.raises(NetDefError, match="^" + re.escape(reason)):
        run_net(model, {"x": X})


def test_shape_inference_names_an_undefined_blob() -> None:
    model = _net([make_op("Relu", ["x"], ["r"], name="r0"), make_op("Add", ["r", "q"], ["y"], name="a")], ["y"])
    with pytest.raises(NetDefError, match=re.escape("operator 1 (Add 'a' -> ['y']) reads undefined blob(s) ['q']")):
        infer_shapes(model.predict_net, {"x": X.shape})


# -- helpers, against independent references ----------------------------------------------------

@pytest.mark.parametrize("pads", [(0, 1), (1, 0), (1, 1), (0, 0)])
def test_pool_extent_with_asymmetric_pads_is_onnx_ceil_mode(pads: tuple[int, int]) -> None:
    """Caffe's rounding up, dropping a window that starts in the end padding, is ONNX's ceil_mode."""
    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2],
                            pads=[pads[0], pads[0], pads[1], pads[1]], ceil_mode=1)
    graph = helper.make_graph([node], "pool", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)], ir_version=7)
    (y,) = ort_session(model).run(None, {"x": np.zeros((1, 1, 4, 4), np.float32)})
    assert pool_extent(4, 2, 2, pads[0], pads[1], caffe_ceil=True) == y.shape[2]


def test_unary_operators_apply_their_element_function() -> None:
    """The table is built at import; a unary operator made now must compute too."""
    (y,) = tensor._unary(tensor._relu).kernel([X], {}, 1)
    np.testing.assert_array_equal(y, np.maximum(X, 0))


def test_sentences_of_refusals_real_caffe2_does_not_share() -> None:
    """zooforge refuses these where real Caffe2 computes something (NHWC, training mode, an exponent
    given twice: Caffe2 takes the input); each refusal is its one sentence."""
    cases = [
        (_model("Conv", {"x": X}, {"w": _f(2, 4, 3, 3)}, kernel=3, order="NHWC"), "only NCHW order is supported, found 'NHWC'"),
        (_model("Dropout", {"x": X}, {}, 2, ratio=0.5), "Dropout runs only in test mode here (is_test=1)"),
        (_model("SpatialBN", {"x": X}, {"s": _f(4), "b": _f(4), "m": _f(4), "v": np.ones(4, np.float32)}),
         "SpatialBN runs only in test mode here (is_test=1)"),
        (_model("Pow", {"x": X, "e": X}, {}, exponent=2.0), "Pow has both an 'exponent' argument and an exponent input"),
    ]
    for model, reason in cases:
        with pytest.raises(NetDefError, match=_sentence(model, reason)):
            run_net(model, {name: X for name in model.inputs})


def test_an_operator_count_outside_the_schema_names_the_bound() -> None:
    model = _model("Add", {"x": X, "z": X, "q": X}, {})
    with pytest.raises(NetDefError, match=re.escape("operator 0 (Add '') has 3 inputs; Caffe2's schema expects 2")):
        run_net(model, {"x": X, "z": X, "q": X})
