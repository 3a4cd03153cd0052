"""Handlers for the detection operators: TopK, Gather, LT and BoxWithNMSLimit (NonMaxSuppression, opset 10+)."""

from __future__ import annotations

import numpy as np

from zooforge.converters.caffe2.executor.detection import nms_args
from zooforge.converters.errors import ExportError, ZooforgeError
from zooforge.converters.onnx.context import OpEmitter
from zooforge.converters.onnx.handlers.base import Handler

_INT64, _BOOL, _FLOAT = 7, 9, 1  # onnx.TensorProto codes


class TopK(Handler):
    """Caffe2's TopK: the k largest along ``axis``, largest first, equal values by lower index."""

    caffe2_type = "TopK"
    emits = ("TopK",)

    @classmethod
    def _axis_k(cls, e: OpEmitter) -> tuple[int, int]:
        e.unused_outputs_only(2)
        return int(e.args.get("axis", -1)) % len(e.in_shape(0)), int(e.args["k"])

    @classmethod
    def version_1(cls, e: OpEmitter) -> None:
        axis, k = cls._axis_k(e)
        e.node("TopK", e.inputs[:1], e.outputs[:2], axis=axis, k=k)
        e.context.dtypes[e.outputs[1]] = _INT64

    @classmethod
    def version_10(cls, e: OpEmitter) -> None:
        axis, k = cls._axis_k(e)
        e.node("TopK", [e.inputs[0], e.const("k", [k], np.int64)], e.outputs[:2], axis=axis)
        e.context.dtypes[e.outputs[1]] = _INT64

    version_11 = version_10
    version_24 = version_10


class Gather(Handler):
    caffe2_type = "Gather"
    emits = ("Gather",)

    @classmethod
    def version_1(cls, e: OpEmitter) -> None:
        if int(e.args.get("axis", 0)) != 0:
            raise ExportError(f"{e.label}: Gather on an axis other than 0 cannot be exported")
        e.node("Gather", e.inputs[:2], e.outputs[:1], axis=0)
        dtype = e.context.dtypes.get(e.inputs[0])
        if dtype is not None:
            e.context.dtypes[e.outputs[0]] = dtype

    version_11 = version_1
    version_13 = version_1


class LT(Handler):
    """Caffe2's LT with NumPy broadcasting (broadcast=0), a bool result."""

    caffe2_type = "LT"
    emits = ("Less",)

    @classmethod
    def version_1(cls, e: OpEmitter) -> None:
        """Less-1 broadcasts only with its legacy attributes: same shapes only."""
        if e.in_shape(0) != e.in_shape(1):
            raise ExportError(f"{e.label}: LT of shapes {list(e.in_shape(0))} and {list(e.in_shape(1))} needs "
                              "NumPy broadcasting, which ONNX's Less has from opset 7")
        cls.version_7(e)

    @classmethod
    def version_7(cls, e: OpEmitter) -> None:
        if int(e.args.get("broadcast", 0)):
            raise ExportError(f"{e.label}: LT with the legacy broadcast=1 cannot be exported")
        e.node("Less", e.inputs[:2], e.outputs[:1])
        e.context.dtypes[e.outputs[0]] = _BOOL

    version_9 = version_7
    version_13 = version_7


class BoxWithNMSLimit(Handler):
    """Caffe2's per-class NMS with a limit over all classes, as ONNX NonMaxSuppression (opset 10 on).

    Exported: class-agnostic boxes, ``legacy_plus_one=0`` (ONNX's IoU has no +1), no batch_splits.
    NonMaxSuppression selects per class, by score (ties: lower index first), those above
    score_thresh, at most detections_per_im per class as Caffe2's nms_cpu stops; the limit over
    all classes keeps the best by score (ties: lower class, then earlier) and the original order
    (class, then score) is restored by sorting the kept positions.
    """

    caffe2_type = "BoxWithNMSLimit"
    emits = ("NonMaxSuppression", "Unsqueeze", "Transpose", "Slice", "Gather", "Reshape", "Mul", "Add", "Cast",
             "Shape", "Min", "TopK", "Neg", "Identity")
    refuses_below = 10

    @classmethod
    def version_1(cls, e: OpEmitter) -> None:
        raise ExportError(f"layer '{e.op.name}' (DetectionOutput, exported through {e.label}) cannot be exported "
                          f"at opset {e.opset}: ONNX has NonMaxSuppression from opset 10, the lowest that works")

    @classmethod
    def version_10(cls, e: OpEmitter) -> None:
        a = cls._args(e)
        priors, columns = e.in_shape(0)
        first = int(a["input_boxes_include_bg_cls"])  # the score column of class j = 1 is j - 1 + first
        count = columns - 1
        boxes = cls._unsqueeze(e, e.inputs[1], "boxes3")
        fg = e.temp("fg_scores")
        e.node("Slice", [e.inputs[0], e.const("starts", [first], np.int64), e.const("ends", [first + count], np.int64),
                         e.const("axes", [1], np.int64)], [fg])
        by_class = e.temp("scores_by_class")
        e.node("Transpose", [fg], [by_class], perm=[1, 0])
        scores3 = cls._unsqueeze(e, by_class, "scores3")
        limit = int(a["detections_per_im"])
        selected = e.temp("selected")
        e.node("NonMaxSuppression", [boxes, scores3, e.const("max_per_class", [limit if limit > 0 else priors], np.int64),
                                     e.const("iou", [a["nms"]]), e.const("score_thresh", [a["score_thresh"]])],
               [selected], center_point_box=0)
        klass, box = (cls._column(e, selected, i, name) for i, name in ((1, "class"), (2, "box")))
        flat = e.temp("flat_scores")
        e.reshape(by_class, flat, [-1])
        flat_index = e.temp("flat_index")
        scaled = e.temp("class_offset")
        e.node("Mul", [klass, e.const("priors", [priors], np.int64)], [scaled])
        e.node("Add", [scaled, box], [flat_index])
        score = e.temp("score")
        e.node("Gather", [flat, flat_index], [score], axis=0)
        if limit > 0:
            keep = cls._best_in_order(e, score, limit)
            klass, box, score = (cls._take(e, source, keep, name) for source, name in
                                 ((klass, "class_kept"), (box, "box_kept"), (score, "score_kept")))
        cls._finish(e, score, box, klass, a)

    # Later schema changes of what it emits add types (and Reshape's allowzero, Shape's start/end,
    # Cast's saturate), none of which changes this graph: Unsqueeze's axes input at 13 is handled.
    version_11 = version_12 = version_13 = version_14 = version_15 = version_16 = version_10
    version_19 = version_21 = version_23 = version_24 = version_25 = version_28 = version_10

    @classmethod
    def _args(cls, e: OpEmitter) -> dict[str, float]:
        try:
            a = nms_args(e.args)
        except ZooforgeError as exc:
            raise ExportError(f"{e.label}: {exc}") from None
        if len(e.inputs) > 2:
            raise ExportError(f"{e.label}: batch_splits (several images) cannot be exported")
        if e.context.dynamic_batch:
            raise ExportError(f"layer '{e.op.name}' (DetectionOutput, exported through {e.label}) handles one "
                              "image: it cannot be exported with a dynamic batch")
        if not a["cls_agnostic_bbox_reg"] or a["legacy_plus_one"]:
            raise ExportError(f"{e.label}: only class-agnostic boxes with legacy_plus_one=0 can be exported")
        e.unused_outputs_only(3)
        if any(d < 0 for d in (*e.in_shape(0), *e.in_shape(1))):
            raise ExportError(f"{e.label}: inputs of a data-dependent size cannot be exported")
        return a

    @classmethod
    def _unsqueeze(cls, e: OpEmitter, source: str, hint: str) -> str:
        out = e.temp(hint)
        if e.opset >= 13:
            e.node("Unsqueeze", [source, e.const("axes", [0], np.int64)], [out])
        else:
            e.node("Unsqueeze", [source], [out], axes=[0])
        return out

    @classmethod
    def _column(cls, e: OpEmitter, selected: str, index: int, hint: str) -> str:
        out = e.temp(hint)
        e.node("Gather", [selected, e.const(f"{hint}_column", index, np.int64)], [out], axis=1)
        return out

    @classmethod
    def _take(cls, e: OpEmitter, source: str, index: str, hint: str) -> str:
        out = e.temp(hint)
        e.node("Gather", [source, index], [out], axis=0)
        return out

    @classmethod
    def _best_in_order(cls, e: OpEmitter, score: str, limit: int) -> str:
        """Positions of the ``limit`` best scores (ties: lower position), in increasing position."""
        count, count_float, k_float, k = e.temp("count"), e.temp("count_float"), e.temp("k_float"), e.temp("k")
        e.node("Shape", [score], [count])  # Min takes int64 only from opset 12: the minimum in float (exact)
        e.node("Cast", [count], [count_float], to=_FLOAT)
        e.node("Min", [count_float, e.const("limit", [float(limit)])], [k_float])
        e.node("Cast", [k_float], [k], to=_INT64)
        values, best = e.temp("best_scores"), e.temp("best")
        e.node("TopK", [score, k], [values, best], axis=0)
        as_float, negated = e.temp("best_float"), e.temp("best_negated")
        e.node("Cast", [best], [as_float], to=_FLOAT)
        e.node("Neg", [as_float], [negated])
        _, order = e.temp("order_values"), e.temp("order")
        e.node("TopK", [negated, k], [_, order], axis=0)
        return cls._take(e, best, order, "kept")

    @classmethod
    def _finish(cls, e: OpEmitter, score: str, box: str, klass: str, a: dict[str, float]) -> None:
        e.node("Identity", [score], [e.outputs[0]])
        e.node("Gather", [e.inputs[1], box], [e.outputs[1]], axis=0)
        shifted = e.temp("class_id")
        offset = 1 if a["output_classes_include_bg_cls"] else 0  # NMS class c is Caffe2's class j = c + 1
        e.node("Add", [klass, e.const("class_shift", [offset], np.int64)], [shifted])
        e.node("Cast", [shifted], [e.outputs[2]], to=_FLOAT)


HANDLERS = (TopK, Gather, LT, BoxWithNMSLimit)
