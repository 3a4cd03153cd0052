"""SSD DetectionOutput heads shared by ``test_detection_output`` (against Caffe's C++ and OpenCV)
and the real-Caffe2 conformance table (``test_caffe2_conformance``, ``scripts/caffe2_conformance.py``).

One head: loc (1, 4P), conf (1, CP) and priors (1, 2, 4P) bottoms of P = 16 priors, C = 4 classes,
fed with four clusters of overlapping priors and scores with planted ties (``detection_feeds``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from zooforge.converters.caffe.loader import load_caffe
from zooforge.converters.caffe2.netdef import Caffe2Model
from zooforge.converters.caffe2.translate import translate

P, C = 16, 4

# id: detection_output_param fields (share_location is added when absent: OpenCV requires it)
CASES = {
    # more candidates than top_k, more detections than keep_top_k, overlapping boxes
    "center_size": "share_location: true background_label_id: 0 nms_param { nms_threshold: 0.45 top_k: 5 } "
                   "code_type: CENTER_SIZE keep_top_k: 8 confidence_threshold: 0.1",
    "fewer_than_keep": "background_label_id: 0 nms_param { nms_threshold: 0.3 top_k: 3 } "
                       "code_type: CENTER_SIZE keep_top_k: 30 confidence_threshold: 0.25",
    "corner_bg2": "background_label_id: 2 nms_param { nms_threshold: 0.5 top_k: 6 } code_type: CORNER "
                  "keep_top_k: 10 confidence_threshold: 0.2",
    "encoded_no_bg": "background_label_id: 9 nms_param { nms_threshold: 0.6 } code_type: CENTER_SIZE "
                     "variance_encoded_in_target: true keep_top_k: 12 confidence_threshold: 0.3",
    "nothing": "background_label_id: 0 nms_param { nms_threshold: 0.45 top_k: 5 } code_type: CENTER_SIZE "
               "keep_top_k: 6 confidence_threshold: 0.999",
    # OpenCV's clip (the res10 face detector): corners moved by loc itself reach outside [0, 1]
    "clip_corner": "background_label_id: 0 nms_param { nms_threshold: 0.45 top_k: 5 } code_type: CORNER "
                   "variance_encoded_in_target: true keep_top_k: 8 confidence_threshold: 0.1 clip: true",
}
# The heads whose every operator the conformance table checks on real Caffe2, by table case id.
CONFORMANCE = {f"detectionoutput-{name}": params for name, params in CASES.items()}
NO_LIMIT = ("background_label_id: 0 nms_param { nms_threshold: 0.45 top_k: 5 } code_type: CENTER_SIZE "
            "keep_top_k: -1 confidence_threshold: 0.1")


def detection_feeds(seed: int = 7) -> dict[str, np.ndarray]:
    """Four clusters of four overlapping priors; softmaxed scores with two planted ties."""
    rng = np.random.default_rng(seed)
    centers = np.repeat(rng.uniform(0.25, 0.75, (4, 2)), 4, axis=0) + rng.normal(0, 0.02, (P, 2))
    sizes = rng.uniform(0.15, 0.3, (P, 2))
    priors = np.zeros((1, 2, 4 * P), np.float32)
    priors[0, 0] = np.concatenate([centers - sizes / 2, centers + sizes / 2], 1).reshape(-1)
    priors[0, 1] = np.tile([0.1, 0.1, 0.2, 0.2], P)
    loc = rng.normal(0, 0.4, (1, 4 * P)).astype(np.float32)
    logits = rng.normal(0, 1.5, (P, C))
    scores = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    scores[3, 1] = scores[12, 1] = 0.9  # a tie within a class, boxes far apart (both kept)
    scores[6, 2] = scores[9, 3] = 0.8  # a tie across classes
    return {"loc": loc, "conf": scores.reshape(1, -1).astype(np.float32), "priors": priors}


def detection_feeds_for(params: str) -> dict[str, np.ndarray]:
    """With variance_encoded_in_target the priors hold boxes only (1 row), as OpenCV requires."""
    feeds = detection_feeds()
    if "variance_encoded_in_target: true" in params:
        feeds["priors"] = feeds["priors"][:, :1].copy()
    return feeds


def detection_prototxt(params: str, priors_rows: int = 2) -> str:
    return (f'name: "ssd_head"\n'
            f'input: "loc" input_shape {{ dim: 1 dim: {4 * P} }}\n'
            f'input: "conf" input_shape {{ dim: 1 dim: {C * P} }}\n'
            f'input: "priors" input_shape {{ dim: 1 dim: {priors_rows} dim: {4 * P} }}\n'
            'layer { name: "detection_out" type: "DetectionOutput" bottom: "loc" bottom: "conf" bottom: "priors" '
            f'top: "detection_out" detection_output_param {{ num_classes: {C} {params} }} }}\n')


def shared_location(params: str) -> str:
    """OpenCV requires share_location to be written out."""
    return params if "share_location" in params else f"share_location: true {params}"


def detection_model(folder: Path, params: str) -> tuple[Path, Caffe2Model]:
    """The head's prototxt (written into ``folder``) and its Caffe2 translation."""
    priors_rows = 1 if "variance_encoded_in_target: true" in params else 2
    path = folder / "net.prototxt"
    path.write_text(detection_prototxt(shared_location(params), priors_rows))
    return path, translate(load_caffe(path, None))
