"""``converters/caffe2/netdef.py`` against real Caffe2 (1.10.2) and hand-written values.

Every fill zooforge reads gives the array (dtype, shape, bits) real Caffe2 makes of the same init
net; the init net ``write_caffe2`` streams is read back by real Caffe2 bit for bit; the Arguments
``make_arg`` writes mean to real Caffe2 what they should (checked against NumPy by hand); each
refusal is one sentence naming the file and the blob. Init nets under test are built from schema
messages by hand, never with ``make_op``, so the code under test does not make its own input.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pytest

from zooforge.converters.caffe2 import schema
from zooforge.converters.caffe2.netdef import (
    Caffe2Model, build_init_net, init_net_chunks, load_caffe2, make_arg, make_op, op_args, read_netdef,
    read_value_info, weights_from_init_net, write_caffe2,
)
from zooforge.converters.errors import InputFileError, NetDefError, OutputFileError
from real_caffe2 import RealCaffe2Error


X = np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 4 - 2.875  # exact in float32, signs mixed
X4 = X.reshape(1, 2, 3, 4)


def _arg(name: str, **fields: Any) -> Any:
    """An Argument built by hand (not with make_arg)."""
    return schema.Argument(name=name, **fields)


def _op(op_type: str, outputs: list[str], *args: Any, inputs: tuple[str, ...] = ()) -> Any:
    return schema.OperatorDef(type=op_type, input=list(inputs), output=outputs, arg=list(args))


def _net(path: Path, ops: tuple = (), external_input: tuple = (), external_output: tuple = (),
         name: str = "net") -> Path:
    net = schema.NetDef(name=name, op=list(ops), external_input=list(external_input),
                        external_output=list(external_output))
    path.write_bytes(net.SerializeToString())
    return path


def _given(op_type: str, field: str, values: list, shape: list[int] | None = None, blob: str = "w") -> Any:
    shape_args = [] if shape is None else [_arg("shape", ints=shape)]
    return _op(op_type, [blob], *shape_args, _arg("values", **{field: values}))


def _constant(*args: Any, blob: str = "w") -> Any:
    return _op("ConstantFill", [blob], *args)


def _real_init(real, init: Path, names: list[str]) -> dict[str, np.ndarray]:
    """Real Caffe2 runs ``init`` (then an empty predict net) and returns the named blobs."""
    return real.run_files(_net(init.with_name("empty_predict.pb")), init, {}, fetch=names)


def _same(ours: np.ndarray, theirs: np.ndarray, what: str = "") -> None:
    """Same dtype, shape and bits."""
    assert (ours.dtype, ours.shape) == (theirs.dtype, theirs.shape), what
    assert ours.tobytes() == theirs.tobytes(), f"{what}: {ours} != {theirs}"


def _exactly(message: str) -> str:
    """A ``match`` pattern for exactly ``message``."""
    return f"^{re.escape(message)}$"


def _starts(prefix: str) -> str:
    return f"^{re.escape(prefix)}"


def _read(init: Path) -> dict[str, np.ndarray]:
    return weights_from_init_net(read_netdef(init), str(init)).weights


# -- every fill zooforge reads, as real Caffe2 runs it ---------------------------------------------

SPECIAL = [0.1, -0.0, 1e-40, 3.4e38, -2.5, float("inf"), float("-inf"), float("nan")]
FILLS = {
    "float": _given("GivenTensorFill", "floats", SPECIAL, [2, 4]),
    "float-0d": _given("GivenTensorFill", "floats", [1.5]),
    "float-0d-empty-shape-arg": _op("GivenTensorFill", ["w"], _arg("shape"), _arg("values", floats=[-7.25])),
    "float-empty": _given("GivenTensorFill", "floats", [], [2, 0]),
    "float-values-before-shape": _op("GivenTensorFill", ["w"], _arg("values", floats=[1, 2, 3]),
                                     _arg("shape", ints=[3, 1])),
    "double": _given("GivenTensorDoubleFill", "floats", [0.1, 1e30, -2.5], [3]),
    "double-0d": _given("GivenTensorDoubleFill", "floats", [1 / 3]),
    "int": _given("GivenTensorIntFill", "ints", [-3, 2**31 - 1, -(2**31), 0], [2, 2]),
    "int-empty": _given("GivenTensorIntFill", "ints", [], [0]),
    "int64": _given("GivenTensorInt64Fill", "ints", [-(2**63), 2**63 - 1, 2**40, -1], [4, 1]),
    "int64-0d": _given("GivenTensorInt64Fill", "ints", [5]),
    "constant-float": _constant(_arg("dtype", i=1), _arg("value", f=0.1), _arg("shape", ints=[2, 1])),
    "constant-int32": _constant(_arg("dtype", i=2), _arg("value", i=-7), _arg("shape", ints=[3])),
    "constant-int64": _constant(_arg("dtype", i=10), _arg("value", i=2**40), _arg("shape", ints=[1, 2])),
    "constant-double": _constant(_arg("dtype", i=13), _arg("value", f=0.1), _arg("shape", ints=[2])),
    "constant-no-dtype": _constant(_arg("value", f=2.5), _arg("shape", ints=[2])),
    "constant-no-value": _constant(_arg("shape", ints=[2, 2])),
    "constant-int64-no-value": _constant(_arg("dtype", i=10), _arg("shape", ints=[3])),
    "constant-0d": _constant(_arg("value", f=3.0)),
    "constant-0d-empty-shape-arg": _constant(_arg("value", f=-1.0), _arg("shape")),
    "constant-zero-size": _constant(_arg("dtype", i=2), _arg("value", i=4), _arg("shape", ints=[0, 3])),
}


@pytest.mark.parametrize("case", FILLS)
def test_each_fill_reads_as_real_caffe2_makes_it(case: str, real_caffe2, tmp_path: Path) -> None:
    init = _net(tmp_path / "init_net.pb", (FILLS[case],), external_output=("w",))
    theirs = _real_init(real_caffe2, init, ["w"])["w"]
    read = weights_from_init_net(read_netdef(init), str(init))
    assert list(read.weights) == ["w"]
    _same(read.weights["w"], theirs, case)
    assert read.constant_fills == (["w"] if FILLS[case].type == "ConstantFill" else [])


def test_a_whole_init_net_reads_in_order_with_its_constant_fills(real_caffe2, tmp_path: Path) -> None:
    ops = (_given("GivenTensorFill", "floats", [1, 2], [2], "a"), _constant(_arg("value", f=1.0), blob="b"),
           _given("GivenTensorInt64Fill", "ints", [3], [1], "c"), _constant(_arg("shape", ints=[1]), blob="d"))
    init = _net(tmp_path / "init_net.pb", ops)
    theirs = _real_init(real_caffe2, init, list("abcd"))
    read = weights_from_init_net(read_netdef(init), str(init))
    assert list(read.weights) == list("abcd") and read.constant_fills == ["b", "d"]
    for name in "abcd":
        _same(read.weights[name], theirs[name], name)


def test_a_later_fill_of_the_same_blob_wins_as_on_real_caffe2(real_caffe2, tmp_path: Path) -> None:
    init = _net(tmp_path / "init_net.pb", (_given("GivenTensorFill", "floats", [1, 2], [2]),
                                           _given("GivenTensorFill", "floats", [5], [1])))
    _same(_read(init)["w"], _real_init(real_caffe2, init, ["w"])["w"])



def test_constant_fill_with_an_int_value_and_no_dtype_is_int64(real_caffe2, tmp_path: Path) -> None:
    """Real Caffe2 infers dtype INT64 from an integer ``value`` when ``dtype`` is absent (zooforge
    once made float32)."""
    init = _net(tmp_path / "init_net.pb", (_constant(_arg("value", i=3), _arg("shape", ints=[2])),))
    _same(_read(init)["w"], _real_init(real_caffe2, init, ["w"])["w"])



def test_given_tensor_fill_honours_its_dtype_argument(real_caffe2, tmp_path: Path) -> None:
    """``GivenTensorFill`` with ``dtype=13`` (DOUBLE) makes float64 on real Caffe2 (zooforge once
    ignored ``dtype``)."""
    op = _op("GivenTensorFill", ["w"], _arg("dtype", i=13), _arg("shape", ints=[1]), _arg("values", floats=[0.1]))
    init = _net(tmp_path / "init_net.pb", (op,))
    _same(_read(init)["w"], _real_init(real_caffe2, init, ["w"])["w"])



def test_an_int32_fill_value_out_of_range_is_refused(real_caffe2, tmp_path: Path) -> None:
    """Real Caffe2 refuses ``GivenTensorIntFill values=[2**31]`` (not representable); so does zooforge
    (it once wrapped it to -2**31)."""
    init = _net(tmp_path / "init_net.pb", (_given("GivenTensorIntFill", "ints", [2**31], [1]),))
    with pytest.raises(RealCaffe2Error, match="cannot be represented"):
        _real_init(real_caffe2, init, ["w"])
    with pytest.raises(NetDefError, match="'w'"):
        _read(init)


# -- what write_caffe2 streams, real Caffe2 reads back -----------------------------------------------

FLOAT_SHAPES = [(), (1,), (0,), (31,), (32,), (2, 3, 4), (4096,), (1_100_000,)]  # the last > 4 MiB


def _model(weights: dict[str, np.ndarray], name: str = "m") -> Caffe2Model:
    """``y = Copy(x)`` with ``weights`` as further external inputs."""
    net = schema.NetDef(name=name, op=[_op("Copy", ["y"], inputs=("x",))], external_input=["x", *weights],
                        external_output=["y"])
    return Caffe2Model(net, weights, {"x": X.shape})


def _float_weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    weights = {f"w{i}": rng.standard_normal(shape).astype(np.float32) for i, shape in enumerate(FLOAT_SHAPES)}
    weights["special"] = np.array([-0.0, np.inf, -np.inf, 1e-45, np.finfo(np.float32).max], np.float32)
    weights["nan_payloads"] = np.array([0x7FC00001, 0xFFC12345, 0x7F800001], "<u4").view(np.float32)
    weights["big_endian"] = np.array([[1.25, -3.0]], ">f4")
    weights["strided"] = np.arange(12, dtype=np.float32).reshape(3, 4).T
    return weights


def _roundtrip(real, weights: dict[str, np.ndarray], tmp_path: Path) -> tuple[dict, Caffe2Model]:
    """Write a model of ``weights``; what real Caffe2 fetches of it, and what load_caffe2 reads."""
    paths = write_caffe2(_model(weights), tmp_path / "out")
    assert paths == {k: tmp_path / "out" / f"{k}{ext}" for k, ext in
                     (("predict_net", ".pb"), ("init_net", ".pb"), ("value_info", ".json"))}
    theirs = real.run_files(paths["predict_net"], paths["init_net"], {"x": X}, fetch=[*weights, "y"])
    _same(theirs["y"], X)
    return theirs, load_caffe2(paths["predict_net"], paths["init_net"], paths["value_info"])


def test_written_float32_weights_read_back_bit_for_bit(real_caffe2, tmp_path: Path) -> None:
    weights = _float_weights()
    theirs, back = _roundtrip(real_caffe2, weights, tmp_path)
    assert list(back.weights) == list(weights)
    for name, array in weights.items():
        _same(theirs[name], array.astype(np.float32), name)
        _same(back.weights[name], array.astype(np.float32), name)
    assert back.inputs == ["x"] and back.input_shapes == {"x": (2, 3, 4)} and back.outputs == ["y"]


def test_float64_and_float16_weights_are_written_as_float32(real_caffe2, tmp_path: Path) -> None:
    weights = {"f64": np.array([0.1, 1 / 3, -1e-30, 16777217.0], np.float64), "f64_0d": np.array(2.5),
               "f16": np.array([[0.1, 65504, -0.0]], np.float16)}
    theirs, back = _roundtrip(real_caffe2, weights, tmp_path)
    for name, array in weights.items():
        _same(theirs[name], array.astype(np.float32), name)
        _same(back.weights[name], array.astype(np.float32), name)


def test_int64_weights_stay_int64(real_caffe2, tmp_path: Path) -> None:
    weights = {"shape": np.array([1, -1], np.int64), "wide": np.array([[-(2**63), 2**63 - 1, 5]], np.int64),
               "i0d": np.array(7, np.int64), "empty": np.zeros((2, 0), np.int64)}
    theirs, back = _roundtrip(real_caffe2, weights, tmp_path)
    for name, array in weights.items():
        _same(theirs[name], array, name)
        _same(back.weights[name], array, name)



def test_a_zero_size_float_weight_of_two_dimensions_is_written(real_caffe2, tmp_path: Path) -> None:
    """Real Caffe2 makes a (2, 0) float blob from ``GivenTensorFill shape=[2, 0] values=[]``, and
    reads it back from what ``write_caffe2`` streams (which once raised TypeError on it)."""
    theirs, _ = _roundtrip(real_caffe2, {"w": np.zeros((2, 0), np.float32)}, tmp_path)
    _same(theirs["w"], np.zeros((2, 0), np.float32))



def test_an_int32_weight_stays_int32(real_caffe2, tmp_path: Path) -> None:
    """An int32 weight (as ``load_caffe2`` reads a ``GivenTensorIntFill``) is written as one, not as a
    float32 ``GivenTensorFill`` (which would make 16777217 into 16777216.0)."""
    weights = {"i32": np.array([16777217, -3], np.int32)}
    theirs, back = _roundtrip(real_caffe2, weights, tmp_path)
    _same(theirs["i32"], weights["i32"])
    _same(back.weights["i32"], weights["i32"])


def test_written_predict_net_value_info_and_init_net_name(tmp_path: Path) -> None:
    model = _model({"w": np.ones(2, np.float32)}, name="")
    model.input_shapes = {"x": (1, 3), "z": ()}
    paths = write_caffe2(model, tmp_path / "a" / "b")
    assert read_netdef(paths["predict_net"]) == model.predict_net
    assert json.loads(paths["value_info"].read_text()) == {"x": [1, [1, 3]], "z": [1, []]}
    init = read_netdef(paths["init_net"])
    assert init.name == "model_init" and list(init.external_output) == ["w"] and not init.external_input
    assert sorted(p.name for p in (tmp_path / "a" / "b").iterdir()) == ["init_net.pb", "predict_net.pb",
                                                                       "value_info.json"]


def test_build_init_net_is_the_hand_written_message() -> None:
    weights = {"a": np.array([[0.5, -1], [2, 3]], np.float32), "s": np.array(4.0, np.float32),
               "e": np.zeros(0, np.float32), "i": np.array([[7, -8]], np.int64)}
    expected = schema.NetDef(name="lenet_init", external_output=["a", "s", "e", "i"], op=[
        _op("GivenTensorFill", ["a"], _arg("shape", ints=[2, 2]), _arg("values", floats=[0.5, -1, 2, 3])),
        _op("GivenTensorFill", ["s"], _arg("shape"), _arg("values", floats=[4])),
        _op("GivenTensorFill", ["e"], _arg("shape", ints=[0]), _arg("values")),
        _op("GivenTensorInt64Fill", ["i"], _arg("shape", ints=[1, 2]), _arg("values", ints=[7, -8])),
    ])
    for op in expected.op:
        op.name = ""  # make_op sets the (empty) name
    assert build_init_net(weights, "lenet") == expected
    streamed = schema.NetDef.FromString(b"".join(bytes(c) for c in init_net_chunks(weights, "lenet")))
    assert streamed == expected
    assert build_init_net({}, "x") == schema.NetDef(name="x_init")


def test_float_values_are_streamed_from_the_array_buffer() -> None:
    """The packed floats are the array's own memory (no copy into a repeated field)."""
    array = np.arange(1000, dtype=np.float32)
    views = [c for c in init_net_chunks({"w": array}, "m") if isinstance(c, memoryview)]
    assert len(views) == 1 and np.shares_memory(np.frombuffer(views[0], np.float32), array)


def test_write_caffe2_into_a_regular_file_is_an_output_error(tmp_path: Path) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("x")
    for target in (blocker, blocker / "sub"):
        with pytest.raises(OutputFileError, match=_starts(f"cannot write {target}: ")):
            write_caffe2(_model({}), target)
    assert blocker.read_text() == "x"


# -- make_arg, op_args, make_op -----------------------------------------------------------------------

def _fields(arg: Any) -> dict[str, Any]:
    """The Argument's set fields other than ``name``, repeated ones as lists."""
    return {f.name: v if isinstance(v, (int, float, bytes)) else list(v)
            for f, v in arg.ListFields() if f.name != "name"}


MAKE_ARG = {
    "true": (True, {"i": 1}), "false": (False, {"i": 0}), "int": (3, {"i": 3}), "int-zero": (0, {"i": 0}),
    "big-int": (2**40, {"i": 2**40}), "np-int64": (np.int64(-5), {"i": -5}), "np-uint8": (np.uint8(200), {"i": 200}),
    "float": (0.5, {"f": 0.5}), "float-zero": (0.0, {"f": 0.0}), "float-rounded": (0.1, {"f": float(np.float32(0.1))}),
    "np-float32": (np.float32(-1.75), {"f": -1.75}), "np-float64": (np.float64(2.25), {"f": 2.25}),
    "str": ("NCHW", {"s": b"NCHW"}), "str-utf8": ("é", {"s": b"\xc3\xa9"}), "str-empty": ("", {"s": b""}),
    "bytes": (b"\x00\xff", {"s": b"\x00\xff"}),
    "ints": ([1, -2], {"ints": [1, -2]}), "int-tuple": ((3, 4), {"ints": [3, 4]}),
    "np-ints": (np.array([5, 6]), {"ints": [5, 6]}), "np-int-items": ([np.int32(1), 2], {"ints": [1, 2]}),
    "floats": ([0.5, 1.5], {"floats": [0.5, 1.5]}), "mixed": ([1, 2.5], {"floats": [1.0, 2.5]}),
    "np-floats": (np.array([0.25, 2], np.float32), {"floats": [0.25, 2.0]}),
    "np-number-mix": ([np.float32(0.5), 1], {"floats": [0.5, 1.0]}),
    "strs": (["a", "bc"], {"strings": [b"a", b"bc"]}), "empty": ([], {}),
}


@pytest.mark.parametrize("case", MAKE_ARG)
def test_make_arg_sets_the_one_field_for_the_value(case: str) -> None:
    value, expected = MAKE_ARG[case]
    arg = make_arg("k", value)
    assert arg.name == "k" and _fields(arg) == expected


@pytest.mark.parametrize("value", [[b"a"], ["a", 1], [object()], [None], [[1]], [1.5, "x"]],
                         ids=["bytes-list", "str-int", "object", "none-item", "nested", "float-str"])
def test_make_arg_refuses_other_lists(value: list) -> None:
    with pytest.raises(TypeError, match=_exactly(f"argument 'k' has an unsupported value {value!r}")):
        make_arg("k", value)


def test_make_arg_refuses_none() -> None:
    with pytest.raises(TypeError):
        make_arg("k", None)


def test_make_op_fields_and_sorted_arguments() -> None:
    op = make_op("Conv", ("x", "w"), iter(["y"]), name="conv1", stride=2, order="NCHW", kernels=[3, 3])
    assert (op.type, list(op.input), list(op.output), op.name) == ("Conv", ["x", "w"], ["y"], "conv1")
    assert op.arg == [_arg("kernels", ints=[3, 3]), _arg("order", s=b"NCHW"), _arg("stride", i=2)]
    bare = make_op("Relu", [], [])
    assert (bare.name, list(bare.input), list(bare.output), list(bare.arg)) == ("", [], [], [])


def test_op_args_reads_every_field() -> None:
    op = _op("Any", ["y"], _arg("f", f=0.5), _arg("f0", f=0.0), _arg("i", i=-4), _arg("i0", i=0), _arg("s", s=b"NCHW"),
             _arg("bad", s=b"a\xff"), _arg("s0", s=b""), _arg("fs", floats=[0.5, 2]), _arg("is", ints=[1, 2]),
             _arg("ss", strings=[b"a", b"\xff"]), _arg("none"))
    assert op_args(op) == {"f": 0.5, "f0": 0.0, "i": -4, "i0": 0, "s": "NCHW", "bad": "a\ufffd", "s0": "",
                           "fs": [0.5, 2.0], "is": [1, 2], "ss": ["a", "\ufffd"], "none": []}
    assert type(op_args(op)["f0"]) is float and type(op_args(op)["i0"]) is int
    assert op_args(make_op("T", [], [], axes=[2, 0, 1], order="NHWC", alpha=0.25, keep=True)) == \
        {"alpha": 0.25, "axes": [2, 0, 1], "keep": 1, "order": "NHWC"}


Expect = Callable[[np.ndarray], np.ndarray]
REAL_ARGS: dict[str, tuple[str, list[str], int, dict, Expect]] = {
    # id: (op type, inputs, outputs, make_op arguments, NumPy by hand)
    "scale-float": ("Scale", ["x"], 1, dict(scale=0.5), lambda x: x * np.float32(0.5)),
    "scale-np-float32": ("Scale", ["x"], 1, dict(scale=np.float32(-1.5)), lambda x: x * np.float32(-1.5)),
    "leakyrelu-alpha": ("LeakyRelu", ["x"], 1, dict(alpha=0.25), lambda x: np.where(x > 0, x, x * np.float32(0.25))),
    "transpose-axes": ("Transpose", ["x"], 1, dict(axes=[0, 2, 1]), lambda x: x.transpose(0, 2, 1)),
    "transpose-np-axes": ("Transpose", ["x"], 1, dict(axes=np.array([2, 0, 1])), lambda x: x.transpose(2, 0, 1)),
    "transpose-empty-axes": ("Transpose", ["x"], 1, dict(axes=[]), lambda x: x.transpose()),
    "flatten-np-int": ("Flatten", ["x"], 1, dict(axis=np.int64(2)), lambda x: x.reshape(6, 4)),
    "reducemean-false": ("ReduceMean", ["x"], 1, dict(axes=[1], keepdims=False), lambda x: x.mean(axis=1)),
    "reducemean-true": ("ReduceMean", ["x"], 1, dict(axes=[2], keepdims=True), lambda x: x.mean(axis=2, keepdims=True)),
    "concat-order-str": ("Concat", ["x4", "x4"], 2, dict(order="NHWC"), lambda x: np.concatenate([X4, X4], axis=3)),
    "concat-order-bytes": ("Concat", ["x4", "x4"], 2, dict(order=b"NHWC"), lambda x: np.concatenate([X4, X4], axis=3)),
    "fill-mixed-floats": ("GivenTensorFill", [], 1, dict(shape=[2, 1], values=[1, 2.5]),
                          lambda x: np.array([[1.0], [2.5]], np.float32)),
}


@pytest.mark.parametrize("case", REAL_ARGS)
def test_real_caffe2_reads_make_op_arguments_as_meant(case: str, real_caffe2, tmp_path: Path) -> None:
    op_type, inputs, n_out, args, expect = REAL_ARGS[case]
    op = make_op(op_type, inputs, ["y", "y1"][:n_out], **args)
    predict = tmp_path / "predict_net.pb"
    predict.write_bytes(schema.NetDef(name="p", op=[op], external_input=["x", "x4"],
                                      external_output=["y"]).SerializeToString())
    (theirs,) = real_caffe2.run_files(predict, _net(tmp_path / "init_net.pb"), {"x": X, "x4": X4}).values()
    want = expect(X)
    assert theirs.dtype == np.float32 and theirs.shape == want.shape
    np.testing.assert_allclose(theirs, want, rtol=1e-6, atol=0)


# -- refusals: one sentence naming the file and the blob ----------------------------------------------

SUPPORTED = "GivenTensorFill, GivenTensorDoubleFill, GivenTensorIntFill, GivenTensorInt64Fill, ConstantFill"
NOT_READ = f"is not a fill zooforge reads; supported: {SUPPORTED}"
REFUSED: dict[str, tuple[Any, str, bool]] = {
    # id: (init net operator, the sentence after "<init file>: ", real Caffe2 refuses too)
    "two-outputs": (_op("GivenTensorFill", ["a", "b"], _arg("shape", ints=[1]), _arg("values", floats=[1])),
                    "init net operator GivenTensorFill -> ['a', 'b'] has 2 outputs", True),
    "no-output": (_op("ConstantFill", [], _arg("value", f=1.0)),
                  "init net operator ConstantFill -> [] has 0 outputs", True),
    "unknown-fill": (_op("GivenTensorBoolFill", ["w"], _arg("values", ints=[1])),
                     f"init net operator GivenTensorBoolFill -> 'w' {NOT_READ}", False),
    "no-values": (_op("GivenTensorFill", ["w"], _arg("shape", ints=[2])), "fill for 'w' has no 'values' argument",
                  True),
    "too-few-values": (_given("GivenTensorFill", "floats", [1, 2, 3], [2, 2]),
                       "fill for 'w' has 3 values for shape [2, 2]", True),
    "too-many-values": (_given("GivenTensorInt64Fill", "ints", [1, 2]), "fill for 'w' has 2 values for shape []", True),
    "int-values-in-floats": (_given("GivenTensorIntFill", "floats", [1.0], [1]),
                             "fill for 'w' has 0 values for shape [1]", True),
    "float-values-in-ints": (_given("GivenTensorDoubleFill", "ints", [1], [1]),
                             "fill for 'w' has 0 values for shape [1]", True),
    "constant-with-input": (_op("ConstantFill", ["w"], _arg("value", f=1.0), inputs=("x",)),
                            "ConstantFill for 'w' takes its shape from an input, which zooforge cannot read", True),
    "constant-input-as-shape": (_constant(_arg("input_as_shape", i=1), _arg("value", f=1.0)),
                                "ConstantFill for 'w' takes its shape from an input, which zooforge cannot read", True),
    "constant-extra-shape": (_constant(_arg("extra_shape", ints=[2]), _arg("value", f=1.0)),
                             "ConstantFill for 'w' takes its shape from an input, which zooforge cannot read", True),
    "constant-dtype-bool": (_constant(_arg("dtype", i=5), _arg("shape", ints=[1])),
                            "ConstantFill for 'w' has an unsupported dtype 5", False),
    "constant-dtype-undefined": (_constant(_arg("dtype", i=0), _arg("shape", ints=[1])),
                                 "ConstantFill for 'w' has an unsupported dtype 0", True),
}
RANDOM_FILLS = ("XavierFill", "GaussianFill", "UniformFill", "UniformIntFill", "MSRAFill", "RangeFill")


def _load_init(init_op: Any, tmp_path: Path) -> Path:
    """load_caffe2 on ``x -> Copy -> y`` and an init net of ``init_op``; the init file."""
    predict = _net(tmp_path / "predict_net.pb", (_op("Copy", ["y"], inputs=("x",)),), ("x",), ("y",))
    init = _net(tmp_path / "init_net.pb", (init_op,))
    load_caffe2(predict, init, input_shapes={"x": (1,)})
    return init


@pytest.mark.parametrize("case", REFUSED)
def test_init_net_refusals_name_the_file_and_the_blob(case: str, real_caffe2, tmp_path: Path) -> None:
    op, sentence, real_refuses = REFUSED[case]
    with pytest.raises(NetDefError) as caught:
        _load_init(op, tmp_path)
    assert str(caught.value) == f"{tmp_path / 'init_net.pb'}: {sentence}"
    if real_refuses:
        with pytest.raises(RealCaffe2Error):
            _real_init(real_caffe2, tmp_path / "init_net.pb", list(op.output))


@pytest.mark.parametrize("fill", RANDOM_FILLS)
def test_random_fills_are_refused(fill: str, tmp_path: Path) -> None:
    with pytest.raises(NetDefError) as caught:
        _load_init(_op(fill, ["conv1_w"], _arg("shape", ints=[2, 2])), tmp_path)
    assert str(caught.value) == (f"{tmp_path / 'init_net.pb'}: init net operator {fill} -> 'conv1_w' draws random "
                                 f"values (a training init net, not trained weights); supported: {SUPPORTED}")


def test_read_netdef_missing_and_garbage(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=_exactly(f"NetDef file {tmp_path / 'gone.pb'} does not exist")):
        read_netdef(tmp_path / "gone.pb")
    with pytest.raises(InputFileError, match=_exactly(f"NetDef file {tmp_path} does not exist")):
        read_netdef(tmp_path)
    garbage = tmp_path / "garbage.pb"
    garbage.write_bytes(b"\x0a\x05ab")  # NetDef.name says 5 bytes, 2 follow
    with pytest.raises(InputFileError, match=_starts(f"{garbage} is not a Caffe2 NetDef (protobuf decoding failed: ")):
        read_netdef(str(garbage))
    net = _net(tmp_path / "ok.pb", (_op("Relu", ["y"], inputs=("x",)),), ("x",), ("y",), name="n")
    assert read_netdef(str(net)) == schema.NetDef(name="n", op=[_op("Relu", ["y"], inputs=("x",))],
                                                  external_input=["x"], external_output=["y"])
    assert read_netdef(_net(tmp_path / "empty.pb", name="")) == schema.NetDef(name="")


VALUE_INFO_BAD = {"not-json": "{", "not-utf8": b"\xff\xfe{", "list": "[1]", "entry-int": '{"data": 3}',
                  "entry-short": '{"data": [1]}', "shape-int": '{"data": [1, 5]}', "shape-str": '{"data": [1, ["a"]]}',
                  "string": '"data"'}


def test_read_value_info(tmp_path: Path) -> None:
    good = tmp_path / "value_info.json"
    good.write_text('{"data": [1, [1, 3, 224, 224]], "scalar": [10, []]}')
    assert read_value_info(good) == {"data": (1, 3, 224, 224), "scalar": ()}
    assert read_value_info(str(good)) == {"data": (1, 3, 224, 224), "scalar": ()}
    with pytest.raises(InputFileError, match=_exactly(f"value info file {tmp_path / 'gone.json'} does not exist")):
        read_value_info(tmp_path / "gone.json")
    for case, text in VALUE_INFO_BAD.items():
        path = tmp_path / f"{case}.json"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        with pytest.raises(InputFileError, match=_starts(f"{path} is not a Caffe2 value_info.json "
                                                           "({name: [elem_type, shape]}): ")):
            read_value_info(path)



def test_read_value_info_refuses_an_object_entry_and_a_folder(tmp_path: Path) -> None:
    """``{"data": {"shape": [1]}}`` and a folder path get the InputFileError sentence every other
    malformed value_info gets (not KeyError, IsADirectoryError)."""
    path = tmp_path / "value_info.json"
    path.write_text('{"data": {"shape": [1]}}')
    for target in (path, tmp_path):
        with pytest.raises(InputFileError):
            read_value_info(target)



def test_constant_fill_refusals_are_sentences(tmp_path: Path) -> None:
    """Real Caffe2 refuses a scalar ``shape`` and a string ``value``; zooforge says so in a NetDefError
    (not a TypeError or ValueError)."""
    for op in (_constant(_arg("shape", i=2)), _constant(_arg("shape", ints=[1]), _arg("value", s=b"x"))):
        with pytest.raises(NetDefError, match="'w'"):
            weights_from_init_net(schema.NetDef(op=[op]), "init_net.pb")


# -- load_caffe2: input shapes and ConstantFill placeholders ----------------------------------------

def _pair(tmp_path: Path, inputs: tuple[str, ...], init_ops: tuple) -> tuple[Path, Path]:
    """``y = Sum(inputs)`` and an init net of ``init_ops``."""
    predict = _net(tmp_path / "predict_net.pb", (_op("Sum", ["y"], inputs=inputs),), inputs, ("y",), name="p")
    return predict, _net(tmp_path / "init_net.pb", init_ops)


W = _given("GivenTensorFill", "floats", [1, 2], [2])


def test_load_caffe2_shapes_from_value_info_and_input_shapes(tmp_path: Path) -> None:
    predict, init = _pair(tmp_path, ("x", "z", "w"), (W,))
    info = tmp_path / "value_info.json"
    info.write_text('{"x": [1, [1, 2]], "z": [1, [3]], "unused": [1, [9]]}')
    model = load_caffe2(predict, init, info)
    assert model.input_shapes == {"x": (1, 2), "z": (3,)} and model.inputs == ["x", "z"] and model.outputs == ["y"]
    _same(model.weights["w"], np.array([1, 2], np.float32))
    assert list(model.weights) == ["w"] and model.predict_net == read_netdef(predict)
    assert load_caffe2(predict, init, info, {"z": [4, 5]}).input_shapes == {"x": (1, 2), "z": (4, 5)}
    shapes = MappingProxyType({"x": (1,), "z": (2,)})  # any Mapping, not only a dict
    assert load_caffe2(predict, init, input_shapes=shapes).input_shapes == {"x": (1,), "z": (2,)}
    with pytest.raises(NetDefError, match=_exactly(f"{predict}: no shape for input(s) ['z']; pass --value-info or "
                                                   "--input-shape")):
        load_caffe2(predict, init, input_shapes={"x": (1,)})
    with pytest.raises(NetDefError, match=_exactly(f"{predict} has inputs ['x', 'z']; name the one to shape")):
        load_caffe2(predict, init, input_shapes=(1, 2))


def test_a_declared_input_drops_its_fill(tmp_path: Path) -> None:
    predict, init = _pair(tmp_path, ("x", "w"), (_given("GivenTensorFill", "floats", [0], [1], "x"), W))
    model = load_caffe2(predict, init, input_shapes={"x": (2,)})
    assert list(model.weights) == ["w"] and model.inputs == ["x"] and model.input_shapes == {"x": (2,)}
    assert list(load_caffe2(predict, init).weights) == ["x", "w"]  # no shapes: a GivenTensorFill is a weight


def test_a_single_constant_fill_placeholder_becomes_the_input(tmp_path: Path) -> None:
    """caffe_translator's convention: ``ConstantFill -> data`` stands for the input."""
    data = _constant(_arg("shape", ints=[1]), blob="data")
    other = _constant(_arg("shape", ints=[2]), _arg("value", f=0.5), blob="c")  # not an external input
    predict, init = _pair(tmp_path, ("data", "w"), (W, data, other))
    model = load_caffe2(predict, init, input_shapes=(1, 2))
    assert model.inputs == ["data"] and model.input_shapes == {"data": (1, 2)} and list(model.weights) == ["w", "c"]
    with pytest.raises(NetDefError, match=_starts(f"{predict}: no shape for input(s) ['data']")):
        load_caffe2(predict, init)
    shaped = tmp_path / "value_info.json"
    shaped.write_text('{"data": [1, [3]]}')
    model = load_caffe2(predict, init, shaped)
    assert model.inputs == ["data"] and model.input_shapes == {"data": (3,)} and list(model.weights) == ["w", "c"]


def test_two_constant_fill_placeholders_stay_weights(tmp_path: Path) -> None:
    fills = (_constant(_arg("shape", ints=[1]), blob="a"), _constant(_arg("shape", ints=[1]), blob="b"))
    predict, init = _pair(tmp_path, ("a", "b"), fills)
    model = load_caffe2(predict, init)
    assert model.inputs == [] and model.input_shapes == {} and list(model.weights) == ["a", "b"]
    with pytest.raises(NetDefError, match=_exactly(f"{predict} has inputs []; name the one to shape")):
        load_caffe2(predict, init, input_shapes=(1,))


def test_load_caffe2_refuses_missing_files(tmp_path: Path) -> None:
    predict, init = _pair(tmp_path, ("x",), ())
    with pytest.raises(InputFileError, match=_exactly(f"NetDef file {tmp_path / 'none.pb'} does not exist")):
        load_caffe2(tmp_path / "none.pb", init)
    with pytest.raises(InputFileError, match=_exactly(f"NetDef file {tmp_path / 'none.pb'} does not exist")):
        load_caffe2(predict, tmp_path / "none.pb", input_shapes=(1,))
    with pytest.raises(InputFileError, match="value info file"):
        load_caffe2(predict, init, tmp_path / "none.json")


# -- Caffe2Model's properties ------------------------------------------------------------------------

def test_caffe2_model_properties() -> None:
    net = schema.NetDef(external_input=["w", "x", "b", "z"], external_output=["y", "p"])
    model = Caffe2Model(net, {"w": np.ones(1), "b": np.ones(1), "unused": np.ones(1)}, {})
    assert model.inputs == ["x", "z"] and model.outputs == ["y", "p"] and not model.synthetic_weights
    assert model.metadata == {} and Caffe2Model(net, {}, {}).metadata is not model.metadata
    model.outputs.append("q")
    assert model.outputs == ["y", "p"]
    for args, synthetic in (([_arg("zooforge_synthetic_weights", i=1)], True),
                            ([_arg("zooforge_synthetic_weights", i=0)], False),
                            ([_arg("other", i=1), _arg("zooforge_synthetic_weights", i=2)], True),
                            ([_arg("other", i=1)], False)):
        assert Caffe2Model(schema.NetDef(arg=args), {}, {}).synthetic_weights is synthetic, args
