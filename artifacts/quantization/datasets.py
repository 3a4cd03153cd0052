"""Labelled image datasets for calibration and accuracy evaluation.

Two on-disk kinds are understood, detected by :func:`load_dataset`:

* ``image-folder`` (:class:`ImageFolderDataset`): a folder holding ``labels.tsv`` with a header line
  ``filename<TAB>class_index_0based[<TAB>wnid[<TAB>synset_words]]`` and one line per image; the
  images sit in ``<root>/images/`` (or directly in ``<root>``). Images are decoded lazily with
  Pillow and converted to ``"RGB"``.
* ``mnist`` (:class:`MnistDataset`): the idx files ``t10k-images-idx3-ubyte`` and
  ``t10k-labels-idx1-ubyte`` (or ``train-*``), gzip-compressed (``.gz``) or not. Images are Pillow
  ``"L"`` images of 28x28.

Samples come in a deterministic order: sorted by file name for a folder, file order for MNIST.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image, UnidentifiedImageError

from zooforge.converters.errors import InputFileError

__all__ = [
    "DatasetError", "Dataset", "ImageFolderDataset", "LabelEntry", "MnistDataset", "Sample",
    "deterministic_subset", "load_dataset",
]

LABELS_FILE = "labels.tsv"
IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
MNIST_SPLITS = ("t10k", "train")


class DatasetError(InputFileError):
    """A dataset folder or one of its files is missing, unreadable or malformed."""


@dataclass(frozen=True)
class Sample:
    image: Image.Image
    label: int
    name: str


@runtime_checkable
class Dataset(Protocol):
    kind: str
    root: Path
    num_classes: int | None

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Sample: ...


@dataclass(frozen=True)
class LabelEntry:
    """One line of ``labels.tsv``."""

    filename: str
    label: int
    wnid: str | None
    words: str | None
    line: int  # 1-based line number in labels.tsv
    path: Path


def _check_index(index: int, length: int, where: str) -> int:
    if not isinstance(index, (int, np.integer)):
        raise TypeError(f"dataset indices are integers, not {type(index).__name__}")
    index = int(index)
    if index < 0:
        index += length
    if not 0 <= index < length:
        raise IndexError(f"index {index} out of range for {where} ({length} samples)")
    return index


class ImageFolderDataset:
    """Images listed in ``<root>/labels.tsv``, sorted by file name, decoded on access."""

    kind = "image-folder"

    def __init__(self, root: Path | str, num_classes: int | None = None) -> None:
        self.root = Path(root)
        self.num_classes = num_classes
        self.labels_path = self.root / LABELS_FILE
        if not self.labels_path.is_file():
            raise DatasetError(f"image folder {self.root} has no {LABELS_FILE}")
        try:
            text = self.labels_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DatasetError(f"cannot read {self.labels_path}: {exc}") from None
        self.entries: list[LabelEntry] = sorted(self._parse(text), key=lambda e: e.filename)
        if not self.entries:
            raise DatasetError(f"{self.labels_path} lists no images")

    def _image_dir(self) -> Path:
        images = self.root / "images"
        return images if images.is_dir() else self.root

    def _parse(self, text: str) -> list[LabelEntry]:
        where = self.labels_path
        image_dir = self._image_dir()
        entries: list[LabelEntry] = []
        seen: dict[str, int] = {}
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.rstrip("\r")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            fields = line.split("\t")
            if number == 1 and fields[0].strip().lower() in {"filename", "file", "image", "name"}:
                continue  # header line
            if len(fields) < 2:
                raise DatasetError(
                    f"{where} line {number}: expected 'filename<TAB>class_index' but got {line!r}"
                )
            filename = fields[0].strip()
            try:
                label = int(fields[1].strip())
            except ValueError:
                raise DatasetError(
                    f"{where} line {number}: class index {fields[1].strip()!r} of {filename} "
                    "is not an integer"
                ) from None
            if label < 0 or (self.num_classes is not None and label >= self.num_classes):
                limit = "" if self.num_classes is None else f" (expected 0..{self.num_classes - 1})"
                raise DatasetError(
                    f"{where} line {number}: class index {label} of {filename} "
                    f"is out of range{limit}"
                )
            if filename in seen:
                raise DatasetError(
                    f"{where} line {number}: {filename} is already listed on line {seen[filename]}"
                )
            seen[filename] = number
            path = image_dir / filename
            if not path.is_file():
                raise DatasetError(
                    f"{where} line {number}: image {filename} does not exist (looked for {path})"
                )
            wnid = fields[2].strip() if len(fields) > 2 else None
            words = fields[3].strip() if len(fields) > 3 else None
            entries.append(LabelEntry(filename, label, wnid or None, words or None, number, path))
        return entries

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> Sample:
        entry = self.entries[_check_index(index, len(self.entries), str(self.root))]
        try:
            with Image.open(entry.path) as image:
                rgb = image.convert("RGB")
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
            raise DatasetError(
                f"cannot decode image {entry.path} ({self.labels_path} line {entry.line}): {exc}"
            ) from None
        return Sample(image=rgb, label=entry.label, name=entry.filename)

    def __repr__(self) -> str:
        return f"ImageFolderDataset({str(self.root)!r}, {len(self)} images)"


def _find_idx(root: Path, split: str, part: str) -> Path | None:
    for name in (f"{split}-{part}", f"{split}-{part}.gz",
                 f"{split}-{part.replace('-', '.', 1)}", f"{split}-{part.replace('-', '.', 1)}.gz"):
        path = root / name
        if path.is_file():
            return path
    return None


def _read_idx_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DatasetError(f"cannot read idx file {path}: {exc} (truncated or not gzip?)") from None


class MnistDataset:
    """The MNIST idx files in ``root``: 28x28 ``"L"`` images and their digit labels."""

    kind = "mnist"
    num_classes = 10

    def __init__(self, root: Path | str, split: str | None = None) -> None:
        self.root = Path(root)
        splits = MNIST_SPLITS if split is None else (split,)
        found = None
        for name in splits:
            images = _find_idx(self.root, name, "images-idx3-ubyte")
            labels = _find_idx(self.root, name, "labels-idx1-ubyte")
            if images and labels:
                found = (name, images, labels)
                break
        if found is None:
            wanted = ", ".join(
                f"{s}-images-idx3-ubyte[.gz] + {s}-labels-idx1-ubyte[.gz]" for s in splits
            )
            raise DatasetError(f"{self.root} holds no MNIST idx files (looked for {wanted})")
        self.split, self.images_path, self.labels_path = found
        self._images = self._read_images(self.images_path)
        self._labels = self._read_labels(self.labels_path)
        if len(self._images) != len(self._labels):
            raise DatasetError(
                f"MNIST count mismatch: {self.images_path} holds {len(self._images)} images but "
                f"{self.labels_path} holds {len(self._labels)} labels"
            )
        if len(self._labels) and int(self._labels.max()) > 9:
            raise DatasetError(f"{self.labels_path} holds label {int(self._labels.max())} (> 9)")

    @staticmethod
    def _read_images(path: Path) -> np.ndarray:
        return _read_idx(path, IMAGES_MAGIC, "an idx3 image file", "images")

    @staticmethod
    def _read_labels(path: Path) -> np.ndarray:
        return _read_idx(path, LABELS_MAGIC, "an idx1 label file", "labels")

    @property
    def labels(self) -> np.ndarray:
        """All labels as a read-only uint8 array."""
        return self._labels

    @property
    def images(self) -> np.ndarray:
        """All images as a read-only (N, rows, cols) uint8 array."""
        return self._images

    def __len__(self) -> int:
        return len(self._labels)

    def __getitem__(self, index: int) -> Sample:
        index = _check_index(index, len(self), str(self.root))
        image = Image.fromarray(np.array(self._images[index]), mode="L")
        return Sample(image=image, label=int(self._labels[index]), name=f"{self.split}-{index:05d}")

    def __repr__(self) -> str:
        return f"MnistDataset({str(self.root)!r}, split={self.split!r}, {len(self)} images)"


def load_dataset(path: Path | str) -> Dataset:
    """Open the dataset in folder ``path``, detecting its kind from the files it holds."""
    path = Path(path)
    if path.is_file() and path.name == LABELS_FILE:
        path = path.parent
    if not path.is_dir():
        raise DatasetError(f"dataset folder {path} does not exist")
    if (path / LABELS_FILE).is_file():
        return ImageFolderDataset(path)
    for split in MNIST_SPLITS:
        if any(_find_idx(path, split, part) for part in ("images-idx3-ubyte", "labels-idx1-ubyte")):
            return MnistDataset(path)
    raise DatasetError(
        f"cannot tell what dataset {path} holds: looked for {LABELS_FILE} (an image folder) and "
        "t10k-/train-images-idx3-ubyte[.gz] with t10k-/train-labels-idx1-ubyte[.gz] (MNIST)"
    )


def deterministic_subset(dataset: Dataset, count: int, seed: int = 0) -> list[int]:
    """``count`` indices of ``dataset`` chosen by ``seed`` (all when ``count >= len``), sorted.

    The choice is ``np.random.default_rng(seed).permutation(len(dataset))[:count]``, so it is the
    same on every call, machine and numpy version that keeps the PCG64 stream stable.
    """
    length = len(dataset)
    if count < 0:
        raise DatasetError(f"subset size must be >= 0, got {count}")
    if count >= length:
        return list(range(length))
    chosen = np.random.default_rng(seed).permutation(length)[:count]
    return sorted(int(i) for i in chosen)


def _read_idx(path: Path, magic_expected: int, kind: str, items: str) -> np.ndarray:
    """An idx file of unsigned bytes: big-endian magic (0x08 type, dims in the low byte), one
    big-endian count per dimension, then the data."""
    data = _read_idx_bytes(path)
    ndim = magic_expected & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{path} is truncated: {len(data)} bytes, less than the {header}-byte header")
    magic, *dims = struct.unpack(f">{1 + ndim}I", data[:header])
    if magic != magic_expected:
        raise DatasetError(f"{path} is not {kind}: magic {magic}, expected {magic_expected}")
    expected = int(np.prod(dims, dtype=np.int64))
    if len(data) - header < expected:
        shape = "x".join(map(str, dims[1:]))
        described = f"{dims[0]} {items}" + (f" of {shape}" if shape else "")
        raise DatasetError(
            f"{path} is truncated: header declares {described} ({expected} bytes) but only "
            f"{len(data) - header} bytes follow"
        )
    return np.frombuffer(data, np.uint8, expected, header).reshape(dims)
