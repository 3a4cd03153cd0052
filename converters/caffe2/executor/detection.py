"""Detection operators: TopK, Gather, LT and BoxWithNMSLimit, as real Caffe2 (torch 1.10.2) runs them.

BoxWithNMSLimit's output length depends on the data: its shape rule says ``DYNAMIC`` there, and
only operators marked ``dynamic`` (Concat, Cast, Gather's data, TopK) may read such a blob.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from zooforge.converters.caffe2.executor.operator import DYNAMIC, Operator, Shape
from zooforge.converters.errors import NetDefError


def _topk_k(shape: Shape, args: Mapping[str, Any]) -> tuple[int, int]:
    if "k" not in args or int(args["k"]) < 1:
        raise NetDefError("TopK needs a positive k")
    axis = int(args.get("axis", -1))
    if not -len(shape) <= axis < len(shape):
        raise NetDefError(f"TopK axis {axis} is out of range for a {len(shape)}-D input")
    return int(args["k"]), axis % len(shape)


def _topk(inputs: Sequence[np.ndarray], args: Mapping[str, Any], n: int) -> list[np.ndarray]:
    """The k largest along ``axis``, largest first; equal values in index order (Caffe2's ValueComp)."""
    x = inputs[0]
    k, axis = _topk_k(x.shape, args)
    order = np.argsort(-x.astype(np.float64), axis=axis, kind="stable")
    indices = np.take(order, np.arange(k), axis=axis)
    values = np.take_along_axis(x, indices, axis=axis)
    outputs = [values.astype(np.float32), indices.astype(np.int64)]
    if n > 2:  # flattened indices: into the input viewed as (outer, axis size, inner) row-major
        raise NetDefError("TopK's third output (flattened indices) is not supported")
    return outputs


def _topk_shapes(shapes: Sequence[Shape], args: Mapping[str, Any], n: int) -> list[Shape]:
    shape = tuple(shapes[0])
    k, axis = _topk_k(shape, args)
    if shape[axis] != DYNAMIC and shape[axis] < k:
        raise NetDefError(f"TopK k {k} exceeds the dimension {shape[axis]} of axis {axis}")
    if n > 2:
        raise NetDefError("TopK's third output (flattened indices) is not supported")
    out = shape[:axis] + (k,) + shape[axis + 1 :]
    return [out, out]


def _gather(inputs: Sequence[np.ndarray], args: Mapping[str, Any], n: int) -> list[np.ndarray]:
    """Rows of DATA (axis 0) picked by INDICES; an index outside the rows is refused, as Caffe2 does."""
    data, indices = inputs
    _gather_check(args)
    index = np.asarray(indices).astype(np.int64)
    if index.size and (index.min() < 0 or index.max() >= data.shape[0]):
        raise NetDefError(f"Gather index out of range 0..{data.shape[0] - 1}")
    return [data[index]]


def _gather_check(args: Mapping[str, Any]) -> None:
    if int(args.get("axis", 0)) != 0 or "match_outer" in args:
        raise NetDefError("Gather is supported on axis 0 only")


def _gather_shapes(shapes: Sequence[Shape], args: Mapping[str, Any], n: int) -> list[Shape]:
    _gather_check(args)
    if len(shapes[0]) < 1:
        raise NetDefError("Gather's DATA must have at least one dimension")
    return [tuple(shapes[1]) + tuple(shapes[0][1:])]


def _lt_shapes(shapes: Sequence[Shape], args: Mapping[str, Any], n: int) -> list[Shape]:
    if int(args.get("broadcast", 0)):
        raise NetDefError("LT with the legacy broadcast=1 is not supported (use NumPy broadcasting)")
    try:
        return [tuple(np.broadcast_shapes(tuple(shapes[0]), tuple(shapes[1])))]
    except ValueError:
        raise NetDefError(f"shapes {list(shapes[0])} and {list(shapes[1])} do not broadcast") from None


def _lt(inputs: Sequence[np.ndarray], args: Mapping[str, Any], n: int) -> list[np.ndarray]:
    return [np.less(inputs[0], inputs[1])]


# -- BoxWithNMSLimit ----------------------------------------------------------------------------

_NMS_DEFAULTS = {"score_thresh": 0.05, "nms": 0.3, "detections_per_im": 100, "legacy_plus_one": 1,
                 "cls_agnostic_bbox_reg": 0, "input_boxes_include_bg_cls": 1, "output_classes_include_bg_cls": 1}
_NMS_UNSUPPORTED = {"soft_nms_enabled": 0, "rotated": 0}


def nms_args(args: Mapping[str, Any]) -> dict[str, float]:
    """BoxWithNMSLimit's arguments with real Caffe2's defaults; soft NMS and rotated boxes refused."""
    for key, allowed in _NMS_UNSUPPORTED.items():
        if int(args.get(key, allowed)) != allowed:
            raise NetDefError(f"BoxWithNMSLimit with {key}={args[key]} is not supported")
    return {key: float(args.get(key, default)) for key, default in _NMS_DEFAULTS.items()}


def _box_columns(num_classes: int, box_width: int, a: Mapping[str, float]) -> int:
    """How many 4-column box groups the boxes input needs (Caffe2's get_box_cls_index(C - 1) + 1)."""
    if a["cls_agnostic_bbox_reg"]:
        return 1
    return num_classes - 1 + (1 if a["input_boxes_include_bg_cls"] else 0)


def _check_nms_shapes(scores: Shape, boxes: Shape, a: Mapping[str, float]) -> None:
    if len(scores) != 2 or len(boxes) != 2:
        raise NetDefError(f"BoxWithNMSLimit takes 2-D scores and boxes, found {list(scores)} and {list(boxes)}")
    if scores[0] != boxes[0] or boxes[1] != 4 * _box_columns(scores[1], boxes[1], a):
        raise NetDefError(f"BoxWithNMSLimit boxes {list(boxes)} do not fit scores {list(scores)}")


def nms_greedy(boxes: np.ndarray, order: np.ndarray, threshold: float, top_n: int, plus_one: float) -> list[int]:
    """Caffe2's utils::nms_cpu on float32 corners: keep the first, drop the rest whose IoU with it
    exceeds ``threshold``, repeat; stop after ``top_n`` kept (``-1``: no limit)."""
    x1, y1, x2, y2 = (boxes[:, i] for i in range(4))
    one = np.float32(plus_one)
    areas = (x2 - x1 + one) * (y2 - y1 + one)
    keep: list[int] = []
    order = np.asarray(order, dtype=np.int64)
    while order.size:
        if top_n >= 0 and len(keep) >= top_n:
            break
        i, rest = int(order[0]), order[1:]
        width = np.maximum(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + one, np.float32(0))
        height = np.maximum(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + one, np.float32(0))
        inter = width * height
        with np.errstate(divide="ignore", invalid="ignore"):
            overlap = inter / (areas[i] + areas[rest] - inter)
        keep.append(i)
        order = rest[overlap <= np.float32(threshold)]
    return keep


def _box_with_nms_limit(inputs: Sequence[np.ndarray], args: Mapping[str, Any], n: int) -> list[np.ndarray]:
    """Per class j >= 1: scores above score_thresh, by score (ties: lower index first), greedy NMS;
    then the detections_per_im best over all classes; rows by class, within a class by score."""
    if len(inputs) > 2:
        raise NetDefError("BoxWithNMSLimit with batch_splits (several images) is not supported")
    a = nms_args(args)
    scores = np.asarray(inputs[0], dtype=np.float32)
    boxes = np.asarray(inputs[1], dtype=np.float32)
    _check_nms_shapes(scores.shape, boxes.shape, a)
    num_classes = scores.shape[1]
    limit = int(a["detections_per_im"])
    fg_start = int(a["input_boxes_include_bg_cls"])
    keeps: dict[int, list[int]] = {}
    for j in range(1, num_classes):
        column = scores[:, j - 1 + fg_start]
        group = 0 if a["cls_agnostic_bbox_reg"] else (j if a["input_boxes_include_bg_cls"] else j - 1)
        candidates = np.flatnonzero(column > np.float32(a["score_thresh"]))
        order = candidates[np.argsort(-column[candidates].astype(np.float64), kind="stable")]
        keeps[j] = nms_greedy(boxes[:, 4 * group : 4 * group + 4], order, a["nms"], limit if limit > 0 else -1,
                              a["legacy_plus_one"])
    total = sum(len(k) for k in keeps.values())
    if limit > 0 and total > limit:
        flat = [(j, i) for j in range(1, num_classes) for i in keeps[j]]
        ranked = sorted(range(len(flat)), key=lambda r: -float(scores[flat[r][1], flat[r][0] - 1 + fg_start]))
        keeps = {j: [] for j in keeps}
        for r in ranked[:limit]:
            keeps[flat[r][0]].append(flat[r][1])
    rows = [(j, i) for j in range(1, num_classes) for i in keeps[j]]
    out_scores = np.array([scores[i, j - 1 + fg_start] for j, i in rows], np.float32)
    groups = [0 if a["cls_agnostic_bbox_reg"] else (j if a["input_boxes_include_bg_cls"] else j - 1) for j, _ in rows]
    out_boxes = np.array([boxes[i, 4 * g : 4 * g + 4] for (_, i), g in zip(rows, groups)], np.float32).reshape(-1, 4)
    offset = 0 if a["output_classes_include_bg_cls"] else 1
    out_classes = np.array([j - offset for j, _ in rows], np.float32)
    outputs = [out_scores, out_boxes, out_classes, np.array([len(rows)], np.float32)]
    keeps_flat = np.array([i for j in range(num_classes) for i in keeps.get(j, [])], np.int32)
    sizes = np.array([[len(keeps.get(j, [])) for j in range(num_classes)]], np.int32)
    return (outputs + [keeps_flat, sizes])[:n]


def _box_with_nms_limit_shapes(shapes: Sequence[Shape], args: Mapping[str, Any], n: int) -> list[Shape]:
    if len(shapes) > 2:
        raise NetDefError("BoxWithNMSLimit with batch_splits (several images) is not supported")
    a = nms_args(args)
    _check_nms_shapes(tuple(shapes[0]), tuple(shapes[1]), a)
    found: list[Shape] = [(DYNAMIC,), (DYNAMIC, 4), (DYNAMIC,), (1,), (DYNAMIC,), (1, shapes[0][1])]
    return found[:n]


OPERATORS: dict[str, Operator] = {
    "TopK": Operator(_topk, _topk_shapes, (1, 1), (2, 3), dynamic=True),
    "Gather": Operator(_gather, _gather_shapes, (2, 2), dynamic=True),
    "LT": Operator(_lt, _lt_shapes, (2, 2)),
    "BoxWithNMSLimit": Operator(_box_with_nms_limit, _box_with_nms_limit_shapes, (2, 3), (3, 6)),
}
