"""The in-memory Caffe net that every later stage reads.

A ``CaffeNet`` is a deploy-time view of a Caffe model: V2 layers only, TEST-phase layers only, loss
and accuracy layers removed, data layers replaced by named inputs with concrete shapes, and weights
as float32 NumPy arrays attached to the layers that own them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class CaffeLayer:
    """One V2 layer: its prototxt parameters (a ``caffe.LayerParameter``) and its weight blobs."""

    name: str
    type: str
    bottoms: list[str]
    tops: list[str]
    param: Any
    blobs: list[np.ndarray] = field(default_factory=list)


@dataclass
class CaffeNet:
    """A deploy-time Caffe net: named inputs with shapes, layers in execution order."""

    name: str
    inputs: dict[str, tuple[int, ...]]
    layers: list[CaffeLayer]
    synthetic_weights: bool = False

    @property
    def outputs(self) -> list[str]:
        """Blobs whose final value no later layer reads (Caffe's net outputs), in order of creation."""
        last_writer: dict[str, int] = {}
        for index, layer in enumerate(self.layers):
            for top in layer.tops:
                last_writer[top] = index
        return [
            blob
            for blob, index in last_writer.items()
            if not any(blob in layer.bottoms for layer in self.layers[index + 1 :])
        ]

    def weight_bytes(self) -> int:
        return sum(blob.nbytes for layer in self.layers for blob in layer.blobs)

