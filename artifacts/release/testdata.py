"""Test data in the ONNX model zoo's layout.

A test set is a folder ``test_data_set_N`` with ``input_K.pb`` / ``output_K.pb``: serialized
TensorProtos named after the graph's inputs and outputs (the 2018 sets left names empty and broke
runners), plus ``test_data_N.npz`` holding ``inputs`` and ``outputs`` lists. Inputs come from
recorded seeds; expected outputs always come from the source model, never the variant under test.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from onnx import numpy_helper

from zooforge.converters.fileio import atomic_write_bytes

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry: fixed for reproducibility


@dataclass(frozen=True)
class TestSet:
    """One example: input and expected output arrays by graph name, in graph order."""

    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]


@dataclass(frozen=True)
class InputRecipe:
    """How test inputs are drawn: uniform in [low, high) from ``numpy.random.default_rng(seed + n)``."""

    seed: int = 0
    low: float = -1.0
    high: float = 1.0

    def draw(self, shapes: Mapping[str, Sequence[int]], index: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(self.seed + index)
        return {
            name: rng.uniform(self.low, self.high, tuple(shape)).astype(np.float32)
            for name, shape in shapes.items()
        }


def write_test_set(folder: Path, index: int, test_set: TestSet) -> list[Path]:
    """Write ``test_data_set_<index>/input_K.pb, output_K.pb`` under ``folder``; return the files."""
    target = Path(folder) / f"test_data_set_{index}"
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for kind, tensors in (("input", test_set.inputs), ("output", test_set.outputs)):
        for position, (name, array) in enumerate(tensors.items()):
            path = target / f"{kind}_{position}.pb"
            atomic_write_bytes(path, numpy_helper.from_array(np.asarray(array), name).SerializeToString())
            written.append(path)
    return written


def write_npz(path: Path, test_set: TestSet) -> None:
    """``test_data_N.npz`` with ``inputs`` and ``outputs``, byte-identical for identical data.

    ``numpy.savez`` stamps each member with the current time; this writes the same format with a
    fixed timestamp. Lists whose arrays share a shape are stored stacked, others as object arrays.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for key, tensors in (("inputs", test_set.inputs), ("outputs", test_set.outputs)):
            member = io.BytesIO()
            np.lib.format.write_array(member, _as_list_array(list(tensors.values())), allow_pickle=True)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_EPOCH)
            info.external_attr = 0o644 << 16
            archive.writestr(info, member.getvalue())
    atomic_write_bytes(path, buffer.getvalue())


def _as_list_array(arrays: list[np.ndarray]) -> np.ndarray:
    if len({(a.shape, a.dtype) for a in arrays}) == 1:
        return np.stack(arrays)
    holder = np.empty(len(arrays), dtype=object)
    for index, array in enumerate(arrays):
        holder[index] = array
    return holder

