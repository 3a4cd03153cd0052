"""The NumPy executor where the second mutation run (group caffe2-executor) found it untested: a
window that fits only with its pads, ConvTranspose with unequal pads on its four sides, a pooling
operator whose lower-case "conv" name does not trigger Caffe2's kernel check, an empty output along
the height, the sentences of four refusals, and the operator families (``_binary``, ``_variadic``)
built anew in the test, since the public table is built at import, before mutation testing
switches a mutant on.

Expected values come from the REAL historical Caffe2 (the ``real_caffe2`` fixture) on the same
single-operator NetDef, or are written here (the sentences, from the shapes given); never from
the executor itself.
"""

from __future__ import annotations

import re
from types import MappingProxyType

import numpy as np
import pytest

import zooforge.converters.caffe2.executor.run as executor_run
from zooforge.converters.caffe2.executor import run_net, tensor
from zooforge.converters.errors import NetDefError

from real_caffe2 import RealCaffe2Error
from real_caffe2.conformance import bound, max_error
from test_executor_semantics import _f, _model, _sentence, _shapes

X = _f(1, 4, 10, 11)
TINY = _f(1, 1, 2, 2)  # a window of 3 fits only with a pad of 1
SHORT = _f(1, 4, 1, 5)  # H = 1: Caffe's ceil rounding gives an empty output along the height


def _assert_as_real_caffe2(model, feeds, real_caffe2) -> None:
    (theirs,) = real_caffe2.run(model, feeds).values()
    (ours,) = run_net(model, feeds).values()
    assert (ours.dtype, ours.shape) == (theirs.dtype, theirs.shape)
    assert max_error(ours, theirs) <= bound(theirs), f"{max_error(ours, theirs):.3g}"
    assert _shapes(model) == {"y": theirs.shape}


# id: (op type, feeds, weights, name, args)
COMPUTED: dict[str, tuple[str, dict, dict, str, dict]] = {
    "conv-window-fits-only-padded": ("Conv", {"x": TINY}, {"w": _f(1, 1, 3, 3)}, "", dict(kernel=3, pad=1)),
    # bottom pad != right pad, and != left pad: rows and columns are cropped by their own sides
    "convtranspose-pad-b-alone": ("ConvTranspose", {"x": X}, {"w": _f(4, 2, 3, 3)}, "",
                                  dict(kernel=3, stride=2, pad_t=0, pad_l=0, pad_b=1, pad_r=0)),
    "convtranspose-four-pads": ("ConvTranspose", {"x": X}, {"w": _f(4, 2, 3, 3)}, "", dict(kernel=3, stride=2,
                                                                                         pads=[1, 2, 0, 1])),
    # Caffe2's kernel check is case-sensitive: a name starting "conv" is not one starting "Conv"
    "avgpool-global-named-conv-in-lower-case": ("AveragePool", {"x": X}, {}, "conv1", dict(global_pooling=1)),
    "maxpool-global-named-conv-in-lower-case": ("MaxPool", {"x": X}, {}, "conv1", dict(global_pooling=1)),
}


@pytest.mark.parametrize("case", COMPUTED)
def test_computes_as_real_caffe2(case: str, real_caffe2) -> None:
    op_type, feeds, weights, name, args = COMPUTED[case]
    _assert_as_real_caffe2(_model(op_type, feeds, weights, name=name, **args), feeds, real_caffe2)


def test_an_empty_output_along_the_height_is_refused(real_caffe2) -> None:
    """Caffe's ceil rounding (legacy_pad=3) on a height of 1 with kernel 3, stride 2: zero rows."""
    model = _model("Conv", {"x": SHORT}, {"w": _f(2, 4, 3, 3)}, kernel=3, stride=2, legacy_pad=3)
    (theirs,) = real_caffe2.run(model, {"x": SHORT}).values()
    assert theirs.shape[2:] == (0, 2)
    reason = "Conv output would be empty for input [1, 4, 1, 5]"
    with pytest.raises(NetDefError, match=_sentence(model, reason)):
        run_net(model, {"x": SHORT})
    with pytest.raises(NetDefError, match=_sentence(model, reason)):
        _shapes(model)


def test_concat_with_add_axis_is_refused_in_its_sentence() -> None:
    """zooforge refuses add_axis (real Caffe2 stacks the inputs): the refusal says so."""
    model = _model("Concat", {"x": X, "z": X}, {}, 2, add_axis=1)
    reason = "Concat with add_axis is not supported"
    with pytest.raises(NetDefError, match=_sentence(model, reason)):
        run_net(model, {"x": X, "z": X})
    with pytest.raises(NetDefError, match=_sentence(model, reason)):
        _shapes(model)


# -- operator families built now, not at import -------------------------------------------------

@pytest.fixture
def rebuilt(monkeypatch):
    """The executor's table with Add, Sum and Max made by their factories inside the test."""
    fresh = {"Add": tensor._binary(np.add), "Sum": tensor._variadic(np.add), "Max": tensor._variadic(np.maximum)}
    monkeypatch.setattr(executor_run, "OPERATORS", MappingProxyType({**executor_run.OPERATORS, **fresh}))


@pytest.mark.parametrize("op_type", ["Sum", "Max"])
@pytest.mark.parametrize("count", [1, 3])
def test_a_variadic_operator_made_now_computes_as_real_caffe2(op_type: str, count: int, rebuilt, real_caffe2) -> None:
    """Caffe2's Sum and Max take one input or more."""
    feeds = {f"x{i}": _f(1, 4, 10, 11) for i in range(count)}
    _assert_as_real_caffe2(_model(op_type, feeds, {}), feeds, real_caffe2)


def test_a_binary_operator_made_now_takes_exactly_two_inputs(rebuilt, real_caffe2) -> None:
    feeds = {"x": X, "z": X, "q": X}
    model = _model("Add", feeds, {})
    with pytest.raises(RealCaffe2Error):
        real_caffe2.run(model, feeds)
    expected = "operator 0 (Add '') has 3 inputs; Caffe2's schema expects 2"
    with pytest.raises(NetDefError, match=f"^{re.escape(expected)}$"):
        run_net(model, feeds)
