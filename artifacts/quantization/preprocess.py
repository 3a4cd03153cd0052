"""Image preprocessing presets and ONNX Runtime calibration readers.

A :class:`Preprocess` turns one Pillow image into a ``(1, C, H, W)`` float32 array. The order of the
operations is fixed and is exactly::

    decode (Pillow, by the dataset)
    -> convert mode        "RGB" for channels RGB/BGR, "L" for GRAY
    -> resize              int: shorter side to that size, aspect kept (long side truncated, as
                           torchvision does); (H, W): exactly that size; Pillow, bilinear by default
    -> center crop         to crop (H, W); offsets (size - crop) // 2, as Caffe's DataTransformer
    -> to float array      HWC float32, values 0..255 (divided by 255 first if pixel_range="0-1")
    -> channel order       RGB kept, or reversed to BGR
    -> subtract mean       per-channel values given IN THE OUTPUT CHANNEL ORDER, or a mean image
    -> multiply by scale
    -> CHW, add batch      (1, C, H, W) float32

Mean images (``mean`` is a path to a ``.npy`` (C,H,W) array such as Caffe's
``ilsvrc_2012_mean.npy``, or a Caffe ``.binaryproto``) hold their channels in the output order
too (BGR for the ImageNet mean) and are never resized. They are aligned the way Caffe's classic
test-phase ``DataTransformer`` does it: when the mean image has the size of the resized (pre-crop)
image, it is subtracted from that image and the result center-cropped -- equivalently, the same
center window of the mean image is subtracted from the cropped image; when it already has the
final size it is subtracted as is; any other size is an error (use per-channel means instead).
So ``caffe-imagenet`` with ``ilsvrc_2012_mean.npy`` = resize 256x256, subtract the 256x256 mean
image, center-crop 227 (or 224). (Caffe's python ``Transformer``/``classify.py`` instead needs a
mean already of the input size, and its notebooks use the per-channel mean: that is the fallback
used when no mean file is given.) Resizing uses Pillow, not scikit-image as caffe.io did, so
pixels can differ slightly from Caffe's.

INC's AlexNet recipe -- RGB, resize 224x224 (no crop), subtract (123.68, 116.779, 103.939) on the
RGB data, then swap to BGR, no scaling -- is expressed as channels="BGR" with the same means
reversed, (103.939, 116.779, 123.68): subtracting an RGB mean then reversing the channels is
element-for-element the same float32 computation as reversing then subtracting the reversed mean.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from zooforge.artifacts.quantization.datasets import Dataset
from zooforge.converters.errors import InputFileError

__all__ = [
    "CAFFE_IMAGENET_BGR_MEAN", "CIFAR10_CAFFE_RGB_MEAN", "CalibrationReader",
    "INC_ALEXNET_RGB_MEAN",
    "PRESETS", "Preprocess", "PreprocessError", "SeededReader", "custom_preset", "get_preset",
    "load_mean_file",
]

# INC's AlexNet mean, in R, G, B order (the usual ImageNet means in 0..255).
INC_ALEXNET_RGB_MEAN = (123.68, 116.779, 103.939)
# Per-channel means of ../shared/data/ilsvrc12/ilsvrc_2012_mean.npy (B, G, R; 0..255), computed as
# np.load("ilsvrc_2012_mean.npy").mean(axis=(1, 2)); tests/test_preprocess.py checks them.
CAFFE_IMAGENET_BGR_MEAN = (104.00698793, 116.66876762, 122.67891434)
# Per-channel means of ../shared/caffe/trained/cifar10_quick_hdf5/mean.binaryproto
# (R, G, B; 0..255),
# Caffe's CIFAR-10 data being stored R, G, B; tests/test_preprocess.py checks them.
CIFAR10_CAFFE_RGB_MEAN = (125.30692291259766, 122.95039367675781, 113.86538696289062)

_CHANNELS = {"RGB": 3, "BGR": 3, "GRAY": 1}
_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
_PIXEL_RANGES = ("0-255", "0-1")


class PreprocessError(InputFileError):
    """A preprocessing preset or setting is unknown or inconsistent, or a mean file is unusable."""


def _pair(value: Any, what: str) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (int(value), int(value))
    try:
        height, width = (int(v) for v in value)
    except (TypeError, ValueError):
        raise PreprocessError(f"{what} must be (height, width), got {value!r}") from None
    if height <= 0 or width <= 0:
        raise PreprocessError(f"{what} must be positive, got {(height, width)}")
    return height, width


@functools.lru_cache(maxsize=8)
def _load_mean_cached(path: str, mtime_ns: int) -> np.ndarray:
    file = Path(path)
    if file.suffix == ".npy":
        try:
            array = np.load(file, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise PreprocessError(f"cannot read mean file {file}: {exc}") from None
    else:
        from zooforge.converters.caffe import schema
        from zooforge.converters.caffe.weights import blob_to_array
        from google.protobuf.message import DecodeError

        blob = schema.BlobProto()
        try:
            blob.ParseFromString(file.read_bytes())
        except (OSError, DecodeError) as exc:
            raise PreprocessError(
                f"cannot read mean file {file} as a Caffe BlobProto (.binaryproto): {exc}"
            ) from None
        array = blob_to_array(blob, str(file))
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 3 or array.size == 0:
        raise PreprocessError(
            f"mean file {file} holds an array of shape {list(array.shape)}; expected (C, H, W)"
        )
    array.setflags(write=False)
    return array


def load_mean_file(path: Path | str) -> np.ndarray:
    """The (C, H, W) float32 mean image in a ``.npy`` or Caffe ``.binaryproto`` file (cached)."""
    file = Path(path)
    if not file.is_file():
        raise PreprocessError(f"mean file {file} does not exist")
    return _load_mean_cached(str(file.resolve()), file.stat().st_mtime_ns)


def _fmt(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"


@dataclass(frozen=True)
class Preprocess:
    """One image -> a (1, C, H, W) float32 array; see the module docstring for the op order."""

    name: str
    resize: tuple[int, int] | int | None
    crop: tuple[int, int] | None
    channels: str  # "RGB" | "BGR" | "GRAY"
    mean: tuple[float, ...] | str | None  # output channel order, or a path to a mean image
    scale: float = 1.0
    pixel_range: str = "0-255"  # "0-1": divide by 255 before the mean is subtracted
    resample: str = "bilinear"

    def __post_init__(self) -> None:
        if self.channels not in _CHANNELS:
            raise PreprocessError(
                f"preprocess {self.name!r}: channels must be one of {sorted(_CHANNELS)}, "
                f"got {self.channels!r}"
            )
        if self.resize is not None:
            if isinstance(self.resize, (int, np.integer)) and not isinstance(self.resize, bool):
                if self.resize <= 0:
                    raise PreprocessError(f"preprocess {self.name!r}: resize must be positive")
                object.__setattr__(self, "resize", int(self.resize))
            else:
                pair = _pair(self.resize, f"preprocess {self.name!r} resize")
                object.__setattr__(self, "resize", pair)
        if self.crop is not None:
            object.__setattr__(self, "crop", _pair(self.crop, f"preprocess {self.name!r} crop"))
        if isinstance(self.mean, Path):
            object.__setattr__(self, "mean", str(self.mean))
        elif self.mean is not None and not isinstance(self.mean, str):
            values = (self.mean,) if isinstance(self.mean, (int, float)) else self.mean
            try:
                values = tuple(float(v) for v in values)
            except (TypeError, ValueError):
                raise PreprocessError(
                    f"preprocess {self.name!r}: mean must be numbers or a file path, "
                    f"got {self.mean!r}"
                ) from None
            if len(values) == 1 and _CHANNELS[self.channels] == 3:
                values = values * 3
            if len(values) != _CHANNELS[self.channels]:
                raise PreprocessError(
                    f"preprocess {self.name!r}: {len(values)} mean values for "
                    f"{_CHANNELS[self.channels]} {self.channels} channel(s)"
                )
            object.__setattr__(self, "mean", values)
        try:
            scale = float(self.scale)
        except (TypeError, ValueError):
            scale = math.nan
        if not math.isfinite(scale):
            raise PreprocessError(f"preprocess {self.name!r}: scale must be a finite number")
        object.__setattr__(self, "scale", scale)
        if self.pixel_range not in _PIXEL_RANGES:
            raise PreprocessError(
                f"preprocess {self.name!r}: pixel_range must be one of {list(_PIXEL_RANGES)}"
            )
        if self.resample not in _RESAMPLE:
            raise PreprocessError(
                f"preprocess {self.name!r}: resample must be one of {sorted(_RESAMPLE)}"
            )

    @property
    def num_channels(self) -> int:
        return _CHANNELS[self.channels]

    def output_hw(self) -> tuple[int, int] | None:
        """The (H, W) every output has, or None when it depends on the image."""
        if self.crop is not None:
            return self.crop
        if isinstance(self.resize, tuple):
            return self.resize
        return None

    def _resized(self, image: Image.Image) -> Image.Image:
        if self.resize is None:
            return image
        width, height = image.size
        if isinstance(self.resize, int):
            short = self.resize
            if width <= height:
                size = (short, int(short * height / width))
            else:
                size = (int(short * width / height), short)
        else:
            size = (self.resize[1], self.resize[0])  # Pillow wants (W, H)
        if size == image.size:
            return image
        return image.resize(size, _RESAMPLE[self.resample])

    def apply(self, image: Image.Image) -> np.ndarray:
        """Preprocess one Pillow image into a C-contiguous (1, C, H, W) float32 array."""
        image = image.convert("L" if self.channels == "GRAY" else "RGB")
        image = self._resized(image)
        pixels = np.asarray(image, dtype=np.float32)
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        pre_h, pre_w = pixels.shape[:2]
        top = left = 0
        if self.crop is not None:
            crop_h, crop_w = self.crop
            if crop_h > pre_h or crop_w > pre_w:
                raise PreprocessError(
                    f"preprocess {self.name!r}: cannot center-crop {crop_h}x{crop_w} from a "
                    f"{pre_h}x{pre_w} image"
                )
            top, left = (pre_h - crop_h) // 2, (pre_w - crop_w) // 2
            pixels = pixels[top:top + crop_h, left:left + crop_w]
        if self.pixel_range == "0-1":
            pixels = pixels / np.float32(255.0)
        if self.channels == "BGR":
            pixels = pixels[:, :, ::-1]
        if isinstance(self.mean, str):
            pixels = pixels - self._mean_window(pre_h, pre_w, top, left, pixels.shape[:2])
        elif self.mean is not None:
            pixels = pixels - np.asarray(self.mean, dtype=np.float32)
        if self.scale != 1.0:
            pixels = pixels * np.float32(self.scale)
        return np.ascontiguousarray(pixels.transpose(2, 0, 1)[None], dtype=np.float32)

    def _mean_window(self, pre_h: int, pre_w: int, top: int, left: int,
                     out_hw: tuple[int, int]) -> np.ndarray:
        """The HWC part of the mean image that lines up with the output pixels."""
        mean = load_mean_file(self.mean)
        if mean.shape[0] != self.num_channels:
            raise PreprocessError(
                f"mean file {self.mean} has {mean.shape[0]} channels; preprocess {self.name!r} "
                f"produces {self.num_channels}"
            )
        mean_hw = tuple(mean.shape[1:])
        out_h, out_w = out_hw
        if mean_hw == (pre_h, pre_w):
            window = mean[:, top:top + out_h, left:left + out_w]
        elif mean_hw == (out_h, out_w):
            window = mean
        else:
            raise PreprocessError(
                f"mean image {self.mean} is {mean_hw[0]}x{mean_hw[1]} but preprocess {self.name!r} "
                f"resizes to {pre_h}x{pre_w} and outputs {out_h}x{out_w}; mean images are not "
                "resized: resize to the mean's size or give per-channel means"
            )
        if self.pixel_range == "0-1":
            window = window / np.float32(255.0)
        return window.transpose(1, 2, 0)

    def describe(self) -> str:
        """One line naming every step, in order."""
        steps = [self.channels if self.channels != "BGR" else "RGB"]
        if isinstance(self.resize, int):
            steps.append(f"resize shorter side to {self.resize} ({self.resample})")
        elif self.resize is not None:
            steps.append(f"resize to {self.resize[0]}x{self.resize[1]} ({self.resample})")
        if self.crop is not None:
            steps.append(f"center crop {self.crop[0]}x{self.crop[1]}")
        steps.append("float 0..1" if self.pixel_range == "0-1" else "float 0..255")
        if self.channels == "BGR":
            steps.append("swap to BGR")
        if isinstance(self.mean, str):
            steps.append(f"subtract mean image {self.mean} ({self.channels}, center-aligned)")
        elif self.mean is not None:
            text = f"subtract {self.channels} mean {_fmt(self.mean)}"
            if self.channels == "BGR":
                text += f" (= RGB mean {_fmt(self.mean[::-1])} before the swap)"
            steps.append(text)
        if self.scale != 1.0:
            steps.append(f"multiply by {self.scale:g}")
        hw = self.output_hw()
        h, w = hw if hw else ("H", "W")
        shape = f"(1, {self.num_channels}, {h}, {w})"
        steps.append(f"NCHW float32 {shape}")
        return f"{self.name}: " + " -> ".join(steps)


# ---------------------------------------------------------------------------------------------
# presets: factories taking the model's input shape (N, C, H, W)

def _model_hw(input_shape: Sequence[Any], default: tuple[int, int]) -> tuple[int, int]:
    """The model's (H, W), or ``default`` for dimensions that are symbolic or missing."""
    dims = list(input_shape)
    if len(dims) != 4:
        raise PreprocessError(f"expected an (N, C, H, W) input shape, got {list(input_shape)}")
    out = []
    for dim, fallback in zip(dims[2:], default):
        concrete = isinstance(dim, (int, np.integer)) and not isinstance(dim, bool) and dim > 0
        out.append(int(dim) if concrete else fallback)
    return out[0], out[1]


def _fixed_hw(preset: str, input_shape: Sequence[Any], size: tuple[int, int]) -> tuple[int, int]:
    """``size``, which the recipe of ``preset`` fixes; a model whose (H, W) is known and differs is
    refused, since resizing to another size would silently change the recipe (symbolic H, W pass)."""
    hw = _model_hw(input_shape, size)
    if hw != size:
        raise PreprocessError(
            f"preprocess {preset!r} resizes to {size[0]}x{size[1]}, its recipe's fixed size, but the model "
            f"takes {hw[0]}x{hw[1]}; convert the model with --input-shape 1,3,{size[0]},{size[1]} or choose "
            "a preset that follows the model's size (caffe-imagenet)"
        )
    return hw


def inc_alexnet(input_shape: Sequence[Any]) -> Preprocess:
    """INC's AlexNet: RGB, resize to 224x224, RGB mean, then BGR; no scale. The size is the recipe's:
    a model of another size is refused (see ``_fixed_hw``)."""
    hw = _fixed_hw("inc-alexnet", input_shape, (224, 224))
    return Preprocess(
        name="inc-alexnet", resize=hw, crop=None, channels="BGR",
        mean=tuple(reversed(INC_ALEXNET_RGB_MEAN)), scale=1.0,
    )


def caffe_imagenet(input_shape: Sequence[Any], mean_file: Path | str | None = None) -> Preprocess:
    """Caffe's classic ImageNet: resize 256x256, center crop to the model's H, W (227 or 224), BGR,
    subtract ``ilsvrc_2012_mean.npy`` (center-aligned) or, without it, its per-channel means."""
    hw = _model_hw(input_shape, (227, 227))
    return Preprocess(
        name="caffe-imagenet", resize=(256, 256), crop=hw, channels="BGR",
        mean=str(mean_file) if mean_file is not None else CAFFE_IMAGENET_BGR_MEAN, scale=1.0,
    )


def mnist(input_shape: Sequence[Any]) -> Preprocess:
    """LeNet on MNIST: gray, resize to 28x28 if needed, x / 256 (scale 0.00390625), no mean."""
    hw = _model_hw(input_shape, (28, 28))
    return Preprocess(name="mnist", resize=hw, crop=None, channels="GRAY", mean=None,
                      scale=0.00390625)


def cifar10_caffe(input_shape: Sequence[Any], mean_file: Path | str | None = None) -> Preprocess:
    """Caffe's CIFAR-10 nets: R, G, B order, 32x32, minus ``mean.binaryproto`` (or its per-channel
    means), no scale."""
    hw = _model_hw(input_shape, (32, 32))
    return Preprocess(
        name="cifar10-caffe", resize=hw, crop=None, channels="RGB",
        mean=str(mean_file) if mean_file is not None else CIFAR10_CAFFE_RGB_MEAN, scale=1.0,
    )


PRESETS: Mapping[str, Callable[[Sequence[Any]], Preprocess]] = {
    "inc-alexnet": inc_alexnet,
    "caffe-imagenet": caffe_imagenet,
    "mnist": mnist,
    "cifar10-caffe": cifar10_caffe,
}

_FIELDS = tuple(f.name for f in dataclasses.fields(Preprocess))


def get_preset(name: str, input_shape: Sequence[Any], **overrides: Any) -> Preprocess:
    """The preset ``name`` sized for ``input_shape`` (N, C, H, W), with any ``Preprocess`` field
    replaced by ``overrides`` (e.g. ``mean="ilsvrc_2012_mean.npy"`` for caffe-imagenet)."""
    factory = PRESETS.get(name)
    if factory is None:
        raise PreprocessError(
            f"unknown preprocessing preset {name!r}; available: {', '.join(sorted(PRESETS))}"
        )
    unknown = sorted(set(overrides) - set(_FIELDS))
    if unknown:
        raise PreprocessError(
            f"unknown preprocessing setting(s) {', '.join(unknown)}; settable: {', '.join(_FIELDS)}"
        )
    preprocess = factory(input_shape)
    if overrides:
        preprocess = dataclasses.replace(preprocess, **overrides)
    _check_channels(preprocess, input_shape)
    return preprocess


def _check_channels(preprocess: Preprocess, input_shape: Sequence[Any]) -> None:
    dims = list(input_shape)
    channels = dims[1] if len(dims) == 4 else None
    known = isinstance(channels, (int, np.integer)) and channels > 0
    if known and channels != preprocess.num_channels:
        raise PreprocessError(
            f"preprocess {preprocess.name!r} produces {preprocess.num_channels} channel(s) "
            f"({preprocess.channels}) but the model input {dims} has {channels}"
        )


def custom_preset(
    size: tuple[int, int] | int | None,
    crop: tuple[int, int] | None = None,
    mean: tuple[float, ...] | str | None = None,
    scale: float = 1.0,
    channels: str = "RGB",
    *,
    name: str = "custom",
    pixel_range: str = "0-255",
    resample: str = "bilinear",
) -> Preprocess:
    """A preprocessing from explicit flags (``size`` is the ``resize`` step)."""
    return Preprocess(name=name, resize=size, crop=crop, channels=channels, mean=mean, scale=scale,
                      pixel_range=pixel_range, resample=resample)


# ---------------------------------------------------------------------------------------------
# calibration readers: onnxruntime.quantization.CalibrationDataReader's shape. That ABC accepts
# any class with a callable ``get_next`` (its ``__subclasshook__``) and quantize_static does no
# isinstance check, so these do not subclass it and onnxruntime is not imported here.

class _Reader:
    def __init__(self, count: int) -> None:
        self._start, self._end = 0, count
        self._count = count
        self._position = 0

    def __len__(self) -> int:
        return self._count

    def rewind(self) -> None:
        self._position = self._start

    def set_range(self, start_index: int, end_index: int) -> None:
        """Restrict the feeds to ``[start_index, end_index)`` (onnxruntime's strided
        calibration)."""
        start = max(0, int(start_index))
        end = min(self._count, int(end_index))
        self._start, self._end = start, max(start, end)
        self._position = self._start

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        feed = self.get_next()
        if feed is None:
            raise StopIteration
        return feed

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._position >= self._end:
            return None
        feed = self._feed(self._position)
        self._position += 1
        return feed

    def _feed(self, position: int) -> dict[str, np.ndarray]:
        raise NotImplementedError


class CalibrationReader(_Reader):
    """Feeds ``{input_name: preprocess.apply(dataset[i].image)}`` for each of ``indices`` (all
    samples when None), in the given order, then None; ``rewind()`` starts over."""

    def __init__(self, dataset: Dataset, preprocess: Preprocess, input_name: str,
                 indices: Sequence[int] | None = None,
                 input_shape: Sequence[Any] | None = None) -> None:
        self.dataset = dataset
        self.preprocess = preprocess
        self.input_name = input_name
        self.indices = list(range(len(dataset))) if indices is None else [int(i) for i in indices]
        self.input_shape = None if input_shape is None else list(input_shape)
        super().__init__(len(self.indices))

    def _feed(self, position: int) -> dict[str, np.ndarray]:
        sample = self.dataset[self.indices[position]]
        array = self.preprocess.apply(sample.image)
        if self.input_shape is not None:
            for got, want in zip(array.shape, self.input_shape):
                if isinstance(want, (int, np.integer)) and want > 0 and got != want:
                    raise PreprocessError(
                        f"preprocess {self.preprocess.name!r} made a {list(array.shape)} "
                        "array from "
                        f"{sample.name} but input {self.input_name!r} is {self.input_shape}"
                    )
        return {self.input_name: array}


class SeededReader(_Reader):
    """``count`` feeds of uniform float32 values in [low, high) of ``shape``; feed ``i`` is drawn
    from ``np.random.default_rng([seed, i])`` so it never depends on what was read before.
    Symbolic dimensions (None, strings, <= 0) become 1."""

    def __init__(self, input_name: str, shape: Sequence[Any], low: float = 0.0, high: float = 1.0,
                 count: int = 8, seed: int = 0) -> None:
        if count < 0:
            raise PreprocessError(f"SeededReader count must be >= 0, got {count}")
        if not high > low:
            raise PreprocessError(f"SeededReader needs low < high, got [{low}, {high})")
        self.input_name = input_name
        self.shape = tuple(
            int(d) if isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0 else 1
            for d in shape
        )
        self.low, self.high, self.seed = float(low), float(high), int(seed)
        super().__init__(int(count))

    def _feed(self, position: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, position])
        return {self.input_name: rng.uniform(self.low, self.high, self.shape).astype(np.float32)}
