"""The shape of one executor operator: a NumPy kernel and a shape rule."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from zooforge.converters.errors import NetDefError

Shape = tuple[int, ...]
Kernel = Callable[[Sequence[np.ndarray], Mapping[str, Any], int], list[np.ndarray]]
ShapeRule = Callable[[Sequence[Shape], Mapping[str, Any], int], list[Shape]]


@dataclass(frozen=True)
class Operator:
    """A Caffe2 operator as zooforge executes it.

    ``kernel(inputs, args, n_outputs)`` computes the outputs; ``shapes(input_shapes, args,
    n_outputs)`` predicts their shapes without running. ``inputs`` and ``outputs`` bound the counts
    as real Caffe2's operator schema does (an operator outside them fails its schema check there).
    An operator may leave trailing outputs unwritten, as real Caffe2 does (Dropout's mask in test
    mode): the kernel and the shape rule then return fewer values.
    """

    kernel: Kernel
    shapes: ShapeRule
    inputs: tuple[int, int] = (1, 1)
    outputs: tuple[int, int] = (1, 1)
    dynamic: bool = False  # its shape rule reads DYNAMIC dimensions (a data-dependent size) correctly


def same_shape(shapes: Sequence[Shape], args: Mapping[str, Any], n_outputs: int) -> list[Shape]:
    return [tuple(shapes[0])] * n_outputs


DYNAMIC = -1  # a dimension whose size depends on the data (BoxWithNMSLimit's detections), in shape rules only
MANY = 1 << 16  # "any number" in an input or output bound


def require_test_mode(op_type: str, args: Mapping[str, Any]) -> None:
    """Refuse an operator in training mode (``is_test`` unset or 0): it would compute batch
    statistics or a random mask there, which the executor does not reproduce."""
    if not int(args.get("is_test", 0)):
        raise NetDefError(f"{op_type} runs only in test mode here (is_test=1)")
