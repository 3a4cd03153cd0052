"""The shape of one executor operator: a NumPy kernel and a shape rule."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Shape = tuple[int, ...]
Kernel = Callable[[Sequence[np.ndarray], Mapping[str, Any], int], list[np.ndarray]]
ShapeRule = Callable[[Sequence[Shape], Mapping[str, Any], int], list[Shape]]


@dataclass(frozen=True)
class Operator:
    """A Caffe2 operator as zooforge executes it.

    ``kernel(inputs, args, n_outputs)`` computes the outputs; ``shapes(input_shapes, args,
    n_outputs)`` predicts their shapes without running. ``inputs`` bounds the input count.
    """

    kernel: Kernel
    shapes: ShapeRule
    inputs: tuple[int, int] = (1, 1)


def same_shape(shapes: Sequence[Shape], args: Mapping[str, Any], n_outputs: int) -> list[Shape]:
    return [tuple(shapes[0])] * n_outputs
