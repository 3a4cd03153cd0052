"""Tests aimed at mutants that survived the second mutmut run over the NetDef -> ONNX handlers of
``converters/onnx/handlers/tensor.py``: which axes Slice cuts, a Slice that cuts nothing (its
initializers' dtype from opset 10; below it the export raised onnx.helper's ValueError, now fixed),
and Concat's add_axis read by its exact name.

Each case is one Caffe2 operator on a tiny input; the expected values are what REAL Caffe2 computes
on the same NetDef (the ``real_caffe2`` fixture), compared with the exported model on onnxruntime,
or on onnx's reference evaluator below opset 7; never a value computed by the code under test.
"""

from __future__ import annotations

import numpy as np
import pytest

from zooforge.versioning.runtime import run_with

from real_caffe2.conformance import bound, max_error
from test_handler_mutants_nn import LATEST, _assert_as_real_caffe2, _export, _model

X = np.random.default_rng(43).normal(size=(2, 3, 4)).astype(np.float32)


def _runtime(opset: int) -> str:
    return "reference" if opset < 7 else "onnxruntime"


# -- Slice -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("starts, ends", [([0, 0, 0], [-1, 2, -1]), ([0], [1])])
def test_slice_from_zero_to_short_of_the_end_is_a_cut(starts: list[int], ends: list[int], real_caffe2) -> None:
    """An axis kept from 0 but stopped early is cut (Caffe2: [2, 2, 4], then [1, 3, 4]), not left whole."""
    model = _model("Slice", {"x": X}, {}, ["y"], starts=starts, ends=ends)
    _assert_as_real_caffe2(real_caffe2, model, {"x": X}, (7, 10, LATEST))


@pytest.mark.parametrize("starts, ends", [([0, 0, 0], [-1, -1, -1]), ([0, 0], [-1, 3])])
@pytest.mark.parametrize("opset", [6, 9, 10, LATEST])
def test_slice_that_cuts_nothing_exports_as_a_copy(starts: list[int], ends: list[int], opset: int,
                                                   real_caffe2) -> None:
    """A Slice over whole axes is a copy in Caffe2; Slice-1 gets one whole axis (its lists cannot be
    empty), Slice-10 empty int64 starts/ends/axes."""
    model = _model("Slice", {"x": X}, {}, ["y"], starts=starts, ends=ends)
    (theirs,) = real_caffe2.run(model, {"x": X}, fetch=["y"]).values()
    (ours,) = run_with(_runtime(opset), _export(model, opset), {"x_0": X}).values()
    assert theirs.shape == ours.shape == (2, 3, 4) and max_error(ours, theirs) <= bound(theirs)


# -- Concat ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["ADD_AXIS", "XXadd_axisXX"])
def test_concat_reads_add_axis_by_its_exact_name(name: str, real_caffe2) -> None:
    """Caffe2's argument names are case-sensitive and it ignores names it does not know: such an
    argument is not add_axis, and Caffe2 concatenates as usual ([2, 3, 4] and [2, 1, 4] on axis 1: [2, 4, 4])."""
    feeds = {"x": X, "z": X[:, :1] * 2}
    model = _model("Concat", feeds, {}, ["y", "split_info"], **{name: 1})
    _assert_as_real_caffe2(real_caffe2, model, feeds, (7, LATEST))
