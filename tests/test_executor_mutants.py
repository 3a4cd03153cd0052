"""The NumPy executor where mutation testing (group caffe2-executor) found it untested: the halves
of a stride or dilation pair, names that trigger Caffe2's kernel check, dtypes the kernels must
keep, FC axes at the edge of a shape, Pow's legacy broadcast, Cast's default type, the bound an
operator-count refusal names, and the kernels of the public ``OPERATORS`` table called directly.

Expected values come from the REAL historical Caffe2 (the ``real_caffe2`` fixture) on the same
single-operator NetDef, or are written here (the sentences, a sum of eight values that is exactly
1, the count of outputs asked for); never from the executor itself.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

from zooforge.converters.caffe2 import schema
from zooforge.converters.caffe2.executor import OPERATORS, run_net
from zooforge.converters.caffe2.netdef import Caffe2Model, make_op
from zooforge.converters.errors import NetDefError

from real_caffe2 import RealCaffe2Error
from real_caffe2.conformance import bound, max_error
from test_executor_semantics import _model, _sentence, _shapes

RNG = np.random.default_rng(23)


def _f(*shape: int, dtype: Any = np.float32) -> np.ndarray:
    return RNG.normal(size=shape).astype(dtype)


X = _f(1, 4, 10, 11)
POSITIVE = np.abs(X) + 0.5  # a base Pow raises to any real exponent
V5 = _f(5)
B = 2.0 ** 24  # 2^24 + 1 is not a float32: a float32 running sum drops the 1 next to it
CANCELLING = np.array([-B, 0, 1, B, 0, 0, 0, 0], np.float32).reshape(1, 1, 1, 8)  # exact sum 1
INT_IMAGE = RNG.integers(-5, 5, size=(1, 2, 4, 4)).astype(np.int32)


# id: (op type, feeds, weights, name, args)
COMPUTED: dict[str, tuple[str, dict, dict, str, dict]] = {
    "conv-dilation-h-and-w": ("Conv", {"x": X}, {"w": _f(2, 4, 3, 3)}, "", dict(kernel=3, dilation_h=1, dilation_w=2)),
    # real Caffe2 reads a pair only when both halves are given, and the scalar before the pair
    "conv-dilation-w-alone": ("Conv", {"x": X}, {"w": _f(2, 4, 3, 3)}, "", dict(kernel=3, dilation_w=2)),
    "conv-dilation-h-alone": ("Conv", {"x": X}, {"w": _f(2, 4, 3, 3)}, "", dict(kernel=3, dilation_h=2)),
    "maxpool-stride-w-alone": ("MaxPool", {"x": X}, {}, "", dict(kernel=3, stride_w=2)),
    "conv-stride-and-stride-h": ("Conv", {"x": X}, {"w": _f(2, 4, 3, 3)}, "", dict(kernel=3, stride=2, stride_h=1)),
    "conv-kernel-and-kernel-w": ("Conv", {"x": X}, {"w": _f(2, 4, 3, 3)}, "", dict(kernel=3, kernel_w=2)),
    # an operator named Conv... or ...Pool... needs kernel, kernel_h or kernels
    "conv-named-conv-kernel-h-w": ("Conv", {"x": X}, {"w": _f(2, 4, 3, 2)}, "Conv1", dict(kernel_h=3, kernel_w=2)),
    "conv-named-conv-kernels": ("Conv", {"x": X}, {"w": _f(2, 4, 3, 2)}, "Conv1", dict(kernels=[3, 2])),
    "maxpool-named-pool-kernels": ("MaxPool", {"x": X}, {}, "Pool1", dict(kernels=[3, 2])),
    "convtranspose-float64-bias": ("ConvTranspose", {"x": X}, {"w": _f(4, 2, 3, 3), "b": _f(2, dtype=np.float64)}, "",
                                   dict(kernel=3, stride=2)),
    "fc-1d-input-axis-minus-1": ("FC", {"x": V5}, {"w": _f(3, 5), "b": _f(3)}, "", dict(axis=-1)),
    "fc-1d-weight-axis-w-minus-1": ("FC", {"x": _f(2, 5)}, {"w": _f(5), "b": _f(1)}, "", dict(axis_w=-1)),
    "pow-broadcast-axis-1": ("Pow", {"x": POSITIVE}, {"e": _f(4)}, "", dict(broadcast=1, axis=1)),
    "pow-broadcast-trailing": ("Pow", {"x": POSITIVE}, {"e": _f(11)}, "", dict(broadcast=1)),
    "cast-without-to": ("Cast", {}, {"x": _f(2, 3, dtype=np.float64)}, "", {}),  # Caffe2's default is FLOAT
    # Caffe2's GetCastDataType: a string "to" is a type name, upper-cased before it is looked up
    "cast-to-a-lower-case-name": ("Cast", {"x": X}, {}, "", dict(to="int32")),
    "cast-to-an-upper-case-name": ("Cast", {"x": X}, {}, "", dict(to="DOUBLE")),
}


@pytest.mark.parametrize("case", COMPUTED)
def test_computes_as_real_caffe2(case: str, real_caffe2) -> None:
    op_type, feeds, weights, name, args = COMPUTED[case]
    model = _model(op_type, feeds, weights, name=name, **args)
    (theirs,) = real_caffe2.run(model, feeds).values()
    (ours,) = run_net(model, feeds).values()
    assert (ours.dtype, ours.shape) == (theirs.dtype, theirs.shape)
    assert max_error(ours, theirs) <= bound(theirs), f"{max_error(ours, theirs):.3g}"
    assert _shapes(model) == {"y": theirs.shape}


def test_the_average_of_a_cancelling_row_is_its_exact_sum_over_eight(real_caffe2) -> None:
    """-2^24 + 0 + 1 + 2^24 + 0 + 0 + 0 + 0 is 1; real Caffe2's running sum keeps it, so must zooforge."""
    model = _model("AveragePool", {"x": CANCELLING}, {}, kernel_h=1, kernel_w=8)
    (theirs,) = real_caffe2.run(model, {"x": CANCELLING}).values()
    (ours,) = run_net(model, {"x": CANCELLING}).values()
    assert theirs.ravel().tolist() == ours.ravel().tolist() == [0.125]


# id: (op type, feeds, weights, args, zooforge's reason)
REFUSED: dict[str, tuple[str, dict, dict, dict, str]] = {
    "maxpool-stride-h-0": ("MaxPool", {"x": X}, {}, dict(kernel=3, stride_h=0, stride_w=1),
                           "kernel [3, 3], stride [0, 1] and dilation [1, 1] must be positive and pads [0, 0, 0, 0] "
                           "not negative"),
    "fc-default-axis-on-1d-input": ("FC", {"x": V5}, {"w": _f(3, 5), "b": _f(3)}, {},
                                    "FC axis 1 is out of range for shape [5]"),
    "fc-axis-past-the-input": ("FC", {"x": X}, {"w": _f(3, 440), "b": _f(3)}, dict(axis=5),
                               "FC axis 5 is out of range for shape [1, 4, 10, 11]"),
    "fc-default-axis-w-on-1d-weight": ("FC", {"x": _f(2, 5)}, {"w": _f(5), "b": _f(1)}, {},
                                       "FC axis_w 1 is out of range for shape [5]"),
    "fc-2d-bias": ("FC", {"x": _f(2, 5)}, {"w": _f(3, 5), "b": _f(1, 3)}, {},
                   "FC bias shape [1, 3] is not [3], one value per output"),
    "fc-column-bias": ("FC", {"x": _f(2, 5)}, {"w": _f(3, 5), "b": _f(3, 1)}, {},
                       "FC bias shape [3, 1] is not [3], one value per output"),
    "conv-2d-bias": ("Conv", {"x": X}, {"w": _f(2, 4, 3, 3), "b": _f(1, 2)}, dict(kernel=3),
                     "Conv bias shape [1, 2] is not [2], one value per output"),
    "convtranspose-2d-bias": ("ConvTranspose", {"x": X}, {"w": _f(4, 2, 3, 3), "b": _f(2, 1)}, dict(kernel=3),
                              "ConvTranspose bias shape [2, 1] is not [2], one value per output"),
    "convtranspose-bias-of-another-size": ("ConvTranspose", {"x": X}, {"w": _f(4, 2, 3, 3), "b": _f(3)},
                                           dict(kernel=3), "ConvTranspose bias shape [3] is not [2], one value per output"),
    "conv-3d-input": ("Conv", {"x": _f(1, 4, 10)}, {"w": _f(2, 4, 3, 3)}, dict(kernel=3),
                      "expected a 4-D NCHW tensor, found shape [1, 4, 10]"),
    "add-shapes-that-do-not-broadcast": ("Add", {"x": X}, {"w": _f(5)}, {},
                                         "shapes [1, 4, 10, 11] and [5] do not broadcast (NumPy's rule, broadcast=0)"),
    "prelu-slope-of-3-for-4-channels": ("PRelu", {"x": X}, {"w": _f(3)}, {},
                                        "PRelu slope shape [3] fits neither 1 nor 4 channels"),
    "cast-to-an-unknown-name": ("Cast", {"x": X}, {}, dict(to="int33"), "Cast to 'int33': not a Caffe2 data type"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_refuses_what_real_caffe2_refuses(case: str, real_caffe2) -> None:
    op_type, feeds, weights, args, reason = REFUSED[case]
    model = _model(op_type, feeds, weights, **args)
    with pytest.raises(RealCaffe2Error):
        real_caffe2.run(model, feeds)
    with pytest.raises(NetDefError, match=_sentence(model, reason)):
        run_net(model, feeds)
    with pytest.raises(NetDefError, match=_sentence(model, reason)):
        _shapes(model)


@pytest.mark.parametrize("op_type", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize("pad", [0, 1])
def test_pooling_refuses_an_integer_tensor_as_real_caffe2_does(op_type: str, pad: int, real_caffe2) -> None:
    """Caffe2's CPU pooling is float only ("Tensor type mismatch, caller expects elements to be float")."""
    model = _model(op_type, {}, {"x": INT_IMAGE}, kernel=2, stride=2, pad=pad)
    with pytest.raises(RealCaffe2Error, match="caller expects elements to be float"):
        real_caffe2.run(model, {})
    with pytest.raises(NetDefError, match=_sentence(model, f"{op_type} needs a float tensor, found int32")):
        run_net(model, {})


def _net(op: Any) -> Caffe2Model:
    net = schema.NetDef(name="arity")
    net.op.append(op)
    net.external_input.append("x")
    net.external_output.append("y")
    return Caffe2Model(net, {}, {"x": X.shape})


@pytest.mark.parametrize("op, expected", [
    (make_op("Add", ["x", "x", "x"], ["y"], name="a"), "operator 0 (Add 'a') has 3 inputs; Caffe2's schema expects 2"),
    (make_op("Conv", ["x"], ["y"], name="c", kernel=3),
     "operator 0 (Conv 'c') has 1 inputs; Caffe2's schema expects 2..3"),
    (make_op("Sum", [], ["y"], name="s"), "operator 0 (Sum 's') has 0 inputs; Caffe2's schema expects at least 1"),
], ids=["exact", "range", "at-least"])
def test_an_operator_count_refusal_names_the_schema_bound(op: Any, expected: str, real_caffe2) -> None:
    model = _net(op)
    with pytest.raises(RealCaffe2Error):
        real_caffe2.run(model, {"x": X})
    with pytest.raises(NetDefError, match=f"^{re.escape(expected)}$"):
        run_net(model, {"x": X})


# -- the public OPERATORS table, kernels called without run_net's shape rule first ----------------

@pytest.mark.parametrize("op_type, inputs", [
    ("Dropout", [X]), ("SpatialBN", [X, *(np.ones(4, np.float32) for _ in range(4))])])
def test_a_training_mode_kernel_names_its_operator(op_type: str, inputs: list[np.ndarray]) -> None:
    with pytest.raises(NetDefError, match=f"^{op_type} runs only in test mode here \\(is_test=1\\)$"):
        OPERATORS[op_type].kernel(inputs, {}, 1)


def test_lrn_kernel_writes_only_the_outputs_asked_for() -> None:
    """LRN's scale is its optional second output: a one-output LRN returns one array."""
    assert len(OPERATORS["LRN"].kernel([X], {"size": 3, "alpha": 0.5, "beta": 0.75}, 1)) == 1
    assert len(OPERATORS["LRN"].kernel([X], {"size": 3, "alpha": 0.5, "beta": 0.75}, 2)) == 2
