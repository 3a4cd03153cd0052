"""Tests aimed at mutants that survived a mutmut run over the NetDef -> ONNX export (the
elementwise handlers, ``context``, ``frontend``, ``model``).

Expected values are independent of the code under test: what REAL Caffe2 computes on the same
NetDef (run against onnxruntime), the ONNX model zoo's published AlexNet graph (its ``Reshape`` to
``[batch, features]`` before ``Gemm`` and its two-output ``Dropout``), and hand-computed shapes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from real_caffe2.conformance import bound, max_error

from zooforge.converters.caffe2 import schema
from zooforge.converters.caffe2.netdef import Caffe2Model, make_op
from zooforge.converters.onnx.frontend import ExportOptions, caffe2_to_onnx
from zooforge.versioning import latest_opset
from zooforge.versioning.runtime import run_with

RNG = np.random.default_rng(5)
X = RNG.normal(size=(2, 3, 4, 5)).astype(np.float32)


def _net(ops: list[tuple[str, list[str], list[str], dict[str, Any]]], inputs: list[str],
         outputs: list[str]) -> schema.NetDef:
    net = schema.NetDef(name="mutants")
    for op_type, ins, outs, args in ops:
        net.op.append(make_op(op_type, ins, outs, name=outs[0], **args))
    net.external_input.extend(inputs)
    net.external_output.extend(outputs)
    return net


def _assert_computes_as_real_caffe2(model: Caffe2Model, proto: onnx.ModelProto, feeds: dict[str, np.ndarray],
                                    onnx_feeds: dict[str, np.ndarray], real_caffe2) -> None:
    onnx.checker.check_model(proto, full_check=True)
    fetch = list(model.predict_net.external_output)
    theirs = real_caffe2.run(model, feeds, fetch=fetch)
    ours = run_with("onnxruntime", proto, onnx_feeds)
    for blob, output in zip(fetch, proto.graph.output):
        assert max_error(np.asarray(ours[output.name]), theirs[blob]) <= bound(theirs[blob]), blob


# -- temporaries keep off the names of blobs written later (context.reshape hint, frontend) ---------

@pytest.mark.parametrize("opset", [7, 13, latest_opset()])
def test_temporaries_keep_off_later_blob_names(opset: int, real_caffe2) -> None:
    """With Caffe names, blobs called like the alignment Reshape's temporaries (``y_reshaped``, its
    shape ``y_shape``) are written after it: the export once refused, 'defined twice'."""
    z = RNG.normal(size=(3, 4)).astype(np.float32)
    net = _net([("Sub", ["x", "z"], ["y"], dict(broadcast=1, axis=1)),
                ("Relu", ["y"], ["y_shape"], {}),
                ("Sigmoid", ["y_shape"], ["y_reshaped"], {})], ["x", "z"], ["y_reshaped"])
    model = Caffe2Model(net, {}, {"x": X.shape, "z": z.shape})
    proto = caffe2_to_onnx(model, ExportOptions(opset=opset, names="caffe")).to_proto()
    assert [o.name for o in proto.graph.output] == ["y_reshaped"]
    assert [n.op_type for n in proto.graph.node] == ["Reshape", "Sub", "Relu", "Sigmoid"]
    _assert_computes_as_real_caffe2(model, proto, {"x": X, "z": z}, {"x": X, "z": z}, real_caffe2)


# -- compat="zoo" reaches the handlers (frontend passes it to ExportContext) ------------------------

@pytest.mark.parametrize("dynamic_batch, batch", [(False, 2), (True, -1)])
def test_zoo_compat_reaches_the_handlers(dynamic_batch: bool, batch: int, real_caffe2) -> None:
    """compat="zoo" at opset 9 (the published AlexNet's): FC on [2, 3, 4, 5] flattens with a Reshape
    to [batch, 60] (-1 with a dynamic batch), and Dropout names its mask output, as in that graph."""
    w, b = RNG.normal(size=(6, 60)).astype(np.float32), RNG.normal(size=6).astype(np.float32)
    net = _net([("FC", ["x", "w", "b"], ["fc"], {}), ("Dropout", ["fc"], ["drop"], dict(is_test=1, ratio=0.5))],
               ["x", "w", "b"], ["drop"])
    model = Caffe2Model(net, {"w": w, "b": b}, {"x": X.shape})
    options = ExportOptions(opset=9, compat="zoo", dynamic_batch=dynamic_batch)
    proto = caffe2_to_onnx(model, options).to_proto()
    reshape, gemm, dropout = proto.graph.node
    assert (reshape.op_type, gemm.op_type, dropout.op_type) == ("Reshape", "Gemm", "Dropout")
    shape = next(t for t in proto.graph.initializer if t.name == reshape.input[1])
    assert shape.data_type == onnx.TensorProto.INT64 and numpy_helper.to_array(shape).tolist() == [batch, 60]
    assert gemm.input[0] == reshape.output[0] and len(dropout.output) == 2
    _assert_computes_as_real_caffe2(model, proto, {"x": X}, {"x_0": X}, real_caffe2)
