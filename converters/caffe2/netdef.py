"""Build, read and write Caffe2 NetDefs in the conventions of the Caffe2 model zoo.

A model is a pair: ``predict_net.pb`` (the operators, with weights as external inputs) and
``init_net.pb`` (one ``GivenTensorFill`` per weight), plus ``value_info.json`` giving each real
input's element type and shape. In memory zooforge keeps the pair as a ``Caffe2Model``: the
predict NetDef and the weights as NumPy arrays, so large tensors are never copied into protobuf
repeated fields unless the pair is written out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError

from zooforge.converters.caffe2 import schema
from zooforge.converters.errors import InputFileError, NetDefError, OutputFileError
from zooforge.converters.fileio import atomic_write_bytes, atomic_writer
from zooforge.converters.wire import field_header

FLOAT_TYPE = 1  # caffe2.TensorProto.FLOAT
INT32_TYPE = 2
INT64_TYPE = 10

SYNTHETIC_ARG = "zooforge_synthetic_weights"
# Net-level argument listing the external outputs that are detection rows (SSD's DetectionOutput):
# [image, label, score, xmin, ymin, xmax, ymax] per row, whose order ties may change between runtimes.
DETECTION_ROWS_ARG = "zooforge_detection_rows"
CAFFE2_FILES = ("predict_net.pb", "init_net.pb", "value_info.json")  # what write_caffe2 writes  # net-level argument marking synthetic weights

ArgValue = int | float | str | bytes | list[int] | list[float] | list[str]


@dataclass
class Caffe2Model:
    """A NetDef pair in memory: operators, weights, and the shapes of the real inputs."""

    predict_net: Any
    weights: dict[str, np.ndarray]
    input_shapes: dict[str, tuple[int, ...]]
    metadata: dict[str, str] = field(default_factory=dict)
    # Which Caffe layer each operator comes from (operator name -> "layer 'x' (Type)"), so that an
    # export refusal names the layer; empty for NetDefs read from files.
    origins: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def synthetic_weights(self) -> bool:
        """Whether the weights are zooforge's seeded synthetic ones (recorded as a net argument)."""
        return any(arg.name == SYNTHETIC_ARG and arg.i for arg in self.predict_net.arg)

    @property
    def detection_rows(self) -> list[str]:
        """The external outputs holding detection rows (recorded as a net argument)."""
        return [name.decode() for arg in self.predict_net.arg if arg.name == DETECTION_ROWS_ARG for name in arg.strings]

    @property
    def inputs(self) -> list[str]:
        return [name for name in self.predict_net.external_input if name not in self.weights]

    @property
    def outputs(self) -> list[str]:
        return list(self.predict_net.external_output)


def make_op(
    op_type: str,
    inputs: Iterable[str],
    outputs: Iterable[str],
    name: str = "",
    **args: ArgValue,
) -> Any:
    """Create an ``OperatorDef``; keyword arguments become Caffe2 ``Argument``s."""
    op = schema.OperatorDef(type=op_type, input=list(inputs), output=list(outputs), name=name)
    for key in sorted(args):
        op.arg.append(make_arg(key, args[key]))
    return op


def make_arg(name: str, value: ArgValue) -> Any:
    arg = schema.Argument(name=name)
    if isinstance(value, bool):
        arg.i = int(value)
    elif isinstance(value, (int, np.integer)):
        arg.i = int(value)
    elif isinstance(value, (float, np.floating)):
        arg.f = float(value)
    elif isinstance(value, str):
        arg.s = value.encode()
    elif isinstance(value, bytes):
        arg.s = value
    else:
        items = list(value)
        if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in items):
            arg.ints.extend(int(v) for v in items)
        elif all(isinstance(v, (int, float, np.number)) for v in items):
            arg.floats.extend(float(v) for v in items)
        elif all(isinstance(v, str) for v in items):
            arg.strings.extend(v.encode() for v in items)
        else:
            raise TypeError(f"argument {name!r} has an unsupported value {value!r}")
    return arg


def op_args(op: Any) -> dict[str, Any]:
    """An ``OperatorDef``'s arguments as a plain dict (strings decoded, lists as lists)."""
    result: dict[str, Any] = {}
    for arg in op.arg:
        if arg.HasField("f"):
            result[arg.name] = arg.f
        elif arg.HasField("i"):
            result[arg.name] = arg.i
        elif arg.HasField("s"):
            result[arg.name] = arg.s.decode(errors="replace")
        elif len(arg.floats):
            result[arg.name] = list(arg.floats)
        elif len(arg.ints):
            result[arg.name] = list(arg.ints)
        elif len(arg.strings):
            result[arg.name] = [s.decode(errors="replace") for s in arg.strings]
        else:
            result[arg.name] = []
    return result


# -- files ------------------------------------------------------------------------------------

_FILL_DTYPES: Mapping[str, Any] = {
    "GivenTensorFill": np.float32,
    "GivenTensorDoubleFill": np.float64,
    "GivenTensorIntFill": np.int32,
    "GivenTensorInt64Fill": np.int64,
}


_INTEGER_FILLS: Mapping[type, str] = {np.int32: "GivenTensorIntFill", np.int64: "GivenTensorInt64Fill"}
_NET_NAME, _NET_OP, _NET_EXTERNAL_OUTPUT = 1, 2, 8   # NetDef fields
_OP_ARG = 5                                          # OperatorDef.arg
_ARG_FLOATS = 5                                      # Argument.floats


def init_net_chunks(weights: Mapping[str, np.ndarray], name: str) -> Iterator[bytes | memoryview]:
    """Serialize the init net (one ``GivenTensorFill`` per weight) piece by piece.

    Float values are encoded straight from each array's buffer as a packed ``floats`` field, so
    hundreds of megabytes of weights are never copied into protobuf repeated fields.
    """
    yield schema.NetDef(name=f"{name}_init").SerializeToString()
    for blob, array in weights.items():
        integer_fill = _INTEGER_FILLS.get(array.dtype.type)
        if integer_fill is not None:
            op = make_op(integer_fill, [], [blob], shape=[int(d) for d in array.shape])
            op.arg.append(schema.Argument(name="values", ints=array.ravel().tolist()))
            body = op.SerializeToString()
            yield field_header(_NET_OP, len(body)) + body
            continue
        # flat first: a memoryview of a zero-size array with two or more dims cannot be cast
        data = memoryview(np.ascontiguousarray(array, dtype="<f4").reshape(-1)).cast("B")
        head = make_op("GivenTensorFill", [], [blob], shape=[int(d) for d in array.shape]).SerializeToString()
        values = schema.Argument(name="values").SerializeToString() + field_header(_ARG_FLOATS, data.nbytes)
        values_length = len(values) + data.nbytes
        arg = field_header(_OP_ARG, values_length) + values
        yield field_header(_NET_OP, len(head) + len(arg) + data.nbytes) + head + arg
        yield data
    yield schema.NetDef(external_output=list(weights)).SerializeToString()


def build_init_net(weights: Mapping[str, np.ndarray], name: str) -> Any:
    """The init net as a message (copies every value: for small models and tests)."""
    net = schema.NetDef()
    net.ParseFromString(b"".join(bytes(chunk) for chunk in init_net_chunks(weights, name)))
    return net


_CONSTANT_DTYPES: Mapping[int, Any] = {1: np.float32, 2: np.int32, 10: np.int64, 13: np.float64}
_RANDOM_FILLS = ("XavierFill", "GaussianFill", "UniformFill", "UniformIntFill", "MSRAFill", "RangeFill")


@dataclass
class InitNet:
    """An init net's tensors; ``constant_fills`` names the blobs made by ``ConstantFill``, which
    caffe_translator also uses as a placeholder for the net's input (``ConstantFill -> data``)."""

    weights: dict[str, np.ndarray]
    constant_fills: list[str]


def weights_from_init_net(init_net: Any, source: str) -> InitNet:
    """Execute an init net's fill operators into arrays."""
    weights: dict[str, np.ndarray] = {}
    constant_fills: list[str] = []
    for op in init_net.op:
        if len(op.output) != 1:
            raise NetDefError(f"{source}: init net operator {op.type} -> {list(op.output)} has {len(op.output)} outputs")
        name = op.output[0]
        if op.type == "ConstantFill":
            weights[name] = _constant_fill(op, source)
            constant_fills.append(name)
            continue
        dtype = _fill_dtype(op, source)
        if dtype is None:
            kind = "draws random values (a training init net, not trained weights)" if op.type in _RANDOM_FILLS \
                else "is not a fill zooforge reads"
            raise NetDefError(
                f"{source}: init net operator {op.type} -> '{name}' {kind}; supported: "
                f"{', '.join([*_FILL_DTYPES, 'ConstantFill'])}"
            )
        shape = ()
        values = None
        for arg in op.arg:
            if arg.name == "shape":
                shape = tuple(int(d) for d in arg.ints)
            elif arg.name == "values":
                values = arg.ints if np.issubdtype(dtype, np.integer) else arg.floats
        if values is None:
            raise NetDefError(f"{source}: fill for '{name}' has no 'values' argument")
        wide = np.asarray(values, dtype=np.int64 if np.issubdtype(dtype, np.integer) else dtype)
        if dtype == np.int32 and wide.size and (wide.min() < _INT32_MIN or wide.max() > _INT32_MAX):
            raise NetDefError(f"{source}: fill for '{name}' has values outside int32's range")
        array = wide.astype(dtype, copy=False)
        if array.size != int(np.prod(shape, dtype=np.int64)):
            raise NetDefError(
                f"{source}: fill for '{name}' has {array.size} values for shape {list(shape)}"
            )
        weights[name] = array.reshape(shape)
    return InitNet(weights, constant_fills)


_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


def _fill_dtype(op: Any, source: str) -> Any:
    """The dtype a given-values fill makes: its type's, or for ``GivenTensorFill`` its ``dtype``
    argument (as real Caffe2 reads it: float types from ``floats``, integer types from ``ints``)."""
    dtype = _FILL_DTYPES.get(op.type)
    if op.type != "GivenTensorFill":
        return dtype
    code = next((arg.i for arg in op.arg if arg.name == "dtype"), None)
    if code is None:
        return dtype
    if code not in _CONSTANT_DTYPES:
        raise NetDefError(f"{source}: GivenTensorFill for '{op.output[0]}' has an unsupported dtype {code}")
    return _CONSTANT_DTYPES[code]


def _constant_fill(op: Any, source: str) -> np.ndarray:
    """Caffe2's ConstantFill without inputs: ``shape``, ``value`` (default 0) and ``dtype``."""
    args = op_args(op)
    name = op.output[0]
    if len(op.input) or any(key in args for key in ("input_as_shape", "extra_shape")):
        raise NetDefError(f"{source}: ConstantFill for '{name}' takes its shape from an input, which zooforge cannot read")
    value = args.get("value", 0)
    if not isinstance(value, (int, float)):
        raise NetDefError(f"{source}: ConstantFill for '{name}' has a value {value!r} that is not a number")
    # Caffe2: without dtype, the type of ``value`` decides (an integer value makes int64)
    default = 10 if "value" in args and isinstance(value, int) else 1
    dtype = _CONSTANT_DTYPES.get(int(args.get("dtype", default)))
    if dtype is None:
        raise NetDefError(f"{source}: ConstantFill for '{name}' has an unsupported dtype {args['dtype']}")
    shape = args.get("shape", [])
    if not isinstance(shape, list):
        raise NetDefError(f"{source}: ConstantFill for '{name}' has a shape {shape!r} that is not a list of ints")
    return np.full(tuple(int(d) for d in shape), value, dtype=dtype)


def read_netdef(path: Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"NetDef file {path} does not exist")
    net = schema.NetDef()
    try:
        net.ParseFromString(path.read_bytes())
    except DecodeError as exc:
        raise InputFileError(f"{path} is not a Caffe2 NetDef (protobuf decoding failed: {exc})") from None
    return net


def read_value_info(path: Path) -> dict[str, tuple[int, ...]]:
    """``value_info.json``: ``{"data": [elem_type, [1, 3, 224, 224]]}``."""
    try:
        raw = json.loads(Path(path).read_text())
        return {name: tuple(int(d) for d in info[1]) for name, info in raw.items()}
    except FileNotFoundError:
        raise InputFileError(f"value info file {path} does not exist") from None
    except IsADirectoryError:
        raise InputFileError(f"value info file {path} is a folder") from None
    except (ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        raise InputFileError(
            f"{path} is not a Caffe2 value_info.json ({{name: [elem_type, shape]}}): {exc}"
        ) from None


def load_caffe2(
    predict_net: Path,
    init_net: Path,
    value_info: Path | None = None,
    input_shapes: Mapping[str, tuple[int, ...]] | tuple[int, ...] | None = None,
) -> Caffe2Model:
    """Read a NetDef pair; input shapes come from ``value_info`` and/or ``input_shapes``."""
    predict = read_netdef(predict_net)
    init = weights_from_init_net(read_netdef(init_net), str(init_net))
    shapes = dict(read_value_info(value_info)) if value_info else {}
    if isinstance(input_shapes, Mapping):
        shapes.update(input_shapes)
    weights = dict(init.weights)
    # Fills of declared inputs are placeholders (the historical frontend drops them too).
    for name in shapes:
        weights.pop(name, None)
    model = Caffe2Model(predict, weights, {})
    if not model.inputs and not shapes:
        # caffe_translator's convention: the input blob is filled by a ConstantFill placeholder.
        placeholders = [name for name in predict.external_input if name in init.constant_fills]
        if len(placeholders) == 1:
            del weights[placeholders[0]]
    if input_shapes is not None and not isinstance(input_shapes, Mapping):
        if len(model.inputs) != 1:
            raise NetDefError(f"{predict_net} has inputs {model.inputs}; name the one to shape")
        shapes[model.inputs[0]] = tuple(input_shapes)
    missing = [name for name in model.inputs if name not in shapes]
    if missing:
        raise NetDefError(
            f"{predict_net}: no shape for input(s) {missing}; pass --value-info or --input-shape"
        )
    model.input_shapes = {name: tuple(shapes[name]) for name in model.inputs}
    return model


def write_caffe2(model: Caffe2Model, directory: Path) -> dict[str, Path]:
    """Write ``predict_net.pb``, ``init_net.pb`` and ``value_info.json`` into ``directory``."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputFileError(directory, exc) from None
    value_info = {name: [FLOAT_TYPE, list(shape)] for name, shape in model.input_shapes.items()}
    paths = {name.split(".")[0]: directory / name for name in CAFFE2_FILES}
    atomic_write_bytes(paths["predict_net"], model.predict_net.SerializeToString())
    with atomic_writer(paths["init_net"]) as stream:
        for chunk in init_net_chunks(model.weights, model.predict_net.name or "model"):
            stream.write(chunk)
    atomic_write_bytes(paths["value_info"], json.dumps(value_info).encode())
    return paths

