"""Detection rows compared as detections, not as a flat tensor.

SSD's DetectionOutput gives rows ``[image, label, score, xmin, ymin, xmax, ymax]`` sorted by score.
Two runtimes whose scores differ in the last bits may order near-equal scores differently, which an
element-wise comparison reports as wrong labels and boxes. Before the usual comparison, the produced
rows are put in the order of the expected ones: each expected row, in turn, takes the unused produced
row of the same image and label nearest to it in score and box (largest absolute difference).
Nothing is forgiven: a row without a counterpart keeps its place and fails as before, and NaN never
matches (it takes no row).

Box corners are fractions of the image, and the small ones come out of cancellation
(``xmin = centre - width / 2``): two float32 runtimes running a deep SSD differ there by a few 1e-4
(measured, MobileNet-SSD with synthetic weights, zooforge's executor vs onnxruntime: 3.2e-4 at
most, the ``mbox_loc`` head itself 5e-5 relative). A relative tolerance means nothing near zero, so
detection rows are compared with an absolute tolerance of at least ``DETECTION_ATOL`` (1e-3 of the
image: 0.3 pixels at 300x300), unless a per-output tolerance says otherwise; the tolerance used is
recorded in each report.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

ROW = 7  # image, label, score, xmin, ymin, xmax, ymax
DETECTION_ATOL = 1e-3  # the least absolute tolerance of detection rows (fractions of the image)


def detection_tolerance(tolerance: Any) -> Any:
    """``tolerance`` (a parity ``Tolerance``) with its ``atol`` raised to ``DETECTION_ATOL``."""
    return replace(tolerance, atol=max(tolerance.atol, DETECTION_ATOL))


def align_rows(expected: np.ndarray, got: np.ndarray) -> np.ndarray:
    """``got`` with its rows reordered to match ``expected``'s (unchanged if the shapes are not
    two equal stacks of 7-value rows)."""
    if expected.shape != got.shape or expected.size == 0 or expected.shape[-1] != ROW:
        return got
    want, have = expected.reshape(-1, ROW).astype(np.float64), got.reshape(-1, ROW)
    values = have.astype(np.float64)
    used = np.zeros(len(have), dtype=bool)
    order: list[int | None] = []
    for row in want:
        same = ~used & (values[:, 0] == row[0]) & (values[:, 1] == row[1])
        candidates = np.flatnonzero(same)
        if not len(candidates):
            order.append(None)
            continue
        with np.errstate(invalid="ignore"):
            distance = np.abs(values[candidates, 2:] - row[2:]).max(axis=1)
        if not np.isfinite(distance).any():
            order.append(None)
            continue
        best = int(candidates[int(np.nanargmin(distance))])
        used[best] = True
        order.append(best)
    spare = iter(np.flatnonzero(~used).tolist())
    index = [position if position is not None else next(spare) for position in order]
    return have[index].reshape(got.shape)
