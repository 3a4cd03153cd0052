"""Handlers for shape and indexing operators."""

from __future__ import annotations

import numpy as np

from zooforge.converters.caffe2.executor.tensor import cast_code, concat_axis, slice_bounds
from zooforge.converters.errors import ExportError
from zooforge.converters.onnx.context import OpEmitter
from zooforge.converters.onnx.handlers.base import Handler

_INT64_MAX = np.iinfo(np.int64).max
# caffe2.TensorProto.DataType -> (onnx.TensorProto.DataType, its name for Cast-1)
_CAST_TARGETS = {1: (1, "FLOAT"), 2: (6, "INT32"), 10: (7, "INT64"), 13: (11, "DOUBLE")}  # Caffe2 13 is DOUBLE (12 is FLOAT16)


class Flatten(Handler):
    caffe2_type = "Flatten"
    emits = ("Flatten",)

    @classmethod
    def version_1(cls, e: OpEmitter) -> None:
        e.node("Flatten", e.inputs[:1], e.outputs[:1], axis=int(e.args.get("axis", 1)))

    version_9 = version_1
    version_11 = version_1
    version_13 = version_1
    version_21 = version_1
    version_23 = version_1
    version_24 = version_1
    version_25 = version_1


class Reshape(Handler):
    caffe2_type = "Reshape"
    emits = ("Reshape",)

    @classmethod
    def version_1(cls, e: OpEmitter) -> None:
        e.unused_outputs_only(1)
        if "shape" not in e.args:
            raise ExportError(f"{e.label}: a shape given as an input cannot be exported")
        e.reshape(e.inputs[0], e.outputs[0], [int(d) for d in e.args["shape"]])

    version_5 = version_1
    version_13 = version_1
    version_14 = version_1
    version_19 = version_1
    version_21 = version_1
    version_23 = version_1
    version_24 = version_1
    version_25 = version_1


class Transpose(Handler):
    caffe2_type = "Transpose"
    emits = ("Transpose",)

    @classmethod
    def version_1(cls, e: OpEmitter) -> None:
        axes = e.args.get("axes")
        e.node("Transpose", e.inputs[:1], e.outputs[:1], perm=[int(a) for a in axes] if axes else None)

    version_13 = version_1
    version_21 = version_1
    version_23 = version_1
    version_24 = version_1
    version_25 = version_1


class Slice(Handler):
    caffe2_type = "Slice"
    emits = ("Slice",)

    @classmethod
    def _ranges(cls, e: OpEmitter) -> tuple[list[int], list[int], list[int]]:
        """ONNX starts/ends/axes for the axes that are actually cut (a free batch stays free)."""
        shape = e.in_shape(0)
        starts, ends, axes = [], [], []
        for axis, (bound, start, end) in enumerate(
            zip(slice_bounds(shape, e.args), e.args["starts"], e.args["ends"])
        ):
            if bound.start == 0 and bound.stop == shape[axis]:
                continue
            starts.append(bound.start)
            ends.append(_INT64_MAX if int(end) == -1 else bound.stop)
            axes.append(axis)
        return starts, ends, axes

    @classmethod
    def version_1(cls, e: OpEmitter) -> None:
        starts, ends, axes = cls._ranges(e)
        if not axes:  # nothing cut: Slice-1's list attributes cannot be empty, so take all of axis 0
            starts, ends, axes = [0], [_INT64_MAX], [0]
        e.node("Slice", e.inputs[:1], e.outputs[:1], starts=starts, ends=ends, axes=axes)

    @classmethod
    def version_10(cls, e: OpEmitter) -> None:
        starts, ends, axes = cls._ranges(e)
        inputs = [e.inputs[0]] + [e.const(hint, values, np.int64) for hint, values in
                                  (("starts", starts), ("ends", ends), ("axes", axes))]
        e.node("Slice", inputs, e.outputs[:1])

    version_11 = version_10
    version_13 = version_10


class Concat(Handler):
    caffe2_type = "Concat"
    emits = ("Concat",)

    @classmethod
    def version_1(cls, e: OpEmitter) -> None:
        e.unused_outputs_only(1)
        if int(e.args.get("add_axis", 0)):
            raise ExportError(f"{e.label}: Concat with add_axis cannot be exported")
        axis = concat_axis(e.args, len(e.in_shape(0)))  # Caffe2's rule: axis, or from order
        e.node("Concat", e.inputs, e.outputs[:1], axis=axis)

    version_4 = version_1
    version_11 = version_1
    version_13 = version_1


class Split(Handler):
    caffe2_type = "Split"
    emits = ("Split",)

    @classmethod
    def _sizes(cls, e: OpEmitter) -> tuple[int, list[int]]:
        axis = int(e.args.get("axis", 1))
        return axis, [e.out_shape(i)[axis] for i in range(len(e.outputs))]

    @classmethod
    def version_1(cls, e: OpEmitter) -> None:
        axis, sizes = cls._sizes(e)
        e.node("Split", e.inputs[:1], e.outputs, axis=axis, split=sizes)

    version_2 = version_1
    version_11 = version_1

    @classmethod
    def version_13(cls, e: OpEmitter) -> None:
        axis, sizes = cls._sizes(e)
        e.node("Split", [e.inputs[0], e.const("split", sizes, np.int64)], e.outputs, axis=axis)

    version_18 = version_13


class ArgMax(Handler):
    caffe2_type = "ArgMax"
    emits = ("ArgMax",)

    @classmethod
    def version_1(cls, e: OpEmitter) -> None:
        axis = int(e.args.get("axis", -1)) % len(e.in_shape(0))
        e.node("ArgMax", e.inputs[:1], e.outputs[:1], axis=axis, keepdims=int(e.args.get("keepdims", 1)))
        e.context.dtypes[e.outputs[0]] = 7  # INT64

    version_11 = version_1
    version_12 = version_1
    version_13 = version_1


class Cast(Handler):
    caffe2_type = "Cast"
    emits = ("Cast",)

    @classmethod
    def _target(cls, e: OpEmitter) -> tuple[int, str]:
        to = cast_code(e.args)
        if to not in _CAST_TARGETS:
            raise ExportError(f"{e.label}: Cast to Caffe2 data type {to} cannot be exported")
        return _CAST_TARGETS[to]

    @classmethod
    def version_1(cls, e: OpEmitter) -> None:
        e.node("Cast", e.inputs[:1], e.outputs[:1], to=cls._target(e)[1])
        e.context.dtypes[e.outputs[0]] = cls._target(e)[0]

    @classmethod
    def version_6(cls, e: OpEmitter) -> None:
        e.node("Cast", e.inputs[:1], e.outputs[:1], to=cls._target(e)[0])
        e.context.dtypes[e.outputs[0]] = cls._target(e)[0]

    version_9 = version_6
    version_13 = version_6
    version_19 = version_6
    version_21 = version_6
    version_23 = version_6
    version_24 = version_6
    version_25 = version_6
    version_28 = version_6


# -- the forks' layers (issue 13) ----------------------------------------------------------------

class ChannelShuffle(Handler):
    """ShuffleNet's channel shuffle: (N, group, C / group, rest) with the middle axes swapped, as
    Reshape, Transpose, Reshape (the batch left free: Reshape's 0 copies it)."""

    caffe2_type = "ChannelShuffle"
    emits = ("Reshape", "Transpose")

    @classmethod
    def version_1(cls, e: OpEmitter) -> None:
        shape = e.in_shape(0)
        if e.args.get("order", "NCHW") != "NCHW":
            raise ExportError(f"{e.label}: only NCHW order can be exported")
        group = int(e.args.get("group", 1))
        grouped, swapped = e.temp("grouped"), e.temp("swapped")
        e.reshape(e.inputs[0], grouped, [0, group, shape[1] // group, -1])
        e.node("Transpose", [grouped], [swapped], perm=[0, 2, 1, 3])
        e.reshape(swapped, e.outputs[0], [0, *shape[1:]])

    version_5 = version_13 = version_14 = version_19 = version_21 = version_1
    version_23 = version_24 = version_25 = version_1


HANDLERS = (Flatten, Reshape, Transpose, Slice, Concat, Split, ArgMax, Cast, ChannelShuffle)
