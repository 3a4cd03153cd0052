"""SSD's ``DetectionOutput`` layer as real Caffe2 operators (zooforge issue 13).

Caffe's layer (weiliu89/caffe, ssd branch) decodes one box per prior, keeps per class the
candidates scoring above ``confidence_threshold``, the ``top_k`` best of them, greedy NMS among
those, then the ``keep_top_k`` best over all classes. The translation:

1. decode (CENTER_SIZE or CORNER) with Split/Mul/Add/Sub/Exp/Concat, clamped to [0, 1] by Clip
   only with OpenCV's ``clip: true`` (Caffe's SSD never clips here);
2. SSD's pre-NMS ``top_k``: per class the k-th best score (TopK on the class-major scores) and
   every score below it pushed to ``-inf`` (LT, Cast, Mul, Sub), so that it fails the threshold;
3. BoxWithNMSLimit (class-agnostic boxes, ``legacy_plus_one=0``: normalized IoU without +1,
   score > threshold, suppress when IoU > nms_threshold, ``detections_per_im=keep_top_k``);
4. the detections sorted by score, best first, and padded with rows of zeros to a fixed
   ``keep_top_k`` rows (TopK over the scores followed by ``-FLT_MAX`` keys, Gather).

The output is what OpenCV's importer (our oracle) gives: shape ``(1, 1, keep_top_k, 7)``, rows
``[0, label, score, xmin, ymin, xmax, ymax]`` by score descending, unused rows all zero (no
detection: all rows zero). Caffe itself gives ``(1, 1, D, 7)`` by label, then score, and one row
``[0, -1, -1, -1, -1, -1, -1]`` when nothing is detected. With ``keep_top_k`` -1 (no limit) the
rows are the most the layer can keep: foreground classes times ``min(top_k, priors)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from zooforge.converters.caffe.net import CaffeLayer
from zooforge.converters.errors import CaffeModelError, UnsupportedLayerError

if TYPE_CHECKING:
    from zooforge.converters.caffe2.translate import Translation

_FLOAT, _INT32 = 1, 2  # caffe2.TensorProto codes
_CORNER, _CENTER_SIZE = 1, 2  # PriorBoxParameter.CodeType
_MAX_ROWS = 1 << 20  # output rows (each also a row of padding constants); SSD's nets keep 100..8000
_LOWEST = float(np.finfo(np.float32).min)
_HIGHEST = float(np.finfo(np.float32).max)


def detection_output(t: Translation, layer: CaffeLayer) -> None:
    p = layer.param.detection_output_param
    _refuse_unsupported(t, p)
    loc, conf, priors = layer.bottoms
    num_priors = _check_bottoms(t, layer, p)
    classes = int(p.num_classes)
    top_k = int(p.nms_param.top_k) if p.nms_param.HasField("top_k") else -1
    kept_per_class = num_priors if top_k < 0 else min(top_k, num_priors)
    background = int(p.background_label_id)
    has_background = 0 <= background < classes
    rows = int(p.keep_top_k) if p.keep_top_k > 0 else (classes - has_background) * kept_per_class
    if rows > _MAX_ROWS:
        raise UnsupportedLayerError(f"{t.where}: {rows} output rows (keep_top_k, or classes times top_k) exceed "
                                    f"the {_MAX_ROWS} zooforge converts")
    threshold = float(p.confidence_threshold) if p.HasField("confidence_threshold") else _LOWEST
    t.hold_op_name(layer.name)  # the NMS operator carries the layer's own name (ONNX refusals name it)
    boxes = _decode(t, loc, priors, num_priors, p)
    if p.clip:  # OpenCV's field (the res10 face detector): decoded boxes clamped to [0, 1] before NMS
        boxes = t.add("Clip", [boxes], [t.temp("clipped_boxes")], min=0.0, max=1.0)
    scores, labels = _class_scores(t, conf, num_priors, classes, background, kept_per_class)
    found = [t.temp("det_scores"), t.temp("det_boxes"), t.temp("det_classes")]
    t.add("BoxWithNMSLimit", [scores, boxes], found, op_name=layer.name, score_thresh=threshold,
          nms=float(p.nms_param.nms_threshold), detections_per_im=int(p.keep_top_k) if p.keep_top_k > 0 else -1,
          cls_agnostic_bbox_reg=1, legacy_plus_one=0)
    _assemble(t, layer.tops[0], found, rows, labels)


def _refuse_unsupported(t: Translation, p: Any) -> None:
    where = t.where
    if p.num_classes < 1:
        raise CaffeModelError(f"{where}: num_classes must be at least 1, found {p.num_classes}")
    if p.background_label_id == -1:  # Caffe and OpenCV fail on it: -1 is also the shared boxes' label
        raise CaffeModelError(f"{where}: background_label_id -1 with shared locations fails in Caffe itself "
                              "(-1 is the shared boxes' label); use a label outside 0..num_classes-1")
    if not p.share_location:
        raise UnsupportedLayerError(f"{where}: share_location false (a box per class) cannot be converted; "
                                    "only shared locations can")
    if p.code_type not in (_CORNER, _CENTER_SIZE):
        raise UnsupportedLayerError(f"{where}: code_type CORNER_SIZE cannot be converted; "
                                    "CORNER and CENTER_SIZE can")
    if not p.normalized_bbox:
        raise UnsupportedLayerError(f"{where}: normalized_bbox false cannot be converted; only normalized boxes can")
    if p.nms_param.eta != 1.0:
        raise UnsupportedLayerError(f"{where}: nms_param eta {p.nms_param.eta:g} (adaptive NMS) cannot be "
                                    "converted; only eta 1 can")
    if p.nms_param.HasField("top_k") and p.nms_param.top_k < 1 and p.nms_param.top_k != -1:
        raise CaffeModelError(f"{where}: nms_param top_k {p.nms_param.top_k} keeps no candidate "
                              "(use -1 for no limit)")
    if not 0.0 < p.nms_param.nms_threshold <= 1.0:
        raise CaffeModelError(f"{where}: nms_threshold {p.nms_param.nms_threshold:g} must lie in (0, 1]")
    if p.keep_top_k == 0 or p.keep_top_k < -1:
        raise CaffeModelError(f"{where}: keep_top_k {p.keep_top_k} must be positive or -1 (no limit)")
    if p.HasField("save_output_param") and p.save_output_param.output_directory:
        raise UnsupportedLayerError(f"{where}: save_output_param (writing detections to files) cannot be converted")


def _check_bottoms(t: Translation, layer: CaffeLayer, p: Any) -> int:
    """The number of priors, once loc (N, P*4), conf (N, P*C) and priors (1, 2, P*4) agree (N = 1)."""
    loc, conf, priors = (t.shape(b) for b in layer.bottoms)
    where = t.where
    variance_rows = (1, 2) if p.variance_encoded_in_target else (2,)
    if len(priors) != 3 or priors[0] != 1 or priors[1] not in variance_rows or priors[2] % 4 or priors[2] == 0:
        raise CaffeModelError(f"{where}: priors '{layer.bottoms[2]}' must have shape [1, 2, 4 * priors], "
                              f"found {list(priors)}")
    num_priors = priors[2] // 4
    if loc[0] != 1 or conf[0] != 1:
        raise UnsupportedLayerError(f"{where}: a batch of {loc[0]} images cannot be converted; only batch 1 can")
    if int(np.prod(loc[1:], dtype=np.int64)) != 4 * num_priors:
        raise CaffeModelError(f"{where}: loc '{layer.bottoms[0]}' of shape {list(loc)} does not hold 4 values "
                              f"for each of the {num_priors} priors")
    if int(np.prod(conf[1:], dtype=np.int64)) != p.num_classes * num_priors:
        raise CaffeModelError(f"{where}: conf '{layer.bottoms[1]}' of shape {list(conf)} does not hold "
                              f"{p.num_classes} scores for each of the {num_priors} priors")
    return num_priors


def _half(t: Translation, source: str, hint: str) -> str:
    from zooforge.converters.caffe2.translate import _chain
    return _chain(t, source, t.temp(hint), [("Mul", 0.5)], hint)


def _decode(t: Translation, loc: str, priors: str, num_priors: int, p: Any) -> str:
    """Boxes (P, 4) as [xmin, ymin, xmax, ymax], decoded as Caffe's DecodeBBox does (no clipping)."""
    flat_loc = t.add("Reshape", [loc], [t.temp("loc"), t.temp("loc_old_shape")], shape=[num_priors, 4])
    if t.shape(priors)[1] == 2:
        parts = [t.temp("prior_boxes"), t.temp("prior_variances")]
        t.add("Split", [priors], parts, axis=1, split=[1, 1])
        variances = t.add("Reshape", [parts[1]], [t.temp("variances"), t.temp("var_old_shape")],
                          shape=[num_priors, 4])
    else:
        parts, variances = [priors], ""
    prior = t.add("Reshape", [parts[0]], [t.temp("priors"), t.temp("prior_old_shape")], shape=[num_priors, 4])
    if p.code_type == _CORNER:
        offsets = flat_loc if p.variance_encoded_in_target else t.add("Mul", [flat_loc, variances],
                                                                      [t.temp("scaled_loc")])
        return t.add("Add", [prior, offsets], [t.temp("boxes")])
    corner = [t.temp("prior_min"), t.temp("prior_max")]
    t.add("Split", [prior], corner, axis=1, split=[2, 2])
    size = t.add("Sub", [corner[1], corner[0]], [t.temp("prior_size")])
    center = _half(t, t.add("Add", [corner[0], corner[1]], [t.temp("prior_corner_sum")]), "prior_center")
    shift = [t.temp("loc_center"), t.temp("loc_size")]
    t.add("Split", [flat_loc], shift, axis=1, split=[2, 2])
    if not p.variance_encoded_in_target:
        var = [t.temp("var_center"), t.temp("var_size")]
        t.add("Split", [variances], var, axis=1, split=[2, 2])
        shift = [t.add("Mul", [shift[i], var[i]], [t.temp(f"scaled_{name}")])
                 for i, name in enumerate(("center", "size"))]
    moved = t.add("Add", [t.add("Mul", [shift[0], size], [t.temp("center_shift")]), center], [t.temp("center")])
    half = _half(t, t.add("Mul", [t.add("Exp", [shift[1]], [t.temp("growth")]), size], [t.temp("size")]), "half")
    low = t.add("Sub", [moved, half], [t.temp("box_min")])
    high = t.add("Add", [moved, half], [t.temp("box_max")])
    return t.add("Concat", [low, high], [t.temp("boxes"), t.temp("boxes_split")], axis=1)


def _class_scores(t: Translation, conf: str, num_priors: int, classes: int, background: int,
                  kept_per_class: int) -> tuple[str, np.ndarray | None]:
    """Scores (P, C') with the background class in column 0, as BoxWithNMSLimit skips it, each
    class's scores below its ``top_k``-th pushed to -inf; and the Caffe label of column j (None
    when column j is label j)."""
    scores = t.add("Reshape", [conf], [t.temp("conf"), t.temp("conf_old_shape")], shape=[num_priors, classes])
    reorder = background != 0
    masked = kept_per_class < num_priors
    if not reorder and not masked:
        return scores, None
    by_class = t.add("Transpose", [scores], [t.temp("conf_by_class")], axes=[1, 0])
    labels = None
    if 0 < background < classes:  # column 0: the background; then the others in label order
        order = [background] + [c for c in range(classes) if c != background]
        index = t.add("Cast", [t.weight("class_order", np.array(order, np.float32))], [t.temp("class_order")],
                      to=_INT32)
        by_class = t.add("Gather", [by_class, index], [t.temp("conf_reordered")])
        labels = np.array([0] + order[1:], np.float32)
    elif reorder:  # no background class: a column of zeros in its place
        filler = t.weight("no_background", np.zeros((1, num_priors), np.float32))
        by_class = t.add("Concat", [filler, by_class], [t.temp("conf_with_bg"), t.temp("conf_split")], axis=0)
        labels = np.array([0] + list(range(classes)), np.float32)
    if masked:
        by_class = _keep_top_k_per_class(t, by_class, kept_per_class)
    return t.add("Transpose", [by_class], [t.temp("conf_masked")], axes=[1, 0]), labels


def _keep_top_k_per_class(t: Translation, by_class: str, k: int) -> str:
    """Scores below their row's k-th largest become -FLT_MAX (``s * keep - below * FLT_MAX``), which
    never passes the threshold (BoxWithNMSLimit keeps scores above it); the rest stay exact."""
    best = [t.temp("top_k_values"), t.temp("top_k_indices")]
    t.add("TopK", [by_class], best, k=k)
    kth = t.add("Slice", [best[0]], [t.temp("kth_score")], starts=[0, k - 1], ends=[-1, k])
    below = t.add("Cast", [t.add("LT", [by_class, kth], [t.temp("below_kth")])], [t.temp("below")], to=_FLOAT)
    keep = t.add("Sub", [t.weight("one", np.ones((1,), np.float32)), below], [t.temp("keep")])
    kept = t.add("Mul", [by_class, keep], [t.temp("kept_scores")])
    penalty = t.add("Mul", [below, t.weight("flt_max", np.full((1,), _HIGHEST, np.float32))],
                    [t.temp("penalty")], broadcast=1)
    return t.add("Sub", [kept, penalty], [t.temp("conf_top_k")])


def _assemble(t: Translation, top: str, found: list[str], rows: int, labels: np.ndarray | None) -> None:
    """(1, 1, rows, 7): the detections by score, best first, then rows of zeros."""
    scores, boxes, classes = found
    keys = t.add("Concat", [scores, t.weight("pad_keys", np.full((rows,), _LOWEST, np.float32))],
                 [t.temp("sort_keys"), t.temp("sort_keys_split")], axis=0)
    ranked = [t.temp("ranked_keys"), t.temp("ranked")]
    t.add("TopK", [keys], ranked, k=rows)
    zeros = t.weight("pad", np.zeros((rows,), np.float32))
    columns = []
    for name, source, pad in (("score", scores, zeros), ("class", classes, zeros),
                              ("box", boxes, t.weight("pad_boxes", np.zeros((rows, 4), np.float32)))):
        padded = t.add("Concat", [source, pad], [t.temp(f"padded_{name}"), t.temp(f"padded_{name}_split")], axis=0)
        columns.append(t.add("Gather", [padded, ranked[1]], [t.temp(f"sorted_{name}")]))
    score, label, box = columns
    if labels is not None:
        index = t.add("Cast", [label], [t.temp("class_index")], to=_INT32)
        label = t.add("Gather", [t.weight("labels", labels), index], [t.temp("label")])
    score = t.add("Reshape", [score], [t.temp("score_column"), t.temp("score_old_shape")], shape=[rows, 1])
    label = t.add("Reshape", [label], [t.temp("label_column"), t.temp("label_old_shape")], shape=[rows, 1])
    image = t.weight("image_id", np.zeros((rows, 1), np.float32))
    table = t.add("Concat", [image, label, score, box], [t.temp("rows"), t.temp("rows_split")], axis=1)
    t.add("Reshape", [table], [top, t.temp("top_old_shape")], shape=[1, 1, rows, 7])
