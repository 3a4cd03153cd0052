"""``--compat zoo``: reproduce the ONNX model zoo's published Caffe2-era graphs.

The zoo's AlexNet at 224x224 is not Caffe at 224: its pool1 and pool2 round down (54 -> 26 -> 12)
and pool5 carries end padding [0, 0, 1, 1] so that fc6 still receives 6x6 maps, where real Caffe
rounds every pooling up (54 -> 27 -> 13 -> 6). This module rewrites a NetDef the same way: Caffe
pooling rounds down, except the last pooling before the first fully connected operator, which is
padded at its end to give the size Caffe gives at that point. The rewritten NetDef is a faithful
description of the published graph, so the executor still serves as its reference.
"""

from __future__ import annotations

from dataclasses import dataclass

from zooforge.converters.caffe2 import schema
from zooforge.converters.caffe2.executor import infer_shapes
from zooforge.converters.caffe2.executor.geometry import CAFFE_LEGACY_POOLING, pool_extent, window_geometry
from zooforge.converters.caffe2.netdef import Caffe2Model, make_arg, op_args
from zooforge.converters.errors import ExportError, ZooforgeError

_POOLS = ("MaxPool", "AveragePool")


@dataclass(frozen=True)
class Deviation:
    """One pooling whose output differs from Caffe's in compat mode."""

    op_name: str
    caffe_size: tuple[int, int]
    zoo_size: tuple[int, int]

    def __str__(self) -> str:
        return f"{self.op_name}: {self.zoo_size[0]}x{self.zoo_size[1]} (Caffe: {self.caffe_size[0]}x{self.caffe_size[1]})"


def zoo_compat(model: Caffe2Model) -> tuple[Caffe2Model, list[Deviation]]:
    """The NetDef as the zoo's Caffe2 -> ONNX frontend published it, and where it departs from Caffe."""
    shapes = _shapes(model.predict_net, model)
    net = schema.NetDef()
    net.CopyFrom(model.predict_net)
    first_fc = next((i for i, op in enumerate(net.op) if op.type == "FC"), len(net.op))
    legacy = [i for i, op in enumerate(net.op) if op.type in _POOLS and _is_caffe_pool(op)]
    padded = max((i for i in legacy if i < first_fc), default=None)
    for index in legacy:
        _set_arg(net.op[index], "legacy_pad", 0)
    if padded is not None:
        head = schema.NetDef()
        head.op.extend(net.op[:first_fc])  # shapes up to the first FC, before it is made to fit
        floor_shapes = _shapes(head, model)
        op = net.op[padded]
        window = window_geometry(op_args(op))
        size = floor_shapes[op.input[0]][2:]
        want = [pool_extent(size[a], window.kernel[a], window.stride[a], window.pads[a], window.pads[a + 2], True)
                for a in range(2)]
        pads = list(window.pads)
        for axis in range(2):
            covered = (want[axis] - 1) * window.stride[axis] + window.kernel[axis]
            pads[axis + 2] += max(0, covered - (size[axis] + pads[axis] + pads[axis + 2]))
        for key in ("pad", "pads", "pad_t", "pad_l", "pad_b", "pad_r"):
            _drop_arg(op, key)
        op.arg.append(make_arg("pads", pads))
    result = Caffe2Model(net, model.weights, model.input_shapes, dict(model.metadata), dict(model.origins))
    try:
        compat_shapes = _shapes(net, model)
    except ZooforgeError as exc:
        raise ExportError(f"--compat zoo cannot keep this net's shapes consistent: {exc}") from None
    deviations = [
        Deviation(op.name or op.output[0], tuple(shapes[op.output[0]][2:]), tuple(compat_shapes[op.output[0]][2:]))
        for op in net.op if op.type in _POOLS and shapes[op.output[0]] != compat_shapes[op.output[0]]
    ]
    return result, deviations


def _shapes(net, model: Caffe2Model):  # noqa: ANN001, ANN202
    return infer_shapes(net, {**model.input_shapes, **{k: v.shape for k, v in model.weights.items()}})


def _is_caffe_pool(op) -> bool:  # noqa: ANN001
    args = op_args(op)
    return int(args.get("legacy_pad", 0)) == CAFFE_LEGACY_POOLING and not int(args.get("global_pooling", 0))


def _set_arg(op, name: str, value: int) -> None:  # noqa: ANN001
    _drop_arg(op, name)
    op.arg.append(make_arg(name, value))


def _drop_arg(op, name: str) -> None:  # noqa: ANN001
    for index, arg in enumerate(op.arg):
        if arg.name == name:
            del op.arg[index]
            return
