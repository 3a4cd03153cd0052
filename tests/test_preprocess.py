"""Datasets, preprocessing presets and calibration readers, checked against independent numpy + PIL
computations on the real pictures and MNIST files in ../shared."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zooforge.artifacts.quantization.datasets import (
    DatasetError, ImageFolderDataset, MnistDataset, Sample, deterministic_subset, load_dataset,
)
from zooforge.artifacts.quantization.preprocess import (
    CAFFE_IMAGENET_BGR_MEAN, CIFAR10_CAFFE_RGB_MEAN, PRESETS, CalibrationReader, Preprocess,
    PreprocessError, SeededReader, custom_preset, get_preset,
)
from zooforge.converters.errors import InputFileError
from shared_paths import SHARED, SHARED_MISSING

BILINEAR = Image.Resampling.BILINEAR


@pytest.fixture(scope="module")
def data(request) -> Path:
    root = SHARED / "data"
    if not root.is_dir():
        pytest.skip(SHARED_MISSING)
    return root


@pytest.fixture(scope="module")
def mnist_ds(data) -> MnistDataset:
    return MnistDataset(data / "mnist_t10k")


def _pictures(data: Path) -> list[Path]:
    folder = data / "imagenet_samples"
    return [folder / "cat.jpg", folder / "cat_gray.jpg", folder / "fish-bike.jpg",
            folder / "images" / "n01440764_tench.JPEG"]


# ---------------------------------------------------------------------------------------------
# presets against independent computations

def test_inc_alexnet_matches_independent(data):
    preprocess = get_preset("inc-alexnet", (1, 3, 224, 224))
    for path in _pictures(data):
        image = Image.open(path)
        rgb = np.asarray(image.convert("RGB").resize((224, 224), BILINEAR), dtype=np.float32)
        rgb = rgb - np.array([123.68, 116.779, 103.939], dtype=np.float32)  # RGB mean on RGB data
        expected = rgb[..., ::-1].transpose(2, 0, 1)[None]  # then swap to BGR
        got = preprocess.apply(image)
        assert got.shape == (1, 3, 224, 224) and got.dtype == np.float32
        assert got.flags.c_contiguous
        np.testing.assert_array_equal(got, expected)


def test_inc_alexnet_channel_order_on_solid_red():
    red = Image.new("RGB", (300, 200), (255, 0, 0))
    got = get_preset("inc-alexnet", (1, 3, 224, 224)).apply(red)
    # channel 0 is B: 0 - 103.939; channel 1 is G: 0 - 116.779; channel 2 is R: 255 - 123.68
    np.testing.assert_allclose(got[0, 0], -103.939, atol=1e-4)
    np.testing.assert_allclose(got[0, 1], -116.779, atol=1e-4)
    np.testing.assert_allclose(got[0, 2], 131.32, atol=1e-4)


def test_caffe_imagenet_per_channel_means_come_from_the_mean_file(data):
    mean = np.load(data / "ilsvrc12" / "ilsvrc_2012_mean.npy")
    assert mean.shape == (3, 256, 256)
    np.testing.assert_allclose(mean.mean(axis=(1, 2)), CAFFE_IMAGENET_BGR_MEAN, atol=1e-7)


def test_cifar10_per_channel_means_come_from_the_mean_file(shared):
    from zooforge.converters.caffe import schema
    blob = schema.BlobProto()
    mean_file = shared / "caffe/trained/cifar10_quick_hdf5/mean.binaryproto"
    blob.ParseFromString(mean_file.read_bytes())
    values = np.asarray(blob.data, np.float32).reshape(3, 32 * 32)
    np.testing.assert_allclose(values.mean(axis=1), CIFAR10_CAFFE_RGB_MEAN, rtol=1e-6)


@pytest.mark.parametrize("size", [227, 224])
def test_caffe_imagenet_with_mean_image_matches_independent(data, size):
    mean_path = data / "ilsvrc12" / "ilsvrc_2012_mean.npy"
    preprocess = get_preset("caffe-imagenet", (1, 3, size, size), mean=str(mean_path))
    mean = np.load(mean_path)  # (3, 256, 256), B, G, R
    for path in _pictures(data):
        image = Image.open(path)
        bgr = np.asarray(image.convert("RGB").resize((256, 256), BILINEAR), np.float64)[..., ::-1]
        full = bgr - mean.transpose(1, 2, 0)  # subtract the whole mean image, then center-crop
        off = (256 - size) // 2
        expected = full[off:off + size, off:off + size].transpose(2, 0, 1)[None]
        got = preprocess.apply(image)
        assert got.shape == (1, 3, size, size)
        np.testing.assert_allclose(got, expected, atol=1e-4)


def test_caffe_imagenet_fallback_per_channel(data):
    preprocess = get_preset("caffe-imagenet", (1, 3, 227, 227))
    image = Image.open(data / "imagenet_samples" / "cat.jpg")
    bgr = np.asarray(image.convert("RGB").resize((256, 256), BILINEAR), np.float32)[..., ::-1]
    expected = (bgr[14:241, 14:241] - np.float32(CAFFE_IMAGENET_BGR_MEAN)).transpose(2, 0, 1)[None]
    np.testing.assert_allclose(preprocess.apply(image), expected, atol=1e-5)


def test_mnist_preset_on_mnist_reader(mnist_ds):
    preprocess = get_preset("mnist", (1, 1, 28, 28))
    for index in (0, 1, 9999):
        sample = mnist_ds[index]
        expected = (np.asarray(sample.image, np.float32) * 0.00390625)[None, None]
        got = preprocess.apply(sample.image)
        assert got.shape == (1, 1, 28, 28)
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(got[0, 0] * 256, mnist_ds.images[index])


def test_mnist_preset_resizes_and_grays_rgb_input():
    image = Image.new("RGB", (56, 40), (10, 200, 30))
    got = get_preset("mnist", (1, 1, 28, 28)).apply(image)
    expected = np.asarray(image.convert("L").resize((28, 28), BILINEAR), np.float32) / 256
    np.testing.assert_array_equal(got, expected[None, None])


def test_cifar10_preset_keeps_rgb(shared):
    image = Image.open(shared / "caffe/trained/cifar10_quick_hdf5/samples/cat.jpg")
    got = get_preset("cifar10-caffe", (1, 3, 32, 32)).apply(image)
    rgb = np.asarray(image.convert("RGB").resize((32, 32), BILINEAR), np.float32)
    expected = (rgb - np.float32(CIFAR10_CAFFE_RGB_MEAN)).transpose(2, 0, 1)[None]
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_shorter_side_resize_crop_scale_and_pixel_range():
    image = Image.fromarray(np.arange(60 * 80 * 3, dtype=np.uint8).reshape(60, 80, 3) % 251)
    preprocess = custom_preset(30, crop=(20, 24), mean=(1.0, 2.0, 3.0), scale=0.5, channels="BGR",
                               pixel_range="0-1")
    resized = np.asarray(image.resize((40, 30), BILINEAR), np.float32)  # shorter side 60 -> 30
    window = resized[5:25, 8:32] / np.float32(255)
    expected = ((window[..., ::-1] - np.float32([1, 2, 3])) * np.float32(0.5)).transpose(2, 0, 1)
    np.testing.assert_allclose(preprocess.apply(image), expected[None], atol=1e-6)
    assert "center crop 20x24" in preprocess.describe()


def test_describe_names_steps_in_order():
    text = get_preset("inc-alexnet", (1, 3, 224, 224)).describe()
    order = ["RGB", "resize to 224x224", "swap to BGR", "subtract BGR mean", "NCHW"]
    positions = [text.index(step) for step in order]
    assert positions == sorted(positions)
    assert "RGB mean (123.68, 116.779, 103.939)" in text


def test_preset_errors(tmp_path):
    available = "available: caffe-imagenet, cifar10-caffe, inc-alexnet, mnist"
    with pytest.raises(PreprocessError, match=available):
        get_preset("vgg", (1, 3, 224, 224))
    assert issubclass(PreprocessError, InputFileError)
    with pytest.raises(PreprocessError, match="settable"):
        get_preset("mnist", (1, 1, 28, 28), colour="red")
    with pytest.raises(PreprocessError, match="1 channel"):
        get_preset("mnist", (1, 3, 28, 28))
    with pytest.raises(PreprocessError, match="channels must be"):
        custom_preset(224, channels="CMYK")
    with pytest.raises(PreprocessError, match="2 mean values"):
        custom_preset(224, mean=(1.0, 2.0))
    with pytest.raises(PreprocessError, match="does not exist"):
        get_preset("caffe-imagenet", (1, 3, 227, 227), mean=str(tmp_path / "nope.npy")).apply(
            Image.new("RGB", (300, 300)))
    np.save(tmp_path / "small.npy", np.zeros((3, 100, 100)))
    with pytest.raises(PreprocessError, match="not resized"):
        get_preset("caffe-imagenet", (1, 3, 227, 227), mean=str(tmp_path / "small.npy")).apply(
            Image.new("RGB", (300, 300)))
    with pytest.raises(PreprocessError, match="cannot center-crop"):
        custom_preset(None, crop=(50, 50)).apply(Image.new("RGB", (40, 40)))
    assert set(PRESETS) >= {"inc-alexnet", "caffe-imagenet", "mnist", "cifar10-caffe"}
    assert isinstance(get_preset("inc-alexnet", ("N", 3, None, None)), Preprocess)


# ---------------------------------------------------------------------------------------------
# dataset readers

def test_mnist_reader(mnist_ds):
    assert len(mnist_ds) == 10000 and mnist_ds.kind == "mnist" and mnist_ds.num_classes == 10
    first = mnist_ds[0]
    assert isinstance(first, Sample) and first.label == 7
    assert first.image.mode == "L" and first.image.size == (28, 28)
    assert np.bincount(mnist_ds.labels, minlength=10).tolist() == [
        980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert mnist_ds[-1].label == mnist_ds[9999].label
    with pytest.raises(IndexError):
        mnist_ds[10000]


def _write_idx(folder: Path, images: bytes, labels: bytes, gz: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    writer = gzip.compress if gz else (lambda b: b)
    (folder / f"t10k-images-idx3-ubyte{suffix}").write_bytes(writer(images))
    (folder / f"t10k-labels-idx1-ubyte{suffix}").write_bytes(writer(labels))


def test_mnist_uncompressed_and_broken_files(tmp_path):
    pixels = np.arange(3 * 28 * 28, dtype=np.uint8).tobytes()
    good_images = struct.pack(">IIII", 2051, 3, 28, 28) + pixels
    good_labels = struct.pack(">II", 2049, 3) + bytes([1, 2, 3])
    _write_idx(tmp_path / "ok", good_images, good_labels)
    ok = load_dataset(tmp_path / "ok")
    assert isinstance(ok, MnistDataset) and [ok[i].label for i in range(3)] == [1, 2, 3]
    np.testing.assert_array_equal(np.asarray(ok[1].image), ok.images[1])

    _write_idx(tmp_path / "magic", struct.pack(">IIII", 2049, 3, 28, 28) + pixels, good_labels)
    with pytest.raises(DatasetError, match="magic 2049, expected 2051"):
        MnistDataset(tmp_path / "magic")
    _write_idx(tmp_path / "lmagic", good_images, struct.pack(">II", 2051, 3) + bytes(3))
    with pytest.raises(DatasetError, match="magic 2051, expected 2049"):
        MnistDataset(tmp_path / "lmagic")
    _write_idx(tmp_path / "count", good_images, struct.pack(">II", 2049, 2) + bytes(2))
    with pytest.raises(DatasetError, match="3 images but .* 2 labels"):
        MnistDataset(tmp_path / "count")
    _write_idx(tmp_path / "trunc", good_images[:-10], good_labels, gz=True)
    with pytest.raises(DatasetError, match="truncated"):
        MnistDataset(tmp_path / "trunc")
    _write_idx(tmp_path / "header", good_images[:7], good_labels)
    with pytest.raises(DatasetError, match="truncated"):
        MnistDataset(tmp_path / "header")
    (tmp_path / "badgz").mkdir()
    (tmp_path / "badgz" / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(good_images)[:40])
    (tmp_path / "badgz" / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(good_labels))
    with pytest.raises(DatasetError, match="t10k-images-idx3-ubyte.gz"):
        MnistDataset(tmp_path / "badgz")


def test_image_folder_reader(data):
    dataset = ImageFolderDataset(data / "imagenet_samples")
    assert len(dataset) == 100 and dataset.kind == "image-folder"
    names = [entry.filename for entry in dataset.entries]
    assert names == sorted(names)
    first = dataset[0]
    assert first.name == "n01440764_tench.JPEG" and first.label == 0 and first.image.mode == "RGB"
    assert dataset.entries[0].wnid == "n01440764"
    assert dataset.entries[0].words == "tench, Tinca tinca"
    by_name = {entry.filename: entry.label for entry in dataset.entries}
    assert by_name["n12768682_buckeye.JPEG"] == 990
    assert sorted(by_name.values()) == list(range(0, 1000, 10))


def _folder(tmp_path: Path, lines: list[str], images: dict[str, bytes | None]) -> Path:
    root = tmp_path / "folder"
    (root / "images").mkdir(parents=True)
    (root / "labels.tsv").write_text("\n".join(["filename\tclass_index_0based\twnid\tsynset_words",
                                                *lines]) + "\n")
    for name, content in images.items():
        if content is None:
            Image.new("RGB", (8, 6), (1, 2, 3)).save(root / "images" / name)
        else:
            (root / "images" / name).write_bytes(content)
    return root


def test_image_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no labels.tsv"):
        ImageFolderDataset(tmp_path / "empty")
    with pytest.raises(DatasetError, match="looked for labels.tsv.*images-idx3-ubyte"):
        load_dataset(tmp_path / "empty")
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "absent")

    root = _folder(tmp_path / "a", ["b.png\t3\tn1\tbee", "a.png\t1\tn0\tant"],
                   {"a.png": None, "b.png": None})
    dataset = load_dataset(root)
    assert isinstance(dataset, ImageFolderDataset)
    assert [dataset[i].name for i in range(2)] == ["a.png", "b.png"]
    assert dataset[1].label == 3 and dataset[1].image.size == (8, 6)

    root = _folder(tmp_path / "b", ["a.png\t1", "missing.png\t2"], {"a.png": None})
    with pytest.raises(DatasetError, match="line 3: image missing.png does not exist"):
        ImageFolderDataset(root)
    root = _folder(tmp_path / "c", ["a.png\tseven"], {"a.png": None})
    with pytest.raises(DatasetError, match="line 2: class index 'seven' of a.png"):
        ImageFolderDataset(root)
    root = _folder(tmp_path / "d", ["a.png\t-1"], {"a.png": None})
    with pytest.raises(DatasetError, match="line 2: class index -1 of a.png is out of range"):
        ImageFolderDataset(root)
    root = _folder(tmp_path / "e", ["a.png\t12"], {"a.png": None})
    with pytest.raises(DatasetError, match="expected 0..9"):
        ImageFolderDataset(root, num_classes=10)
    root = _folder(tmp_path / "f", ["a.png\t1", "bad.jpg\t2"], {"a.png": None, "bad.jpg": b"nope"})
    broken = ImageFolderDataset(root)
    assert broken[0].label == 1
    with pytest.raises(DatasetError, match=r"bad.jpg .*labels.tsv line 3"):
        broken[1]
    root = _folder(tmp_path / "g", ["a.png"], {"a.png": None})
    with pytest.raises(DatasetError, match="line 2: expected 'filename<TAB>class_index'"):
        ImageFolderDataset(root)


def test_load_dataset_detection(data):
    assert load_dataset(data / "imagenet_samples").kind == "image-folder"
    assert load_dataset(data / "imagenet_samples" / "labels.tsv").kind == "image-folder"
    assert load_dataset(data / "mnist_t10k").kind == "mnist"


def test_deterministic_subset(mnist_ds):
    """The choice is the documented formula, computed here with NumPy: the first ``count`` of
    ``default_rng(seed).permutation(len)``, sorted."""
    assert len(mnist_ds) == 10000  # MNIST's t10k set
    first = deterministic_subset(mnist_ds, 50, seed=3)
    assert first == sorted(int(i) for i in np.random.default_rng(3).permutation(10000)[:50])
    default_seed = sorted(int(i) for i in np.random.default_rng(0).permutation(10000)[:7])
    assert deterministic_subset(mnist_ds, 7) == default_seed
    assert first == deterministic_subset(mnist_ds, 50, seed=3)
    assert first == sorted(first) and len(set(first)) == 50
    assert first != deterministic_subset(mnist_ds, 50, seed=4)
    assert deterministic_subset(mnist_ds, 20000) == list(range(10000))
    assert deterministic_subset(mnist_ds, 0) == []


# ---------------------------------------------------------------------------------------------
# calibration readers

def test_calibration_reader(mnist_ds):
    preprocess = get_preset("mnist", (1, 1, 28, 28))
    indices = deterministic_subset(mnist_ds, 5)
    reader = CalibrationReader(mnist_ds, preprocess, "data", indices, input_shape=(1, 1, 28, 28))
    assert len(reader) == 5
    feeds = [reader.get_next() for _ in range(5)]
    assert reader.get_next() is None and reader.get_next() is None
    for feed, index in zip(feeds, indices):
        assert list(feed) == ["data"] and feed["data"].shape == (1, 1, 28, 28)
        np.testing.assert_array_equal(feed["data"], preprocess.apply(mnist_ds[index].image))
    reader.rewind()
    np.testing.assert_array_equal(reader.get_next()["data"], feeds[0]["data"])
    reader.rewind()
    assert len(list(reader)) == 5
    reader.set_range(1, 3)
    assert len(list(reader)) == 2

    wrong = CalibrationReader(mnist_ds, preprocess, "data", [0], input_shape=(1, 1, 32, 32))
    with pytest.raises(PreprocessError, match="32, 32"):
        wrong.get_next()

    onnx_quant = pytest.importorskip("onnxruntime.quantization")
    assert isinstance(reader, onnx_quant.CalibrationDataReader)


def test_seeded_reader():
    reader = SeededReader("x", ("N", 3, 8, 8), -1.0, 1.0, 4, seed=7)
    feeds = [reader.get_next()["x"] for _ in range(4)]
    assert reader.get_next() is None and len(reader) == 4
    for i, feed in enumerate(feeds):  # the docstring's recipe, computed here: feed i from default_rng([seed, i])
        drawn = np.random.default_rng([7, i]).uniform(-1.0, 1.0, (1, 3, 8, 8)).astype(np.float32)
        np.testing.assert_array_equal(feed, drawn)
    assert all(f.shape == (1, 3, 8, 8) and f.dtype == np.float32 for f in feeds)
    assert all(f.min() >= -1.0 and f.max() < 1.0 for f in feeds)
    assert not np.array_equal(feeds[0], feeds[1])
    reader.rewind()
    np.testing.assert_array_equal(reader.get_next()["x"], feeds[0])
    again = SeededReader("x", (1, 3, 8, 8), -1.0, 1.0, 4, seed=7)
    np.testing.assert_array_equal(list(again)[3]["x"], feeds[3])
    other = SeededReader("x", (1, 3, 8, 8), -1.0, 1.0, 4, seed=8)
    assert not np.array_equal(other.get_next()["x"], feeds[0])
