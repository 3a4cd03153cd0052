"""SSD's DetectionOutput: Caffe -> Caffe2 -> ONNX against OpenCV's importer and a NumPy
transcription of Caffe's C++ (weiliu89/caffe ssd: detection_output_layer.cpp, bbox_util.cpp).

zooforge gives what OpenCV gives: (1, 1, keep_top_k, 7), rows by score descending, unused rows
zero. The NumPy transcription computes Caffe's rows (label, then score) and is laid out the same
way here. Equal scores are ordered by label, then prior (OpenCV's std::sort leaves them in any
order, so OpenCV is compared with rows sorted by a full key).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from zooforge.converters.caffe.loader import load_caffe
from zooforge.converters.caffe2.executor import run_net
from zooforge.converters.caffe2.translate import translate
from zooforge.converters.errors import ZooforgeError
from zooforge.converters.onnx.frontend import ExportOptions, caffe2_to_onnx

from conftest import ort_session
from detection_cases import C, CASES, NO_LIMIT, P, detection_feeds, detection_feeds_for, detection_model, \
    detection_prototxt, shared_location

OPSETS = (10, 11, 12, 13, onnx.defs.onnx_opset_version())
TOLERANCE = 1e-4  # SSD's acceptance for scores and boxes


# -- Caffe's C++, transcribed ---------------------------------------------------------------------

def _caffe_param(params: str, key: str, default: float) -> float:
    tokens = params.replace("{", " ").replace("}", " ").split()
    return float(tokens[tokens.index(f"{key}:") + 1]) if f"{key}:" in tokens else default


def _decode(loc: np.ndarray, prior: np.ndarray, var: np.ndarray, code: str, encoded: bool) -> np.ndarray:
    """bbox_util.cpp DecodeBBox, float32, no clipping."""
    f = np.float32
    if not encoded:
        loc = loc * var
    if code == "CORNER":
        return (prior + loc).astype(f)
    width, height = prior[:, 2] - prior[:, 0], prior[:, 3] - prior[:, 1]
    cx, cy = (prior[:, 0] + prior[:, 2]) / f(2), (prior[:, 1] + prior[:, 3]) / f(2)
    dcx, dcy = loc[:, 0] * width + cx, loc[:, 1] * height + cy
    dw, dh = np.exp(loc[:, 2]) * width, np.exp(loc[:, 3]) * height
    return np.stack([dcx - dw / f(2), dcy - dh / f(2), dcx + dw / f(2), dcy + dh / f(2)], 1).astype(f)


def _size(b: np.ndarray) -> float:
    return 0.0 if b[2] < b[0] or b[3] < b[1] else float(np.float32(b[2] - b[0]) * np.float32(b[3] - b[1]))


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """bbox_util.cpp JaccardOverlap (normalized: no +1)."""
    if b[0] > a[2] or b[2] < a[0] or b[1] > a[3] or b[3] < a[1]:
        return 0.0
    inter = np.array([max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])], np.float32)
    i = _size(inter)
    return i / (_size(a) + _size(b) - i)


def _apply_nms_fast(boxes: np.ndarray, scores: np.ndarray, thr: float, nms: float, top_k: int) -> list[int]:
    order = [i for i in np.argsort(-scores.astype(np.float64), kind="stable") if scores[i] > np.float32(thr)]
    if top_k > -1:
        order = order[:top_k]
    kept: list[int] = []
    for i in order:
        if all(_jaccard(boxes[i], boxes[k]) <= nms for k in kept):
            kept.append(i)
    return kept


def caffe_reference(feeds: dict[str, np.ndarray], params: str) -> np.ndarray:
    """Caffe's detections (label, then score), then OpenCV's layout: by score, zero rows to keep_top_k."""
    code = "CORNER" if "CORNER" in params else "CENTER_SIZE"
    encoded = "variance_encoded_in_target: true" in params
    prior = feeds["priors"][0, 0].reshape(P, 4)
    var = feeds["priors"][0, -1].reshape(P, 4)  # unused when the variances are encoded
    boxes = _decode(feeds["loc"].reshape(P, 4), prior, var, code, encoded)
    if "clip: true" in params:  # OpenCV's DecodeBBox with clip_bbox: each coordinate clamped to [0, 1]
        boxes = np.clip(boxes, np.float32(0), np.float32(1))
    scores = feeds["conf"].reshape(P, C)
    background = int(_caffe_param(params, "background_label_id", 0))
    thr = _caffe_param(params, "confidence_threshold", -3.4e38)
    top_k = int(_caffe_param(params, "top_k", -1))
    keep_top_k = int(_caffe_param(params, "keep_top_k", -1))
    nms = _caffe_param(params, "nms_threshold", 0.3)
    indices = {c: _apply_nms_fast(boxes, scores[:, c], thr, nms, top_k) for c in range(C) if c != background}
    pairs = [(float(scores[i, c]), c, i) for c in indices for i in indices[c]]
    if keep_top_k > -1 and len(pairs) > keep_top_k:
        pairs = sorted(pairs, key=lambda p: -p[0])[:keep_top_k]  # stable: label, then NMS order
        indices = {c: [i for _, cc, i in pairs if cc == c] for c in indices}
    caffe_rows = [[0, c, scores[i, c], *boxes[i]] for c in sorted(indices) for i in indices[c]]
    rows = keep_top_k if keep_top_k > 0 else (C - (0 <= background < C)) * (P if top_k < 0 else min(top_k, P))
    ranked = sorted(caffe_rows, key=lambda r: -r[2])  # stable: equal scores stay by label, then prior
    out = np.zeros((1, 1, rows, 7), np.float32)
    if ranked:
        out[0, 0, : len(ranked)] = np.array(ranked, np.float32)
    return out


# -- helpers ----------------------------------------------------------------------------------------

def _opencv(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    cv2 = pytest.importorskip("cv2")
    net = cv2.dnn.readNetFromCaffe(str(path))
    for name, value in feeds.items():
        net.setInput(value, name)
    return net.forward()


def _canonical(rows: np.ndarray) -> np.ndarray:
    """Rows sorted by score (descending), then label and box: an order that ignores how ties fall."""
    flat = rows.reshape(-1, 7)
    return flat[np.lexsort((flat[:, 3], flat[:, 1], -flat[:, 2]))]


def _ort(model, opset: int, feeds: dict[str, np.ndarray]) -> np.ndarray:
    exported = caffe2_to_onnx(model, ExportOptions(opset))
    exported.check()
    session = ort_session(exported.to_proto())
    by_blob = {i.name: feeds[i.name.rsplit("_", 1)[0]] for i in session.get_inputs()}
    return session.run(None, by_blob)[0]


def _compare(ours: np.ndarray, expected: np.ndarray) -> float:
    """Same shape, labels and image ids exact, scores and boxes within 1e-4; the max error."""
    assert ours.shape == expected.shape
    assert np.array_equal(ours[..., :2], expected[..., :2]), (ours[0, 0, :, :3], expected[0, 0, :, :3])
    error = float(np.abs(ours - expected).max(initial=0.0))
    assert error <= TOLERANCE
    return error


# -- tests ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", sorted(CASES))
def test_executor_matches_caffe_and_opencv(case: str, tmp_path: Path) -> None:
    feeds = detection_feeds_for(CASES[case])
    path, model = detection_model(tmp_path, CASES[case])
    ours = run_net(model, feeds)["detection_out"]
    _compare(ours, caffe_reference(feeds, CASES[case]))
    _compare(_canonical(ours), _canonical(_opencv(path, feeds)))


def test_the_data_exercise_every_stage(tmp_path: Path) -> None:
    """The centre-size case prunes by top_k, by NMS and by keep_top_k, and keeps a within-class tie."""
    feeds, params = detection_feeds(), CASES["center_size"]
    full = caffe_reference(feeds, params.replace("top_k: 5", "top_k: -1").replace("keep_top_k: 8", "keep_top_k: -1"))
    no_nms = caffe_reference(feeds, params.replace("nms_threshold: 0.45", "nms_threshold: 1.0")
                             .replace("keep_top_k: 8", "keep_top_k: -1"))
    limited = caffe_reference(feeds, params.replace("keep_top_k: 8", "keep_top_k: -1"))
    found = lambda rows: int((rows[0, 0, :, 2] > 0).sum())  # noqa: E731
    assert found(limited) > 8  # more detections than keep_top_k
    assert found(limited) != found(full)  # top_k drops candidates
    assert found(no_nms) > found(limited)  # NMS suppresses
    assert found(caffe_reference(feeds, CASES["nothing"])) == 0
    clip = CASES["clip_corner"]
    clipped = caffe_reference(detection_feeds_for(clip), clip)
    unclipped = caffe_reference(detection_feeds_for(clip), clip.replace("clip: true", ""))
    assert np.any(unclipped[..., 3:] < 0) and np.any(unclipped[..., 3:] > 1)  # clip has work to do
    assert not np.array_equal(clipped, unclipped) and clipped[..., 3:].min() >= 0 and clipped[..., 3:].max() <= 1
    rows = caffe_reference(feeds, CASES["fewer_than_keep"])[0, 0]
    assert any(np.count_nonzero(rows[:, 2] == s) > 1 for s in rows[:, 2] if s > 0)  # a kept tie


def test_no_limit_gives_every_possible_row(tmp_path: Path) -> None:
    feeds = detection_feeds()
    _, model = detection_model(tmp_path, NO_LIMIT)
    ours = run_net(model, feeds)["detection_out"]
    assert ours.shape == (1, 1, 3 * 5, 7)
    _compare(ours, caffe_reference(feeds, NO_LIMIT))


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_onnxruntime_matches_the_executor_in_order(case: str, opset: int, tmp_path: Path) -> None:
    feeds = detection_feeds_for(CASES[case])
    _, model = detection_model(tmp_path, CASES[case])
    ours = run_net(model, feeds)["detection_out"]
    got = _ort(model, opset, feeds)
    _compare(got, ours)
    _compare(got, caffe_reference(feeds, CASES[case]))


@pytest.mark.parametrize("case", sorted(CASES))
def test_real_caffe2_matches_the_executor(case: str, tmp_path: Path, real_caffe2) -> None:
    feeds = detection_feeds_for(CASES[case])
    _, model = detection_model(tmp_path, CASES[case])
    ours = run_net(model, feeds, keep_all=True)
    theirs = real_caffe2.run(model, feeds, fetch="*")
    _compare(theirs["detection_out"], ours["detection_out"])
    for blob in ("_detection_out_det_scores", "_detection_out_det_boxes", "_detection_out_det_classes"):
        assert theirs[blob].shape == ours[blob].shape
        assert np.abs(theirs[blob] - ours[blob]).max(initial=0.0) <= TOLERANCE


def test_below_opset_10_one_sentence(tmp_path: Path) -> None:
    _, model = detection_model(tmp_path, CASES["center_size"])
    with pytest.raises(ZooforgeError) as info:
        caffe2_to_onnx(model, ExportOptions(9))
    message = str(info.value)
    assert "'detection_out'" in message and "DetectionOutput" in message and "opset 10" in message
    assert "\n" not in message and "Traceback" not in message


@pytest.mark.parametrize("params, words", [
    ("share_location: false background_label_id: 0 keep_top_k: 5", "share_location"),
    ("background_label_id: 0 nms_param { nms_threshold: 0.45 eta: 0.9 } keep_top_k: 5", "eta"),
    ("background_label_id: 0 normalized_bbox: false keep_top_k: 5", "normalized_bbox"),
    ("background_label_id: 0 code_type: CORNER_SIZE keep_top_k: 5", "CORNER_SIZE"),
    ("background_label_id: -1 keep_top_k: 5", "background_label_id -1"),
    ("background_label_id: 0 keep_top_k: 0", "keep_top_k"),
    ("background_label_id: 0 nms_param { nms_threshold: 0.45 top_k: 0 } keep_top_k: 5", "top_k"),
])
def test_refusals_name_the_layer(params: str, words: str, tmp_path: Path) -> None:
    path = tmp_path / "net.prototxt"
    path.write_text(detection_prototxt(params))
    with pytest.raises(ZooforgeError) as info:
        translate(load_caffe(path, None))
    message = str(info.value)
    assert "'detection_out' (DetectionOutput)" in message and words in message and "\n" not in message


@pytest.mark.parametrize("shapes, words", [
    ({"loc": (1, 4 * P + 4)}, "loc"),
    ({"conf": (1, C * P - 1)}, "conf"),
    ({"priors": (1, 3, 4 * P)}, "priors"),
    ({"priors": (1, 2, 4 * P + 2)}, "priors"),
])
def test_wrong_bottom_sizes_are_refused(shapes, words, tmp_path: Path) -> None:
    dims = {"loc": (1, 4 * P), "conf": (1, C * P), "priors": (1, 2, 4 * P), **shapes}
    text = detection_prototxt(shared_location(CASES["center_size"])).splitlines()
    head = [f'input: "{name}" input_shape {{ ' + " ".join(f"dim: {d}" for d in dims[name]) + " }"
            for name in ("loc", "conf", "priors")]
    path = tmp_path / "net.prototxt"
    path.write_text("\n".join([text[0], *head, *text[4:]]))
    with pytest.raises(ZooforgeError) as info:
        translate(load_caffe(path, None))
    assert "'detection_out' (DetectionOutput)" in str(info.value) and words in str(info.value)


def test_dynamic_batch_is_refused(tmp_path: Path) -> None:
    """The graph handles one image: a symbolic batch would let a runtime feed several."""
    _, model = detection_model(tmp_path, CASES["center_size"])
    with pytest.raises(ZooforgeError) as info:
        caffe2_to_onnx(model, ExportOptions(12, dynamic_batch=True))
    assert "'detection_out'" in str(info.value) and "batch" in str(info.value)


def test_variances_in_the_priors_are_ignored_when_encoded(tmp_path: Path) -> None:
    """Caffe reads the boxes of a 2-row priors blob and ignores its variances when they are encoded."""
    params = CASES["encoded_no_bg"]
    two_rows = detection_feeds()
    one_row = detection_feeds_for(params)
    path = tmp_path / "net.prototxt"
    path.write_text(detection_prototxt(shared_location(params), 2))
    ours = run_net(translate(load_caffe(path, None)), two_rows)["detection_out"]
    _compare(ours, caffe_reference(one_row, params))


# -- BoxWithNMSLimit alone: its own output order (class, then score), on all three runtimes ---------

def _nms_model(**args):
    from zooforge.converters.caffe2 import schema
    from zooforge.converters.caffe2.netdef import Caffe2Model, make_op

    net = schema.NetDef(name="nms")
    net.op.append(make_op("BoxWithNMSLimit", ["scores", "boxes"], ["s", "b", "c"], name="detection_out",
                          cls_agnostic_bbox_reg=1, legacy_plus_one=0, **args))
    net.external_input.extend(["scores", "boxes"])
    net.external_output.extend(["s", "b", "c"])
    return Caffe2Model(net, {}, {"scores": (P, C), "boxes": (P, 4)})


def _nmsdetection_feeds() -> dict[str, np.ndarray]:
    feeds = detection_feeds()
    prior = feeds["priors"][0, 0].reshape(P, 4)
    return {"scores": feeds["conf"].reshape(P, C), "boxes": prior}


NMS_ARGS = [dict(score_thresh=0.1, nms=0.45, detections_per_im=7), dict(score_thresh=0.2, nms=0.3, detections_per_im=-1),
            dict(score_thresh=0.1, nms=0.45, detections_per_im=2), dict(score_thresh=0.99, nms=0.45)]


def _nms_onnx(model, opset: int, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    exported = caffe2_to_onnx(model, ExportOptions(opset))
    exported.check()
    session = ort_session(exported.to_proto())
    return session.run(None, {i.name: feeds[i.name.rsplit("_", 1)[0]] for i in session.get_inputs()})


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("args", NMS_ARGS, ids=lambda a: "-".join(f"{k}{v}" for k, v in a.items()))
def test_box_with_nms_limit_onnx_keeps_caffe2s_order(args, opset: int) -> None:
    """Rows by class, then score: the limit over all classes re-sorts nothing."""
    model, feeds = _nms_model(**args), _nmsdetection_feeds()
    ours = run_net(model, feeds)
    got = _nms_onnx(model, opset, feeds)
    for name, value in zip(("s", "b", "c"), got):
        assert value.shape == ours[name].shape
        assert np.abs(value - ours[name]).max(initial=0.0) <= TOLERANCE
    classes = ours["c"]
    assert np.all(np.diff(classes) >= 0)
    if args.get("detections_per_im", 100) == 7:
        assert len(set(classes.tolist())) > 1 and len(classes) == 7


@pytest.mark.parametrize("args", NMS_ARGS, ids=lambda a: "-".join(f"{k}{v}" for k, v in a.items()))
def test_box_with_nms_limit_real_caffe2(args, real_caffe2) -> None:
    model, feeds = _nms_model(**args), _nmsdetection_feeds()
    ours = run_net(model, feeds)
    theirs = real_caffe2.run(model, feeds)
    for name in ("s", "b", "c"):
        assert theirs[name].shape == ours[name].shape
        assert np.abs(theirs[name] - ours[name]).max(initial=0.0) <= TOLERANCE


def test_box_with_nms_limit_legacy_plus_one_is_not_exported() -> None:
    model = _nms_model()
    plus_one = next(arg for arg in model.predict_net.op[0].arg if arg.name == "legacy_plus_one")
    plus_one.i = 1  # Caffe2's default: IoU with +1
    with pytest.raises(ZooforgeError, match="legacy_plus_one"):
        caffe2_to_onnx(model, ExportOptions(12))


def test_boundaries_score_at_threshold_dropped_iou_at_threshold_kept(real_caffe2) -> None:
    """Caffe's ``score > threshold`` and ``IoU <= nms_threshold`` keeps, on all three runtimes."""
    model = _nms_model(score_thresh=0.5, nms=1 / 3, detections_per_im=-1)
    model.input_shapes.update(scores=(3, 2), boxes=(3, 4))
    feeds = {"scores": np.array([[0, 0.9], [0, 0.8], [0, 0.5]], np.float32),
             "boxes": np.array([[0, 0, 1, 1], [0, 0.5, 1, 1.5], [3, 3, 4, 4]], np.float32)}  # IoU(0, 1) = 1/3
    ours = run_net(model, feeds)
    assert ours["s"].tolist() == pytest.approx([0.9, 0.8])
    for opset in (10, OPSETS[-1]):
        assert _nms_onnx(model, opset, feeds)[0].tolist() == pytest.approx([0.9, 0.8])
    assert real_caffe2.run(model, feeds)["s"].tolist() == pytest.approx([0.9, 0.8])


def test_a_data_dependent_size_reaches_only_rules_that_read_it() -> None:
    """Relu after BoxWithNMSLimit: shapes cannot be predicted, said in one sentence, not guessed."""
    from zooforge.converters.caffe2.executor import infer_shapes
    from zooforge.converters.caffe2.netdef import make_op

    model = _nms_model(score_thresh=0.1, nms=0.45)
    model.predict_net.op.append(make_op("Relu", ["s"], ["r"], name="after"))
    with pytest.raises(ZooforgeError, match=r"reads \['s'\], whose size depends on the data"):
        infer_shapes(model.predict_net, model.input_shapes)
    model.predict_net.op[-1].type = "Concat"  # Concat's rule keeps the size unknown
    model.predict_net.op[-1].output.append("split")
    shapes = infer_shapes(model.predict_net, model.input_shapes)
    assert shapes["s"] == (-1,) and shapes["r"] == (-1,)
