"""A sweep of the NetDef -> ONNX handlers: every Caffe2 operator of the registry, with arguments at
values other than their defaults, exported at every opset where some handler changes (3 .. latest),
checked by ``onnx.checker`` and run (onnxruntime from opset 7, the reference evaluator with
zooforge's legacy kernels below), against what REAL Caffe2 computes on the same NetDef.

Where an opset cannot express a case the export must refuse with a sentence naming the operator,
at exactly the opsets listed in ``REFUSED_BELOW``. A few attribute-level facts the outputs cannot
show (legacy ``broadcast``/``axis``, Dropout's ``is_test``, no ``consumed_inputs`` from 6) close it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from real_caffe2.conformance import bound, max_error

from zooforge.converters.caffe2 import schema
from zooforge.converters.caffe2.netdef import Caffe2Model, make_op
from zooforge.converters.errors import ExportError
from zooforge.converters.onnx.frontend import ExportOptions, caffe2_to_onnx
from zooforge.converters.onnx.handlers import REGISTRY
from zooforge.versioning import latest_opset
from zooforge.versioning.runtime import run_with

RNG = np.random.default_rng(23)
LATEST = latest_opset()
# Every opset where some handler has a version_N, plus the fixed landmarks and the latest.
OPSETS = sorted({3, 5, 6, 7, 9, 10, 11, 12, 13, LATEST}
                | {v for h in REGISTRY.values() for v in h.versions() if 3 <= v <= LATEST})


def _f(*shape: int, low: float | None = None) -> np.ndarray:
    if low is not None:
        return RNG.uniform(low, low + 2.0, size=shape).astype(np.float32)
    return RNG.normal(size=shape).astype(np.float32)


X = _f(2, 3, 4, 5)
POS = _f(2, 3, 4, 5, low=0.5)          # Log, Pow, Div: away from 0
IMG = _f(1, 4, 7, 8)                   # convolution and pooling: H 7 odd, W 8 even

# BoxWithNMSLimit's inputs: 12 boxes in three clusters, scores for a background and 3 classes
_CORNERS = np.repeat(RNG.uniform(0.1, 0.6, (3, 2)), 4, axis=0) + RNG.uniform(0, 0.05, (12, 2))
NMS_BOXES = np.concatenate([_CORNERS, _CORNERS + RNG.uniform(0.2, 0.35, (12, 2))], 1).astype(np.float32)
NMS_SCORES = RNG.uniform(0, 1, (12, 4)).astype(np.float32)

# id: (op type, feeds, weights, outputs, external outputs, args)
Case = tuple[str, dict[str, np.ndarray], dict[str, np.ndarray], int, int, dict[str, Any]]
CASES: dict[str, Case] = {
    # -- elementwise, legacy (broadcast=1, axis) and NumPy-style broadcasting ---------------------
    "add-bcast-axis1-weight": ("Add", {"x": X}, {"w": _f(3)}, 1, 1, dict(broadcast=1, axis=1)),
    "sub-bcast-axis1-feed": ("Sub", {"x": X, "z": _f(3, 4)}, {}, 1, 1, dict(broadcast=1, axis=1)),
    "mul-bcast-trailing": ("Mul", {"x": X}, {"w": _f(4, 5)}, 1, 1, dict(broadcast=1)),
    "mul-bcast-axis2-feed": ("Mul", {"x": X, "z": _f(4)}, {}, 1, 1, dict(broadcast=1, axis=2)),
    "div-bcast-axis0": ("Div", {"x": X}, {"w": _f(2, 3, low=0.5)}, 1, 1, dict(broadcast=1, axis=0)),
    "div-same-shape": ("Div", {"x": X, "z": POS}, {}, 1, 1, {}),
    "add-numpy-suffix": ("Add", {"x": X}, {"w": _f(1, 5)}, 1, 1, {}),
    "sub-numpy-middle-feed": ("Sub", {"x": X, "z": _f(3, 1, 1)}, {}, 1, 1, {}),
    "mul-numpy-ones": ("Mul", {"x": X}, {"w": _f(1)}, 1, 1, {}),
    "mul-numpy-gap": ("Mul", {"x": X}, {"w": _f(3, 1, 5)}, 1, 1, {}),
    "add-numpy-enlarges": ("Add", {"x": _f(2, 1, 4, 5)}, {"w": _f(3, 1, 1)}, 1, 1, {}),
    "pow-exponent": ("Pow", {"x": POS}, {}, 1, 1, dict(exponent=1.7)),
    "pow-bcast-axis2": ("Pow", {"x": POS}, {"w": _f(4, low=-1.0)}, 1, 1, dict(broadcast=1, axis=2)),
    "pow-same-shape": ("Pow", {"x": POS, "z": _f(2, 3, 4, 5, low=-1.0)}, {}, 1, 1, {}),
    "scale": ("Scale", {"x": X}, {}, 1, 1, dict(scale=-1.5)),
    "sqr": ("Sqr", {"x": X}, {}, 1, 1, {}),
    "sum-three": ("Sum", {"x": X, "z": _f(2, 3, 4, 5)}, {"w": _f(2, 3, 4, 5)}, 1, 1, {}),
    "max-three": ("Max", {"x": X, "z": _f(2, 3, 4, 5)}, {"w": _f(2, 3, 4, 5)}, 1, 1, {}),
    "prelu-per-channel": ("PRelu", {"x": X}, {"w": _f(3)}, 1, 1, {}),
    "prelu-shared": ("PRelu", {"x": X}, {"w": np.array([0.3], np.float32)}, 1, 1, {}),
    "leakyrelu-alpha": ("LeakyRelu", {"x": X}, {}, 1, 1, dict(alpha=0.37)),
    "elu-alpha": ("Elu", {"x": X}, {}, 1, 1, dict(alpha=0.6)),
    "relu": ("Relu", {"x": X}, {}, 1, 1, {}),
    "sigmoid": ("Sigmoid", {"x": X}, {}, 1, 1, {}),
    "tanh": ("Tanh", {"x": X}, {}, 1, 1, {}),
    "abs": ("Abs", {"x": X}, {}, 1, 1, {}),
    "exp": ("Exp", {"x": X}, {}, 1, 1, {}),
    "log": ("Log", {"x": POS}, {}, 1, 1, {}),
    "softplus": ("Softplus", {"x": X}, {}, 1, 1, {}),
    "copy": ("Copy", {"x": X}, {}, 1, 1, {}),
    # -- convolution, pooling, normalisation -------------------------------------------------------
    "conv-sides-strides-group": ("Conv", {"x": IMG}, {"w": _f(4, 2, 3, 3), "b": _f(4)}, 1, 1,
                                 dict(kernel=3, pad_t=1, pad_l=2, pad_b=0, pad_r=1, stride_h=2, stride_w=1,
                                      group=2)),
    "conv-dilation-rect": ("Conv", {"x": IMG}, {"w": _f(3, 4, 2, 3)}, 1, 1,
                           dict(kernel_h=2, kernel_w=3, dilation_h=2, dilation_w=1, pad=1)),
    "conv-legacy-same": ("Conv", {"x": IMG}, {"w": _f(2, 4, 3, 3), "b": _f(2)}, 1, 1, dict(kernel=3, legacy_pad=2)),
    "convtranspose-stride-pad-adj": ("ConvTranspose", {"x": IMG}, {"w": _f(4, 3, 3, 3), "b": _f(3)}, 1, 1,
                                     dict(kernel=3, stride=2, pad=1, adj=1)),
    "maxpool-pads-strides": ("MaxPool", {"x": IMG}, {}, 1, 1, dict(kernel=3, stride=2, pad_t=1, pad_l=0, pad_b=2,
                                                                 pad_r=1)),
    "maxpool-legacy-caffe": ("MaxPool", {"x": IMG}, {}, 1, 1, dict(kernel=3, stride=2, pad=1, legacy_pad=3)),
    "maxpool-global": ("MaxPool", {"x": IMG}, {}, 1, 1, dict(global_pooling=1)),
    "avgpool-include-pad": ("AveragePool", {"x": IMG}, {}, 1, 1, dict(kernel=3, stride=2, pad=1,
                                                                     count_include_pad=1)),
    "avgpool-exclude-pad": ("AveragePool", {"x": IMG}, {}, 1, 1, dict(kernel_h=2, kernel_w=3, stride=1, pad=1)),
    "avgpool-legacy-include": ("AveragePool", {"x": IMG}, {}, 1, 1, dict(kernel=2, stride=2, pad=1, legacy_pad=3,
                                                                        count_include_pad=1)),
    "avgpool-legacy-exclude": ("AveragePool", {"x": IMG}, {}, 1, 1, dict(kernel=3, stride=2, legacy_pad=3)),
    "avgpool-global": ("AveragePool", {"x": IMG}, {}, 1, 1, dict(global_pooling=1)),
    "lrn-window": ("LRN", {"x": IMG * 3}, {}, 1, 1, dict(size=3, alpha=0.5, beta=0.75, bias=2.0)),
    "lrn-alpha-0": ("LRN", {"x": IMG}, {}, 1, 1, dict(size=5, beta=0.5, bias=3.0)),
    "spatialbn-epsilon": ("SpatialBN", {"x": IMG}, {"s": _f(4), "b": _f(4), "m": _f(4), "v": _f(4, low=0.01)}, 1, 1,
                          dict(is_test=1, epsilon=0.3)),
    "fc-4d": ("FC", {"x": X}, {"w": _f(6, 60), "b": _f(6)}, 1, 1, {}),
    "fc-axis-2": ("FC", {"x": X}, {"w": _f(6, 20), "b": _f(6)}, 1, 1, dict(axis=2)),
    "fc-axis-w-2": ("FC", {"x": _f(2, 12)}, {"w": _f(2, 3, 12), "b": _f(6)}, 1, 1, dict(axis_w=2)),
    "softmax-axis-2": ("Softmax", {"x": X}, {}, 1, 1, dict(axis=2)),
    "softmax-last-axis": ("Softmax", {"x": X}, {}, 1, 1, dict(axis=3)),
    "softmax-default": ("Softmax", {"x": X}, {}, 1, 1, {}),
    "dropout-is-test": ("Dropout", {"x": X}, {}, 1, 1, dict(is_test=1, ratio=0.3)),
    # -- shape and indexing --------------------------------------------------------------------------
    "flatten-axis-3": ("Flatten", {"x": X}, {}, 1, 1, dict(axis=3)),
    "reshape-copy-infer": ("Reshape", {"x": X}, {}, 2, 1, dict(shape=[0, -1, 5])),
    "transpose-axes": ("Transpose", {"x": X}, {}, 1, 1, dict(axes=[0, 2, 3, 1])),
    "transpose-default": ("Transpose", {"x": X}, {}, 1, 1, {}),
    "slice-axis-1": ("Slice", {"x": X}, {}, 1, 1, dict(starts=[0, 1, 0, 0], ends=[-1, 3, -1, -1])),
    "slice-axis-3-negative": ("Slice", {"x": X}, {}, 1, 1, dict(starts=[0, 0, 0, -4], ends=[-1, -1, -1, -2])),
    "concat-axis-2": ("Concat", {"x": X, "z": _f(2, 3, 2, 5)}, {}, 2, 1, dict(axis=2)),
    "split-sizes": ("Split", {"x": X}, {}, 2, 2, dict(axis=1, split=[1, 2])),
    "split-equal-axis-2": ("Split", {"x": X}, {}, 2, 2, dict(axis=2)),
    "argmax-axis-2-keepdims": ("ArgMax", {"x": X}, {}, 1, 1, dict(axis=2, keepdims=1)),
    "argmax-axis-1-flat": ("ArgMax", {"x": X}, {}, 1, 1, dict(axis=1, keepdims=0)),
    "cast-int32": ("Cast", {"x": X * 10}, {}, 1, 1, dict(to=2)),
    "cast-int64": ("Cast", {"x": X * 10}, {}, 1, 1, dict(to=10)),
    "cast-double": ("Cast", {"x": X * 10}, {}, 1, 1, dict(to=13)),
    "cast-float": ("Cast", {"x": X}, {}, 1, 1, dict(to=1)),
    # -- the forks' layers (issue 13): ShuffleNet's channel shuffle, nearest-neighbour upsampling ------
    "channelshuffle-group3": ("ChannelShuffle", {"x": _f(2, 6, 3, 4)}, {}, 1, 1, dict(group=3, order="NCHW")),
    "channelshuffle-default-group": ("ChannelShuffle", {"x": X}, {}, 1, 1, {}),
    "resizenearest-2x3": ("ResizeNearest", {"x": IMG}, {}, 1, 1, dict(height_scale=2.0, width_scale=3.0,
                                                                      order="NCHW")),
    "resizenearest-default": ("ResizeNearest", {"x": IMG}, {}, 1, 1, {}),
    # -- arguments left to their defaults (Caffe2's: scale 1, axis 1, ArgMax axis -1 keepdims 1) -----
    "scale-default": ("Scale", {"x": X}, {}, 1, 1, {}),
    "flatten-default": ("Flatten", {"x": X}, {}, 1, 1, {}),
    "split-default-axis": ("Split", {"x": X}, {}, 3, 3, {}),
    "argmax-default": ("ArgMax", {"x": X}, {}, 1, 1, {}),
    # -- SSD's Normalize (issue 13) ------------------------------------------------------------------
    "sqrt": ("Sqrt", {"x": POS}, {}, 1, 1, {}),
    "reducesum-axis1-keepdims": ("ReduceSum", {"x": X}, {}, 1, 1, dict(axes=[1], keepdims=1)),
    "reducesum-negative-axes-flat": ("ReduceSum", {"x": X}, {}, 1, 1, dict(axes=[-1, 1], keepdims=0)),
    "reducesum-default-all": ("ReduceSum", {"x": X}, {}, 1, 1, {}),
    # -- DetectionOutput's clip (OpenCV's field): Caffe2's Clip, bounds float's lowest/largest when absent --
    "clip-min-max": ("Clip", {"x": X}, {}, 1, 1, dict(min=-0.5, max=0.7)),
    "clip-min-only": ("Clip", {"x": X}, {}, 1, 1, dict(min=0.2)),
    "clip-max-only": ("Clip", {"x": X}, {}, 1, 1, dict(max=-0.1)),
    "clip-default": ("Clip", {"x": X * 1e30}, {}, 1, 1, {}),
    # -- detection operators (SSD's DetectionOutput; the wt-detout block) ---------------------------
    "topk-last-axis": ("TopK", {"x": X}, {}, 2, 2, dict(k=3)),
    "topk-axis1": ("TopK", {"x": X}, {}, 2, 2, dict(k=2, axis=1)),
    "gather-rows": ("Gather", {"x": X}, {"i": np.array([1, 0, 1], np.int64)}, 1, 1, {}),
    "gather-int32": ("Gather", {"x": X}, {"i": np.array([[1], [0]], np.int32)}, 1, 1, {}),
    "lt-same-shape": ("LT", {"x": X, "z": _f(2, 3, 4, 5)}, {}, 1, 1, {}),
    "lt-numpy": ("LT", {"x": X}, {"w": _f(3, 1, 1)}, 1, 1, {}),
    "box-nms-limit": ("BoxWithNMSLimit", {"s": NMS_SCORES, "b": NMS_BOXES}, {}, 3, 3,
                      dict(score_thresh=0.2, nms=0.4, detections_per_im=6, cls_agnostic_bbox_reg=1, legacy_plus_one=0)),
    "box-nms-no-limit": ("BoxWithNMSLimit", {"s": NMS_SCORES, "b": NMS_BOXES}, {}, 3, 3,
                         dict(score_thresh=0.3, nms=0.5, detections_per_im=-1, cls_agnostic_bbox_reg=1,
                              legacy_plus_one=0)),
}

# Cases an opset cannot express: refused below this opset, with the reason's words.
REFUSED_BELOW: dict[str, tuple[int, str]] = {
    "mul-numpy-gap": (7, "broadcasts onto [2, 3, 4, 5] in a way ONNX before opset 7 cannot express"),
    "add-numpy-enlarges": (7, "broadcasting that enlarges the first input needs opset 7 or later"),
    "resizenearest-2x3": (7, "needs opset 7 or later: ONNX has no standard Upsample before opset 7"),
    "resizenearest-default": (7, "needs opset 7 or later: ONNX has no standard Upsample before opset 7"),
    "lt-numpy": (7, "needs NumPy broadcasting, which ONNX's Less has from opset 7"),
    "box-nms-limit": (10, "NonMaxSuppression from opset 10"),
    "box-nms-no-limit": (10, "NonMaxSuppression from opset 10"),
}

_THEIRS: dict[str, dict[str, np.ndarray]] = {}  # real Caffe2's outputs, by case id, computed on first use


def _model(case: str) -> Caffe2Model:
    """The case's operator alone, reading the feeds then the weights, writing y, y1, ..."""
    op_type, feeds, weights, n_out, n_ext, args = CASES[case]
    net = schema.NetDef(name="sweep")
    inputs, outputs = [*feeds, *weights], ["y"] + [f"y{i}" for i in range(1, n_out)]
    net.op.append(make_op(op_type, inputs, outputs, name=case, **args))
    net.external_input.extend(inputs)
    net.external_output.extend(outputs[:n_ext])
    return Caffe2Model(net, dict(weights), {k: v.shape for k, v in feeds.items()})


def _theirs(case: str, real_caffe2) -> dict[str, np.ndarray]:
    if case not in _THEIRS:
        model = _model(case)
        _THEIRS[case] = real_caffe2.run(model, CASES[case][1], fetch=list(model.predict_net.external_output))
    return _THEIRS[case]


def _export(case: str, opset: int, **options: Any) -> onnx.ModelProto:
    return caffe2_to_onnx(_model(case), ExportOptions(opset=opset, **options)).to_proto()


def _run(proto: onnx.ModelProto, opset: int, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return run_with("onnxruntime" if opset >= 7 else "reference", proto, dict(feeds))


def _problems(case: str, opset: int, theirs: Mapping[str, np.ndarray]) -> list[str]:
    """What is wrong with the case exported at ``opset`` (nothing: an empty list)."""
    op_type, feeds, _, _, _, _ = CASES[case]
    below, reason = REFUSED_BELOW.get(case, (0, ""))
    try:
        proto = _export(case, opset)
    except ExportError as exc:
        if opset < below and reason in str(exc) and f"{op_type} '{case}'" in str(exc):
            return []
        return [f"opset {opset}: export refused: {exc}"]
    if opset < below:
        return [f"opset {opset}: exported what it should refuse ({reason})"]
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input][:len(feeds)] == [f"{k}_0" for k in feeds]
    outputs = list(_model(case).predict_net.external_output)
    assert [o.name for o in proto.graph.output] == [f"{name}_1" for name in outputs]
    ours = _run(proto, opset, {f"{k}_0": v for k, v in feeds.items()})
    problems = []
    for name in outputs:
        mine, real = np.asarray(ours[f"{name}_1"]), theirs[name]
        if mine.dtype != real.dtype:
            problems.append(f"opset {opset}: {name} is {mine.dtype}, real Caffe2 gives {real.dtype}")
        if max_error(mine, real) > bound(real):
            problems.append(f"opset {opset}: {name} {mine.shape} differs from real Caffe2 {real.shape} "
                            f"by {max_error(mine, real):.3g}")
    return problems


def test_the_sweep_covers_every_handler() -> None:
    assert {c[0] for c in CASES.values()} == set(REGISTRY)
    assert {3, 5, 6, 7, 9, 10, 11, 12, 13, LATEST} <= set(OPSETS)


@pytest.mark.parametrize("case", CASES)
def test_exports_compute_as_real_caffe2_at_every_opset(case: str, real_caffe2) -> None:
    theirs = _theirs(case, real_caffe2)
    problems = [p for opset in OPSETS for p in _problems(case, opset, theirs)]
    assert not problems, "\n".join(problems)


def test_softmax_on_a_middle_axis_keeps_its_shape_from_opset_13(real_caffe2) -> None:
    """Softmax(axis=2) on [2, 3, 4, 5]: the opset-13 form (Flatten, Softmax, Reshape) restores the
    batch (its Reshape once copied the flattened dim 0, 6, for the batch, 2)."""
    for opset in (13, LATEST):
        assert not _problems("softmax-axis-2", opset, _theirs("softmax-axis-2", real_caffe2))


# -- attribute-level facts -------------------------------------------------------------------------

def _nodes(case: str, opset: int, op_type: str) -> list[onnx.NodeProto]:
    return [n for n in _export(case, opset).graph.node if n.op_type == op_type]


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _init(proto: onnx.ModelProto, name: str) -> np.ndarray:
    return next(numpy_helper.to_array(t) for t in proto.graph.initializer if t.name == name)


@pytest.mark.parametrize("opset", [3, 5, 6])
@pytest.mark.parametrize("case, op_type, attrs", [
    ("add-bcast-axis1-weight", "Add", {"broadcast": 1, "axis": 1}),
    ("sub-bcast-axis1-feed", "Sub", {"broadcast": 1, "axis": 1}),
    ("mul-bcast-trailing", "Mul", {"broadcast": 1}),
    ("div-bcast-axis0", "Div", {"broadcast": 1, "axis": 0}),
    ("add-numpy-suffix", "Add", {"broadcast": 1, "axis": 3}),
    ("sub-numpy-middle-feed", "Sub", {"broadcast": 1, "axis": 1}),
    ("mul-numpy-ones", "Mul", {"broadcast": 1}),
    ("div-same-shape", "Div", {}),
    ("pow-bcast-axis2", "Pow", {"broadcast": 1, "axis": 2}),
    ("pow-exponent", "Pow", {"broadcast": 1}),
    ("pow-same-shape", "Pow", {}),
    ("scale", "Mul", {"broadcast": 1}),
    ("lrn-alpha-0", "Mul", {"broadcast": 1}),
    ("dropout-is-test", "Dropout", {"is_test": 1, "ratio": pytest.approx(0.3)}),
    ("spatialbn-epsilon", "BatchNormalization", {"is_test": 1, "spatial": 1, "epsilon": pytest.approx(0.3)}),
    ("fc-4d", "Gemm", {"broadcast": 1, "transB": 1}),
])
def test_legacy_nodes_carry_their_attributes(case: str, op_type: str, attrs: dict[str, Any], opset: int) -> None:
    (node,) = _nodes(case, opset, op_type)
    got = _attrs(node)
    got.pop("consumed_inputs", None)
    assert got == attrs


@pytest.mark.parametrize("opset", [o for o in OPSETS if o >= 7])
def test_modern_nodes_drop_the_legacy_attributes(opset: int) -> None:
    for case in ("add-bcast-axis1-weight", "pow-bcast-axis2", "scale", "lrn-alpha-0", "fc-4d", "dropout-is-test",
                 "spatialbn-epsilon"):
        for node in _export(case, opset).graph.node:
            if node.op_type in ("Flatten", "Reshape"):
                continue
            assert not {"broadcast", "axis", "is_test", "consumed_inputs"} & set(_attrs(node)), (case, node)


def test_batchnorm_consumed_inputs_only_before_6() -> None:
    assert _attrs(_nodes("spatialbn-epsilon", 5, "BatchNormalization")[0])["consumed_inputs"] == [0, 0, 0, 1, 1]
    for opset in OPSETS[OPSETS.index(6):]:
        assert "consumed_inputs" not in _attrs(_nodes("spatialbn-epsilon", opset, "BatchNormalization")[0])


@pytest.mark.parametrize("opset", [7, 13, LATEST])
def test_alignment_reshape_from_7(opset: int) -> None:
    """From 7 a fed operand is lined up by a Reshape node (int64 shape input), a weight by a new
    initializer holding the same values."""
    proto = _export("sub-bcast-axis1-feed", opset)
    (node,) = [n for n in proto.graph.node if n.op_type == "Reshape"]
    assert node.input[0] == "z_0" and list(_init(proto, node.input[1])) == [3, 4, 1]
    weight = _export("add-bcast-axis1-weight", opset)
    assert not [n for n in weight.graph.node if n.op_type == "Reshape"]
    (add,) = weight.graph.node
    np.testing.assert_array_equal(_init(weight, add.input[1]), CASES["add-bcast-axis1-weight"][2]["w"].reshape(3, 1, 1))


@pytest.mark.parametrize("opset", [3, 4, 5, 6])
def test_legacy_operand_reshape_form(opset: int) -> None:
    proto = _export("sub-numpy-middle-feed", opset)
    (node,) = [n for n in proto.graph.node if n.op_type == "Reshape"]
    if opset < 5:
        assert list(node.input) == ["z_0"] and _attrs(node) == {"shape": [3]}
    else:
        assert node.input[0] == "z_0" and list(_init(proto, node.input[1])) == [3] and not _attrs(node)
    weight = _export("add-numpy-suffix", opset)
    assert not [n for n in weight.graph.node if n.op_type == "Reshape"]
    (add,) = weight.graph.node
    assert _init(weight, add.input[1]).shape == (5,)


@pytest.mark.parametrize("to, onnx_code, name", [(2, 6, "INT32"), (10, 7, "INT64"), (13, 11, "DOUBLE"), (1, 1, "FLOAT")])
def test_cast_targets(to: int, onnx_code: int, name: str) -> None:
    case = {2: "cast-int32", 10: "cast-int64", 13: "cast-double", 1: "cast-float"}[to]
    for opset in OPSETS:
        proto = _export(case, opset)
        (node,) = proto.graph.node
        want = name.encode() if opset < 6 else onnx_code
        assert _attrs(node)["to"] == want
        assert proto.graph.output[0].type.tensor_type.elem_type == onnx_code


def test_caffe_names_and_dynamic_batch() -> None:
    proto = _export("fc-axis-2", 11, names="caffe", dynamic_batch=True)
    assert [i.name for i in proto.graph.input][:1] == ["x"] and [o.name for o in proto.graph.output] == ["y"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    assert proto.opset_import[0].version == 11 and proto.producer_name == "zooforge"


@pytest.mark.parametrize("opset", OPSETS)
def test_avgpool_include_pad_form(opset: int) -> None:
    """count_include_pad: an explicit zero Pad (attribute before 11) then an unpadded pool below 7;
    one AveragePool with count_include_pad=1 from 7."""
    nodes = _export("avgpool-include-pad", opset).graph.node
    if opset < 7:
        assert [n.op_type for n in nodes] == ["Pad", "AveragePool"]
        assert _attrs(nodes[0])["pads"] == [0, 0, 1, 1, 0, 0, 1, 1] and _attrs(nodes[1])["pads"] == [0, 0, 0, 0]
    else:
        (node,) = nodes
        assert node.op_type == "AveragePool" and _attrs(node)["count_include_pad"] == 1


def test_handler_families_build_the_handlers_they_are_asked_for() -> None:
    """The family factories run at import (out of a forked mutant run's reach): called here directly."""
    from zooforge.converters.onnx.handlers.elementwise import _Binary, _binary, _unary, _Variadic, _variadic

    unary = _unary("Foo", "Bar", (1, 6), alpha="beta")
    assert (unary.__name__, unary.caffe2_type, unary.onnx_type, unary.emits) == ("Foo", "Foo", "Bar", ("Bar",))
    assert unary.versions() == [1, 6] and dict(unary.attr_args) == {"alpha": "beta"}
    binary = _binary("Foo", "Bar", (1, 6, 7, 13))
    assert (binary.caffe2_type, binary.onnx_type, binary.emits) == ("Foo", "Bar", ("Bar", "Reshape"))
    assert binary.versions() == [1, 6, 7, 13]
    assert [binary.emitter(v).__func__ for v in (1, 6, 7, 13)] == [_Binary.legacy.__func__] * 2 + \
        [_Binary.numpy_style.__func__] * 2
    variadic = _variadic("Foo", "Bar", (1, 8))
    assert (variadic.caffe2_type, variadic.emits, variadic.versions()) == ("Foo", ("Bar",), [1, 8])
    assert variadic.emitter(8).__func__ is _Variadic.emit.__func__
