"""Cross-checks of zooforge.versioning.legacy_ops and zooforge.versioning.runtime.

Every legacy kernel runs a single-node model at the legacy opsets it serves (3..6) through
``run_model`` (which must pick the reference evaluator there) and is compared with the
equivalent modern model run by onnxruntime. LRN is also checked against a hand-written loop.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np
import onnx
import pytest
from onnx import TensorProto, defs, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from zooforge.versioning import runtime
from zooforge.versioning.errors import ZooforgeError
from zooforge.versioning.legacy_ops import KERNELS, kernels_for_opset
from zooforge.versioning.opsets import opset_info

ATOL = RTOL = 1e-6
LEGACY = range(3, 7)
RNG_SEED = 20240607


@dataclasses.dataclass
class Graph:
    nodes: list
    feeds: dict
    outputs: list
    inits: dict = dataclasses.field(default_factory=dict)
    opset: int = 0


@dataclasses.dataclass
class Case:
    name: str
    legacy: Callable[[int], Graph]
    modern: Callable[[], Graph]
    opsets: tuple = tuple(LEGACY)


def build(g: Graph, opset: int, like: list | None = None) -> onnx.ModelProto:
    """The model of ``g``; ``like`` gives arrays whose dtypes and shapes type the outputs."""
    info = opset_info(opset)
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in g.inits.items()]
    inputs = [
        helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
        for k, v in g.feeds.items()
    ]
    if info.initializers_are_inputs:
        inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in inits]
    if like is None:
        outputs = [helper.make_empty_tensor_value_info(o) for o in g.outputs]  # ORT infers
    else:
        outputs = [
            helper.make_tensor_value_info(o, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
            for o, a in zip(g.outputs, like)
        ]
    graph = helper.make_graph(g.nodes, "kernel_check", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = info.ir_version
    return model


N = helper.make_node


def rng():
    return np.random.default_rng(RNG_SEED)


def x4(shape=(2, 3, 5, 5), scale=1.0, positive=False):
    a = (rng().standard_normal(shape) * scale).astype(np.float32)
    return np.abs(a) + np.float32(0.1) if positive else a


def ci(opset, n=1):
    """consumed_inputs as Caffe2's exporter wrote it (ops of version 1 only)."""
    return {"consumed_inputs": [0] * n} if opset < 6 else {}


CASES: list[Case] = []


def unary(op, modern_opset, attrs=None, positive=False, with_ci=True):
    attrs = attrs or {}
    x = x4(positive=positive)
    CASES.append(Case(
        f"{op}{'+ci' if with_ci else ''}",
        lambda o: Graph([N(op, ["x"], ["y"], **attrs, **(ci(o) if with_ci else {}))], {"x": x}, ["y"]),
        lambda: Graph([N(op, ["x"], ["y"], **attrs)], {"x": x}, ["y"], opset=modern_opset),
    ))


for _ci in (True, False):
    unary("Relu", 14, with_ci=_ci)
    unary("LeakyRelu", 16, {"alpha": 0.1}, with_ci=_ci)
    unary("Elu", 13, {"alpha": 0.7}, with_ci=_ci)
    unary("Sigmoid", 13, with_ci=_ci)
    unary("Tanh", 13, with_ci=_ci)
    unary("Abs", 13, with_ci=_ci)
    unary("Exp", 13, with_ci=_ci)
    unary("Log", 13, positive=True, with_ci=_ci)
    unary("Sqrt", 13, positive=True, with_ci=_ci)
unary("Softplus", 13, with_ci=False)
unary("Identity", 14, with_ci=False)
unary("GlobalAveragePool", 13, with_ci=False)
unary("GlobalMaxPool", 13, with_ci=False)

# PRelu: legacy slope (C,) is per channel; modern needs (C, 1, 1).
_x = x4()
for _slope in (np.array([0.1, 0.2, 0.3], np.float32), np.array([0.25], np.float32)):
    CASES.append(Case(
        f"PRelu slope{_slope.shape}",
        lambda o, s=_slope: Graph([N("PRelu", ["x", "s"], ["y"], **ci(o))], {"x": _x}, ["y"], {"s": s}),
        lambda s=_slope: Graph([N("PRelu", ["x", "s"], ["y"])], {"x": _x}, ["y"],
                               {"s": s.reshape(-1, 1, 1)}, opset=9),
    ))

# Legacy broadcast binary ops.
_b_chan = np.array([0.5, -1.5, 2.0], np.float32)
_b_w = np.array([1.0, 2.0, -0.5, 0.25, 3.0], np.float32)
_b_nc = (np.arange(6, dtype=np.float32).reshape(2, 3) + 1) / 4
_same = x4(scale=0.5) + np.float32(3)
_variants = {
    "axis1": ({"broadcast": 1, "axis": 1}, _b_chan, _b_chan.reshape(3, 1, 1)),
    "suffix": ({"broadcast": 1}, _b_w, _b_w),
    "axis0": ({"broadcast": 1, "axis": 0}, _b_nc, _b_nc.reshape(2, 3, 1, 1)),
    "scalar1": ({"broadcast": 1}, np.array([1.75], np.float32), np.array([1.75], np.float32)),
    "scalar0d": ({"broadcast": 1}, np.array(1.75, np.float32), np.array(1.75, np.float32)),
    "same": ({}, _same, _same),
}
for _op in ("Add", "Sub", "Mul", "Div"):
    for _vn, (_attrs, _bl, _bm) in _variants.items():
        CASES.append(Case(
            f"{_op} {_vn}",
            lambda o, op=_op, a=_attrs, b=_bl: Graph(
                [N(op, ["x", "b"], ["y"], **a, **ci(o))], {"x": _x}, ["y"], {"b": b}),
            lambda op=_op, b=_bm: Graph([N(op, ["x", "b"], ["y"])], {"x": _x}, ["y"], {"b": b}, opset=14),
        ))
_xp = x4(positive=True)
CASES.append(Case(
    "Pow axis1",
    lambda o: Graph([N("Pow", ["x", "e"], ["y"], broadcast=1, axis=1)], {"x": _xp}, ["y"], {"e": _b_chan}),
    lambda: Graph([N("Pow", ["x", "e"], ["y"])], {"x": _xp}, ["y"], {"e": _b_chan.reshape(3, 1, 1)}, opset=13),
))
CASES.append(Case(
    "Pow scalar",
    lambda o: Graph([N("Pow", ["x", "e"], ["y"], broadcast=1)], {"x": _xp}, ["y"], {"e": np.array([2.0], np.float32)}),
    lambda: Graph([N("Pow", ["x", "e"], ["y"])], {"x": _xp}, ["y"], {"e": np.array([2.0], np.float32)}, opset=13),
))
CASES.append(Case(
    "Pow same",
    lambda o: Graph([N("Pow", ["x", "e"], ["y"])], {"x": _xp}, ["y"], {"e": _same}),
    lambda: Graph([N("Pow", ["x", "e"], ["y"])], {"x": _xp}, ["y"], {"e": _same}, opset=13),
))

for _op in ("Sum", "Max"):
    _a, _b, _c = x4(), x4() * 2, x4() - 1
    CASES.append(Case(
        _op,
        lambda o, op=_op, a=_a, b=_b, c=_c: Graph([N(op, ["a", "b", "c"], ["y"], **ci(o))], {"a": a, "b": b, "c": c}, ["y"]),
        lambda op=_op, a=_a, b=_b, c=_c: Graph([N(op, ["a", "b", "c"], ["y"])], {"a": a, "b": b, "c": c}, ["y"], opset=13),
    ))

# LRN: magnitude 10 inputs as in DESIGN.md; even and odd sizes.
_xl = x4(scale=10.0, shape=(2, 6, 4, 4))
for _size in (5, 3):
    _la = {"size": _size, "alpha": 1e-3, "beta": 0.75, "bias": 2.0}
    CASES.append(Case(
        f"LRN size{_size}",
        lambda o, a=_la: Graph([N("LRN", ["x"], ["y"], **a)], {"x": _xl}, ["y"]),
        lambda a=_la: Graph([N("LRN", ["x"], ["y"], **a)], {"x": _xl}, ["y"], opset=13),
    ))

_xpool = x4(shape=(2, 3, 7, 7))
for _name, _pa in {
    "k3s2p1": {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
    "k3s2p0011": {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [0, 0, 1, 1]},
    "k2": {"kernel_shape": [2, 2]},
}.items():
    CASES.append(Case(
        f"MaxPool {_name}",
        lambda o, a=_pa: Graph([N("MaxPool", ["x"], ["y"], **a)], {"x": _xpool}, ["y"]),
        lambda a=_pa: Graph([N("MaxPool", ["x"], ["y"], **a)], {"x": _xpool}, ["y"], opset=12),
    ))
    CASES.append(Case(
        f"AveragePool {_name}",
        lambda o, a=_pa: Graph([N("AveragePool", ["x"], ["y"], **a)], {"x": _xpool}, ["y"]),
        lambda a=_pa: Graph([N("AveragePool", ["x"], ["y"], count_include_pad=0, **a)], {"x": _xpool}, ["y"], opset=11),
    ))

_w = x4(shape=(4, 3, 3, 3))
_wg = x4(shape=(3, 1, 3, 3))
_bias4 = np.array([0.1, -0.2, 0.3, 0.0], np.float32)
for _name, _ca, _ww, _bb in (
    ("pads strides bias", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "strides": [2, 2]}, _w, _bias4),
    ("dilations", {"dilations": [2, 2]}, _w, None),
    ("group3", {"group": 3, "pads": [1, 0, 1, 0]}, _wg, None),
):
    _ins = ["x", "w"] + (["b"] if _bb is not None else [])
    _inits = {"w": _ww, **({"b": _bb} if _bb is not None else {})}
    CASES.append(Case(
        f"Conv {_name}",
        lambda o, a=_ca, i=_ins, it=_inits: Graph([N("Conv", i, ["y"], **a)], {"x": _xpool}, ["y"], it),
        lambda a=_ca, i=_ins, it=_inits: Graph([N("Conv", i, ["y"], **a)], {"x": _xpool}, ["y"], it, opset=11),
    ))
_wt = x4(shape=(3, 2, 3, 3))
CASES.append(Case(
    "ConvTranspose s2p1",
    lambda o: Graph([N("ConvTranspose", ["x", "w", "b"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1])],
                    {"x": _xpool}, ["y"], {"w": _wt, "b": np.array([0.5, -0.5], np.float32)}),
    lambda: Graph([N("ConvTranspose", ["x", "w", "b"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1])],
                  {"x": _xpool}, ["y"], {"w": _wt, "b": np.array([0.5, -0.5], np.float32)}, opset=11),
))

_bn = {
    "scale": np.array([1.0, 0.5, 2.0], np.float32), "bias": np.array([0.1, 0.2, -0.3], np.float32),
    "mean": np.array([0.05, -0.1, 0.2], np.float32), "var": np.array([0.9, 1.5, 0.3], np.float32),
}
CASES.append(Case(
    "BatchNormalization",
    lambda o: Graph([N("BatchNormalization", ["x", "scale", "bias", "mean", "var"], ["y"], epsilon=1e-3, is_test=1,
                       **({"consumed_inputs": [0, 0, 0, 1, 1]} if o < 6 else {}))], {"x": _x}, ["y"], dict(_bn)),
    lambda: Graph([N("BatchNormalization", ["x", "scale", "bias", "mean", "var"], ["y"], epsilon=1e-3)],
                  {"x": _x}, ["y"], dict(_bn), opset=15),
))

_ga, _gb = x4(shape=(4, 6)), x4(shape=(5, 6)) * 0.5
for _name, _gc, _extra in (
    ("bcast C(5,)", np.array([1, 2, 3, 4, 5], np.float32), {"broadcast": 1}),
    ("bcast C(1,)", np.array([1.5], np.float32), {"broadcast": 1}),
    ("full C", x4(shape=(4, 5)), {}),
):
    CASES.append(Case(
        f"Gemm {_name}",
        lambda o, c=_gc, e=_extra: Graph([N("Gemm", ["a", "b", "c"], ["y"], transB=1, alpha=0.5, beta=2.0, **e)],
                                         {"a": _ga}, ["y"], {"b": _gb, "c": c}),
        lambda c=_gc: Graph([N("Gemm", ["a", "b", "c"], ["y"], transB=1, alpha=0.5, beta=2.0)],
                            {"a": _ga}, ["y"], {"b": _gb, "c": c}, opset=11),
    ))
CASES.append(Case(
    "Gemm transA",
    lambda o: Graph([N("Gemm", ["a", "b", "c"], ["y"], transA=1, broadcast=1)], {"a": _ga.T.copy()}, ["y"],
                    {"b": _gb.T.copy(), "c": np.array([1, 2, 3, 4, 5], np.float32)}),
    lambda: Graph([N("Gemm", ["a", "b", "c"], ["y"], transA=1)], {"a": _ga.T.copy()}, ["y"],
                  {"b": _gb.T.copy(), "c": np.array([1, 2, 3, 4, 5], np.float32)}, opset=11),
))
CASES.append(Case(
    "MatMul",
    lambda o: Graph([N("MatMul", ["a", "b"], ["y"])], {"a": _ga}, ["y"], {"b": _gb.T.copy()}),
    lambda: Graph([N("MatMul", ["a", "b"], ["y"])], {"a": _ga}, ["y"], {"b": _gb.T.copy()}, opset=13),
))

_c1, _c2 = x4(), x4(shape=(2, 4, 5, 5))
CASES.append(Case(
    "Concat default axis", lambda o: Graph([N("Concat", ["a", "b"], ["y"])], {"a": _c1, "b": _c2}, ["y"]),
    lambda: Graph([N("Concat", ["a", "b"], ["y"], axis=1)], {"a": _c1, "b": _c2}, ["y"], opset=13), opsets=(3,),
))
CASES.append(Case(
    "Concat axis1", lambda o: Graph([N("Concat", ["a", "b"], ["y"], axis=1)], {"a": _c1, "b": _c2}, ["y"]),
    lambda: Graph([N("Concat", ["a", "b"], ["y"], axis=1)], {"a": _c1, "b": _c2}, ["y"], opset=13),
))
_xs = x4(shape=(2, 6, 3, 3))
CASES.append(Case(
    "Split equal", lambda o: Graph([N("Split", ["x"], ["y0", "y1", "y2"], axis=1)], {"x": _xs}, ["y0", "y1", "y2"]),
    lambda: Graph([N("Split", ["x"], ["y0", "y1", "y2"], axis=1)], {"x": _xs}, ["y0", "y1", "y2"], opset=13),
))
CASES.append(Case(
    "Split sizes", lambda o: Graph([N("Split", ["x"], ["y0", "y1"], axis=1, split=[2, 4])], {"x": _xs}, ["y0", "y1"]),
    lambda: Graph([N("Split", ["x", "s"], ["y0", "y1"], axis=1)], {"x": _xs}, ["y0", "y1"],
                  {"s": np.array([2, 4], np.int64)}, opset=13),
))
CASES.append(Case(
    "Slice", lambda o: Graph([N("Slice", ["x"], ["y"], starts=[1, -4], ends=[2**31 - 1, 4], axes=[1, 3])], {"x": _x}, ["y"]),
    lambda: Graph([N("Slice", ["x", "st", "en", "ax"], ["y"])], {"x": _x}, ["y"],
                  {"st": np.array([1, -4], np.int64), "en": np.array([2**31 - 1, 4], np.int64),
                   "ax": np.array([1, 3], np.int64)}, opset=13),
))
CASES.append(Case(
    "Slice no axes", lambda o: Graph([N("Slice", ["x"], ["y"], starts=[0, 1], ends=[1, 3])], {"x": _x}, ["y"]),
    lambda: Graph([N("Slice", ["x", "st", "en"], ["y"])], {"x": _x}, ["y"],
                  {"st": np.array([0, 1], np.int64), "en": np.array([1, 3], np.int64)}, opset=13),
))
CASES.append(Case(
    "Reshape-1 attr", lambda o: Graph([N("Reshape", ["x"], ["y"], shape=[0, -1], **ci(o))], {"x": _x}, ["y"]),
    lambda: Graph([N("Reshape", ["x", "s"], ["y"])], {"x": _x}, ["y"], {"s": np.array([0, -1], np.int64)}, opset=14),
    opsets=(3, 4),
))
CASES.append(Case(
    "Reshape-5 input", lambda o: Graph([N("Reshape", ["x", "s"], ["y"])], {"x": _x}, ["y"], {"s": np.array([0, 3, -1], np.int64)}),
    lambda: Graph([N("Reshape", ["x", "s"], ["y"])], {"x": _x}, ["y"], {"s": np.array([0, 3, -1], np.int64)}, opset=14),
    opsets=(5, 6),
))
for _ax in (1, 2, 0):
    CASES.append(Case(
        f"Flatten axis{_ax}", lambda o, a=_ax: Graph([N("Flatten", ["x"], ["y"], axis=a)], {"x": _x}, ["y"]),
        lambda a=_ax: Graph([N("Flatten", ["x"], ["y"], axis=a)], {"x": _x}, ["y"], opset=13),
    ))
_xq = x4(shape=(2, 3, 1, 1))
CASES.append(Case(
    "Squeeze", lambda o: Graph([N("Squeeze", ["x"], ["y"], axes=[2, 3])], {"x": _xq}, ["y"]),
    lambda: Graph([N("Squeeze", ["x", "a"], ["y"])], {"x": _xq}, ["y"], {"a": np.array([2, 3], np.int64)}, opset=13),
))
CASES.append(Case(
    "Unsqueeze", lambda o: Graph([N("Unsqueeze", ["x"], ["y"], axes=[0, 3])], {"x": _x}, ["y"]),
    lambda: Graph([N("Unsqueeze", ["x", "a"], ["y"])], {"x": _x}, ["y"], {"a": np.array([0, 3], np.int64)}, opset=13),
))
for _perm in ([0, 2, 3, 1], None):
    _pa = {"perm": _perm} if _perm else {}
    CASES.append(Case(
        f"Transpose {_perm}", lambda o, a=_pa: Graph([N("Transpose", ["x"], ["y"], **a)], {"x": _x}, ["y"]),
        lambda a=_pa: Graph([N("Transpose", ["x"], ["y"], **a)], {"x": _x}, ["y"], opset=13),
    ))
CASES.append(Case(
    "Dropout is_test", lambda o: Graph([N("Dropout", ["x"], ["y"], is_test=1, ratio=0.3, **ci(o))], {"x": _x}, ["y"]),
    lambda: Graph([N("Dropout", ["x"], ["y"])], {"x": _x}, ["y"], opset=13),
))
_x2 = x4(shape=(4, 7))
CASES.append(Case(
    "Softmax 2-D", lambda o: Graph([N("Softmax", ["x"], ["y"])], {"x": _x2}, ["y"]),
    lambda: Graph([N("Softmax", ["x"], ["y"], axis=1)], {"x": _x2}, ["y"], opset=13),
))
CASES.append(Case(
    "Softmax 4-D axis1 (coerced)", lambda o: Graph([N("Softmax", ["x"], ["y"], axis=1)], {"x": _x}, ["y"]),
    lambda: Graph([N("Flatten", ["x"], ["f"], axis=1), N("Softmax", ["f"], ["s"], axis=1), N("Reshape", ["s", "shp"], ["y"])],
                  {"x": _x}, ["y"], {"shp": np.array(_x.shape, np.int64)}, opset=13),
))
CASES.append(Case(
    "Softmax 4-D axis2 (coerced)", lambda o: Graph([N("Softmax", ["x"], ["y"], axis=2)], {"x": _x}, ["y"]),
    lambda: Graph([N("Flatten", ["x"], ["f"], axis=2), N("Softmax", ["f"], ["s"], axis=1), N("Reshape", ["s", "shp"], ["y"])],
                  {"x": _x}, ["y"], {"shp": np.array(_x.shape, np.int64)}, opset=13),
))
_cv = numpy_helper.from_array(x4(shape=(2, 3)), "v")
CASES.append(Case(
    "Constant", lambda o: Graph([N("Constant", [], ["y"], value=_cv)], {}, ["y"]),
    lambda: Graph([N("Constant", [], ["y"], value=_cv)], {}, ["y"], opset=13),
))
for _mode, _val in (("constant", 1.5), ("reflect", None), ("edge", None)):
    _pads = [0, 0, 1, 2, 0, 0, 2, 1]
    _pattr = {"mode": _mode, **({"value": _val} if _val is not None else {})}
    _mi = {"p": np.array(_pads, np.int64), **({"v": np.array(_val, np.float32)} if _val is not None else {})}
    CASES.append(Case(
        f"Pad {_mode}", lambda o, a=_pattr: Graph([N("Pad", ["x"], ["y"], pads=_pads, **a)], {"x": _x}, ["y"]),
        lambda m=_mode, i=_mi: Graph([N("Pad", ["x", *i], ["y"], mode=m)], {"x": _x}, ["y"], dict(i), opset=13),
    ))
CASES.append(Case(
    "Clip min max", lambda o: Graph([N("Clip", ["x"], ["y"], min=-0.5, max=0.7, **ci(o))], {"x": _x}, ["y"]),
    lambda: Graph([N("Clip", ["x", "lo", "hi"], ["y"])], {"x": _x}, ["y"],
                  {"lo": np.array(-0.5, np.float32), "hi": np.array(0.7, np.float32)}, opset=13),
))
CASES.append(Case(
    "Clip min only", lambda o: Graph([N("Clip", ["x"], ["y"], min=0.0)], {"x": _x}, ["y"]),
    lambda: Graph([N("Clip", ["x", "lo"], ["y"])], {"x": _x}, ["y"], {"lo": np.array(0.0, np.float32)}, opset=13),
))
for _keep in (1, 0):
    CASES.append(Case(
        f"ArgMax keepdims{_keep}", lambda o, k=_keep: Graph([N("ArgMax", ["x"], ["y"], axis=1, keepdims=k)], {"x": _x}, ["y"]),
        lambda k=_keep: Graph([N("ArgMax", ["x"], ["y"], axis=1, keepdims=k)], {"x": _x}, ["y"], opset=13),
    ))
_xc = (x4() * 10).astype(np.float32)
for _name, _to in (("DOUBLE", TensorProto.DOUBLE), ("INT32", TensorProto.INT32), ("FLOAT", TensorProto.FLOAT)):
    CASES.append(Case(
        f"Cast {_name}",
        lambda o, n=_name, t=_to: Graph([N("Cast", ["x"], ["y"], to=(n if o < 6 else t))], {"x": _xc}, ["y"]),
        lambda t=_to: Graph([N("Cast", ["x"], ["y"], to=t)], {"x": _xc}, ["y"], opset=13),
    ))


def _case_id(case_opset):
    case, opset = case_opset
    return f"{case.name}@{opset}"


PAIRS = [(c, o) for c in CASES for o in c.opsets]


def _active(op_type: str, opset: int) -> int:
    return defs.get_schema(op_type, opset, "").since_version


def _assert_same(got: dict, expected: dict, rtol=RTOL, atol=ATOL):
    assert list(got) == list(expected)
    for name in expected:
        g, e = got[name], expected[name]
        assert g.shape == e.shape, name
        assert g.dtype == e.dtype, (name, g.dtype, e.dtype)
        np.testing.assert_allclose(g, e, rtol=rtol, atol=atol, err_msg=name)


@pytest.mark.parametrize("pair", PAIRS, ids=_case_id)
def test_legacy_kernel_matches_modern_onnxruntime(pair):
    case, opset = pair
    legacy, modern = case.legacy(opset), case.modern()
    expected = runtime.run_with("onnxruntime", build(modern, modern.opset), modern.feeds)
    model = build(legacy, opset, list(expected.values()))
    onnx.checker.check_model(model)
    assert runtime.select_runtime(model) == "reference"
    got = runtime.run_model(model, legacy.feeds)
    _assert_same(got, expected)


def test_every_kernel_is_cross_checked():
    covered = {(c.legacy(o).nodes[0].op_type, _active(c.legacy(o).nodes[0].op_type, o)) for c, o in PAIRS}
    covered |= {("Softmax", 11), ("LRN", 13)}  # checked at opsets 11 and 13 below
    covered |= {("BatchNormalization", 7), ("BatchNormalization", 9)}  # test_batchnorm_inference_...
    assert set(KERNELS) <= covered, sorted(set(KERNELS) - covered)


def test_kernels_only_where_needed():
    assert {c.since_version for c in kernels_for_opset(6) if c.__name__ == "Gemm"} == {6}
    assert {c.__name__ for c in kernels_for_opset(13)} == {"LRN", "BatchNormalization"}  # BN-9's fix
    assert {c.__name__ for c in kernels_for_opset(15)} == {"LRN"}
    assert "Relu" not in {c.__name__ for c in kernels_for_opset(3)}


# ---------------------------------------------------------------------------- LRN


def lrn_loop(x: np.ndarray, size: int, alpha: float, beta: float, bias: float) -> np.ndarray:
    """The spec formula, one channel at a time."""
    channels = x.shape[1]
    y = np.empty(x.shape, np.float64)
    for c in range(channels):
        lo = max(0, c - (size - 1) // 2)
        hi = min(channels - 1, c + math.ceil((size - 1) / 2))
        square_sum = (x[:, lo : hi + 1].astype(np.float64) ** 2).sum(axis=1)
        y[:, c] = x[:, c] / (bias + alpha / size * square_sum) ** beta
    return y.astype(x.dtype)


def _lrn_model(opset: int, size: int):
    attrs = {"size": size, "alpha": 1e-3, "beta": 0.75, "bias": 2.0}
    x = x4(scale=10.0, shape=(2, 7, 3, 3))
    return build(Graph([N("LRN", ["x"], ["y"], **attrs)], {"x": x}, ["y"]), opset), x, attrs


@pytest.mark.parametrize("opset", [3, 6, 12, 13, defs.onnx_opset_version()])
@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
def test_lrn_kernel_matches_spec_loop(opset, size):
    model, x, attrs = _lrn_model(opset, size)
    got = runtime.run_with("reference", model, {"x": x})["y"]
    np.testing.assert_allclose(got, lrn_loop(x, **attrs), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("size", [3, 5])
def test_lrn_kernel_matches_onnxruntime_lrn13(size):
    model, x, _ = _lrn_model(13, size)
    ours = runtime.run_with("reference", model, {"x": x})["y"]
    ort = runtime.run_with("onnxruntime", model, {"x": x})["y"]
    assert runtime.select_runtime(model) == "onnxruntime"
    np.testing.assert_allclose(ours, ort, rtol=RTOL, atol=ATOL)


def test_stock_reference_lrn_is_wrong():
    model, x, attrs = _lrn_model(13, 5)
    stock = ReferenceEvaluator(model).run(None, {"x": x})[0]
    spec = lrn_loop(x, **attrs)
    if np.allclose(stock, spec, rtol=RTOL, atol=ATOL):
        pytest.skip(f"onnx {onnx.__version__} fixed its reference LRN; our kernel is now redundant")
    assert np.abs(stock - spec).max() > 1e-3


def test_softmax11_coerced_matches_onnxruntime():
    x = x4()
    model = build(Graph([N("Softmax", ["x"], ["y"], axis=1)], {"x": x}, ["y"]), 11)
    _assert_same(runtime.run_with("reference", model, {"x": x}), runtime.run_with("onnxruntime", model, {"x": x}))


def test_batchnorm1_training_mode_uses_batch_statistics():
    x = x4()
    g = Graph([N("BatchNormalization", ["x", "scale", "bias", "mean", "var"], ["y", "m", "v"],
                 consumed_inputs=[0, 0, 0, 1, 1], epsilon=1e-3, momentum=0.5)], {"x": x}, ["y", "m", "v"], dict(_bn))
    out = runtime.run_model(build(g, 3), {"x": x})
    bm, bv = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    exp = (x - bm.reshape(3, 1, 1)) / np.sqrt(bv.reshape(3, 1, 1) + 1e-3) * _bn["scale"].reshape(3, 1, 1)
    np.testing.assert_allclose(out["y"], exp + _bn["bias"].reshape(3, 1, 1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["m"], 0.5 * _bn["mean"] + 0.5 * bm, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------- runtime selection


def _relu(opset: int) -> onnx.ModelProto:
    return build(Graph([N("Relu", ["x"], ["y"])], {"x": x4()}, ["y"]), opset)


def test_run_model_picks_onnxruntime_from_opset7(monkeypatch):
    calls = []
    original = runtime.Session.run

    def spy(self, feeds):
        calls.append(self.runtime)
        return original(self, feeds)

    monkeypatch.setattr(runtime.Session, "run", spy)
    for opset in (7, defs.onnx_opset_version(), 6, 3):
        np.testing.assert_array_equal(runtime.run_model(_relu(opset), {"x": x4()})["y"], np.maximum(x4(), 0))
    assert calls == ["onnxruntime", "onnxruntime", "reference", "reference"]


def test_available_runtimes():
    assert runtime.available_runtimes(_relu(3)) == ["reference", "onnxruntime-lifted"]
    assert runtime.available_runtimes(_relu(6)) == ["reference", "onnxruntime-lifted"]
    assert runtime.available_runtimes(_relu(7)) == ["onnxruntime", "reference"]
    assert runtime.select_runtime(_relu(7)) == "onnxruntime"


def test_lifted_runtime_runs_legacy_opsets_on_onnxruntime(monkeypatch):
    import onnxruntime

    seen = []
    original = onnxruntime.InferenceSession.__init__

    def spy(self, source, *args, **kwargs):
        seen.append(onnx.load_from_string(source) if isinstance(source, bytes) else onnx.load(source))
        original(self, source, *args, **kwargs)

    monkeypatch.setattr(onnxruntime.InferenceSession, "__init__", spy)
    for opset in (3, 6):
        graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], **({"consumed_inputs": [0]} if opset < 6 else {}))], "relu",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x4().shape))],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(x4().shape))])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = 3
        session = runtime.Session("onnxruntime-lifted", model)
        np.testing.assert_array_equal(session.run({"x": x4()})["y"], np.maximum(x4(), 0))
        assert session.lifted_from == opset
        assert [i.version for i in seen[-1].opset_import] == [7]  # onnxruntime got the lifted model


def test_lifted_runtime_refuses_models_that_need_no_lift():
    with pytest.raises(runtime.RuntimeUnavailableError, match="needs no lift"):
        runtime.Session("onnxruntime-lifted", _relu(7))


def test_run_model_accepts_bytes_and_paths(tmp_path):
    x = x4()
    model = _relu(6)
    path = tmp_path / "relu.onnx"
    path.write_bytes(model.SerializeToString())
    for m in (model, model.SerializeToString(), path, str(path)):
        np.testing.assert_array_equal(runtime.run_model(m, {"x": x})["y"], np.maximum(x, 0))


def test_unknown_runtime_raises():
    with pytest.raises(ZooforgeError, match="unknown runtime 'tensorrt'"):
        runtime.run_model(_relu(13), {"x": x4()}, runtime="tensorrt")
    with pytest.raises(runtime.UnknownRuntimeError):
        runtime.run_with("ORT", _relu(13), {"x": x4()})


def test_onnxruntime_refused_below_opset7():
    with pytest.raises(runtime.RuntimeUnavailableError, match="opset 5"):
        runtime.run_with("onnxruntime", _relu(5), {"x": x4()})


# ---------------------------------------------------------------------------- BatchNormalization-7/-9


def _bn_model(opset: int):
    x = x4()
    gen = np.random.default_rng(RNG_SEED)
    inits = {"scale": gen.normal(size=3).astype(np.float32), "bias": gen.normal(size=3).astype(np.float32),
             "mean": gen.normal(size=3).astype(np.float32), "var": gen.uniform(0.5, 2.0, 3).astype(np.float32)}
    attrs = {"is_test": 1} if opset < 7 else {}
    g = Graph([N("BatchNormalization", ["x", "scale", "bias", "mean", "var"], ["y"], epsilon=1e-5, **attrs)],
              {"x": x}, ["y"], inits)
    shape = (1, -1, 1, 1)
    spec = ((x - inits["mean"].reshape(shape)) / np.sqrt(inits["var"].reshape(shape) + 1e-5)
            * inits["scale"].reshape(shape) + inits["bias"].reshape(shape))
    return build(g, opset), x, spec


@pytest.mark.parametrize("opset", [7, 8, 9, 12, 13, 14, 15])
def test_batchnorm_inference_matches_the_formula_on_both_runtimes(opset):
    """One output means inference (BN-7 and -9 say so); the stored statistics normalise."""
    model, x, spec = _bn_model(opset)
    for name in ("reference", "onnxruntime"):
        (got,) = runtime.run_with(name, model, {"x": x}).values()
        np.testing.assert_allclose(got, spec, rtol=RTOL, atol=ATOL, err_msg=name)


def test_stock_reference_batchnorm9_is_wrong():
    model, x, spec = _bn_model(9)
    stock = ReferenceEvaluator(model).run(None, {"x": x})[0]
    if np.allclose(stock, spec, rtol=RTOL, atol=ATOL):
        pytest.skip(f"onnx {onnx.__version__} fixed its reference BatchNormalization-9; our kernel is now redundant")
    assert np.abs(stock - spec).max() > 1e-3  # it normalised with the batch's own statistics
