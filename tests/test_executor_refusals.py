"""What the NumPy executor refuses, and the one sentence it says: operator index, type, name and
outputs, then the reason (hand-written here; real Caffe2 refuses the same NetDefs, see the READ
forms in test_caffe2_conformance.py, except the training-mode ones, which it would compute with
batch statistics or a random mask that zooforge does not reproduce)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from zooforge.converters.caffe2 import schema
from zooforge.converters.caffe2.executor import infer_shapes, run_net
from zooforge.converters.caffe2.netdef import Caffe2Model, make_op
from zooforge.converters.errors import NetDefError

RNG = np.random.default_rng(0)
X = RNG.normal(size=(1, 4, 10, 11)).astype(np.float32)
ONES = {name: np.ones(4, np.float32) for name in "sbmv"}

# (op type, inputs, weights, outputs, args, the reason)
REFUSED = {
    "deconv-legacy-pad": ("ConvTranspose", ["x", "w"], {"w": RNG.normal(size=(4, 2, 3, 3)).astype(np.float32)}, 1,
                          dict(kernel=3, legacy_pad=1), "ConvTranspose with a legacy_pad strategy is not supported"),
    "deconv-weight": ("ConvTranspose", ["x", "w"], {"w": RNG.normal(size=(3, 2, 3, 3)).astype(np.float32)}, 1,
                      dict(kernel=3), "ConvTranspose weight shape [3, 2, 3, 3] does not fit input [1, 4, 10, 11]"),
    "deconv-group": ("ConvTranspose", ["x", "w"], {"w": RNG.normal(size=(4, 2, 3, 3)).astype(np.float32)}, 1,
                     dict(kernel=3, group=3), "ConvTranspose weight shape [4, 2, 3, 3] does not fit input [1, 4, 10, 11]"),
    "deconv-kernel": ("ConvTranspose", ["x", "w"], {"w": RNG.normal(size=(4, 2, 3, 2)).astype(np.float32)}, 1,
                      dict(kernel=3), "kernel [3, 3] does not match the weight shape [4, 2, 3, 2]"),
    "bn-training": ("SpatialBN", ["x", "s", "b", "m", "v"], ONES, 1, dict(is_test=0),
                    "SpatialBN runs only in test mode here (is_test=1)"),
    "bn-no-is-test": ("SpatialBN", ["x", "s", "b", "m", "v"], ONES, 1, {},
                      "SpatialBN runs only in test mode here (is_test=1)"),
    "dropout-training": ("Dropout", ["x"], {}, 1, dict(is_test=0, ratio=0.5),
                         "Dropout runs only in test mode here (is_test=1)"),
    "pow-shape": ("Pow", ["x", "e"], {"e": np.ones(3, np.float32)}, 1, {},
                  "Pow exponent shape [3] differs from [1, 4, 10, 11] and broadcast is not set"),
    "concat-axis-and-order": ("Concat", ["x", "x"], {}, 2, dict(axis=1, order="NCHW"),
                              "Concat has both 'axis' and 'order' (Caffe2 refuses that)"),
    "concat-order": ("Concat", ["x", "x"], {}, 2, dict(order="HWCN"), "Concat order 'HWCN' is neither NCHW nor NHWC"),
    "split-unequal": ("Split", ["x"], {}, 3, {}, "cannot split a dimension of 4 into 3 equal parts"),
}


def _model(op_type, inputs, weights, n_out, args) -> tuple[Caffe2Model, list[str]]:
    net = schema.NetDef(name="n")
    outputs = ["y"] + [f"y{i}" for i in range(1, n_out)]
    net.op.append(make_op(op_type, inputs, outputs, name="op1", **args))
    net.external_input.extend(dict.fromkeys(inputs))
    net.external_output.append("y")
    return Caffe2Model(net, weights, {"x": X.shape}), outputs


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refusals_name_the_operator_and_the_reason(case):
    op_type, inputs, weights, n_out, args, reason = REFUSED[case]
    model, outputs = _model(op_type, inputs, weights, n_out, args)
    sentence = f"operator 0 ({op_type} 'op1' -> {outputs}): {reason}"
    with pytest.raises(NetDefError, match=f"^{re.escape(sentence)}$"):
        run_net(model, {"x": X})
    with pytest.raises(NetDefError, match=re.escape(reason)):
        infer_shapes(model.predict_net, {"x": X.shape, **{k: v.shape for k, v in weights.items()}})


@pytest.mark.parametrize("args, epsilon", [({"is_test": 1}, 1e-5), ({"is_test": 1, "epsilon": 0.5}, 0.5)])
def test_spatial_bn_in_test_mode_normalises_with_caffe2s_default_epsilon(args, epsilon):
    weights = {"s": np.full(4, 2.0, np.float32), "b": np.full(4, 0.5, np.float32),
               "m": np.full(4, 1.0, np.float32), "v": np.full(4, 3.0, np.float32)}
    model, _ = _model("SpatialBN", ["x", "s", "b", "m", "v"], weights, 1, args)
    (y,) = run_net(model, {"x": X}).values()
    np.testing.assert_allclose(y, (X - 1.0) * 2.0 / np.sqrt(3.0 + epsilon) + 0.5, rtol=1e-6, atol=1e-6)
