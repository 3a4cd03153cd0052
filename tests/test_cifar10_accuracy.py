"""Trained CIFAR-10 quick with HDF5 weights (``cifar10_quick_hdf5``): converted by zooforge and
evaluated the way a user would (an image folder with ``labels.tsv``, the ``cifar10-caffe`` preset
with the folder's ``mean.binaryproto``, ``zoo-eval``'s ``evaluate``), it must name what labelled
pictures show.

The oracle is the labels: what each picture shows, written by hand below. There is no CIFAR-10
test set in ../shared, so the pictures are the folder's own samples plus the ImageNet samples
whose synset is one of CIFAR-10's classes. Measured: 15 of 25 top-1 (both folder samples among
them); with every HDF5 blob reversed along axis 0, 2 of 25 (chance is 2.5).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from zooforge.artifacts.quantization.datasets import load_dataset
from zooforge.artifacts.quantization.evaluate import evaluate
from zooforge.artifacts.quantization.preprocess import get_preset
from zooforge.converters.api import ConvertOptions, convert_caffe
from zooforge.converters.caffe2.executor import run_net

from conftest import shared_work_scope

# Krizhevsky's class order (batches.meta of the CIFAR-10 python/binary release).
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
MODEL = Path("caffe") / "trained" / "cifar10_quick_hdf5"
IMAGENET = Path("data") / "imagenet_samples"
# picture (under ../shared) -> what it shows. The folder's h00man.jpg (a person) and starship.jpg
# (a spaceship) show no CIFAR-10 class and are left out.
FOLDER_SAMPLES = {MODEL / "samples" / "cat.jpg": "cat", MODEL / "samples" / "frog.jpg": "frog"}
PICTURES = {
    **FOLDER_SAMPLES,
    IMAGENET / "cat.jpg": "cat", IMAGENET / "cat_gray.jpg": "cat",  # Caffe's tabby cat example
    **{IMAGENET / "images" / f"{synset}.JPEG": "bird" for synset in (
        "n01530575_brambling", "n01601694_water_ouzel", "n01795545_black_grouse", "n01820546_lorikeet",
        "n01860187_black_swan", "n02007558_flamingo", "n02027492_red-backed_sandpiper")},
    IMAGENET / "images" / "n01641577_bullfrog.JPEG": "frog",
    **{IMAGENET / "images" / f"{synset}.JPEG": "dog" for synset in (
        "n02088094_Afghan_hound", "n02090721_Irish_wolfhound", "n02093428_American_Staffordshire_terrier",
        "n02095889_Sealyham_terrier", "n02097474_Tibetan_terrier", "n02100236_German_short-haired_pointer",
        "n02102480_Sussex_spaniel", "n02105855_Shetland_sheepdog", "n02107908_Appenzeller",
        "n02110185_Siberian_husky", "n02112137_chow")},
    **{IMAGENET / "images" / f"{synset}.JPEG": "ship" for synset in (
        "n03095699_container_ship", "n04147183_schooner")},
}
MIN_CORRECT = 12  # of 25: measured 15 (CIFAR-10 quick scores ~75% on CIFAR's own test set)


@pytest.fixture(scope=shared_work_scope)
def converted(shared, tmp_path_factory):
    folder = shared / MODEL
    conversion = convert_caffe(folder / "cifar10_quick.prototxt", folder / "cifar10_quick_iter_5000.caffemodel.h5",
                               ConvertOptions(opset=12))
    path = tmp_path_factory.mktemp("cifar10") / "cifar10_quick.onnx"
    conversion.save(path)
    return conversion, path


@pytest.fixture(scope="module")
def dataset(shared, tmp_path_factory):
    """PICTURES as a user's image folder: the files beside a labels.tsv of CIFAR-10 class indices."""
    folder = tmp_path_factory.mktemp("cifar10_pictures")
    lines = ["filename\tclass_index"]
    for index, (picture, label) in enumerate(PICTURES.items()):
        name = f"{index:02d}_{picture.name}"
        shutil.copyfile(shared / picture, folder / name)
        lines.append(f"{name}\t{CIFAR10_CLASSES.index(label)}")
    (folder / "labels.tsv").write_text("\n".join(lines) + "\n")
    return load_dataset(folder)


@pytest.fixture(scope="module")
def preprocess(shared):
    return get_preset("cifar10-caffe", (1, 3, 32, 32), mean=str(shared / MODEL / "mean.binaryproto"))


def test_class_names_file_is_cifar10s_order(shared):
    assert (shared / MODEL / "batches.meta.txt").read_text().split() == CIFAR10_CLASSES


def test_onnx_model_names_the_pictures(converted, dataset, preprocess):
    """onnxruntime on the converted file, through zoo-eval's evaluate, against the hand labels."""
    _, path = converted
    report = evaluate([path], dataset, preprocess, None, warmup_runs=0, timed_runs=1)
    (score,) = report.models
    print(f"\nCIFAR-10 quick (HDF5) top-1 on {len(PICTURES)} labelled pictures: {score.top1_correct}")
    assert score.samples == len(PICTURES)
    assert score.top1_correct >= MIN_CORRECT, f"{score.top1_correct} of {len(PICTURES)} right"


def test_executor_names_the_folders_own_samples(converted, dataset, preprocess):
    """The Caffe2 executor on the NetDef: the folder's cat and frog pictures (and enough of the rest)."""
    conversion, _ = converted
    right = {}
    for index in range(len(dataset)):
        sample = dataset[index]
        (prob,) = run_net(conversion.caffe2, {"data": preprocess.apply(sample.image)}).values()
        right[sample.name] = int(np.argmax(prob)) == sample.label
    names = [f"{index:02d}_{picture.name}" for index, picture in enumerate(PICTURES)]
    assert all(right[name] for name in names[:len(FOLDER_SAMPLES)]), right
    assert sum(right.values()) >= MIN_CORRECT, right
