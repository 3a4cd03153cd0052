"""``zoo-package``: a thin command over ``zooforge.artifacts.release.build.build_release``."""

from __future__ import annotations

import math
import re
import sys
import time
from pathlib import Path

import click
import numpy as np

from zooforge.artifacts.release.build import (
    DEFAULT_OPSETS, ReleaseOptions, build_release, name_problem, source_date_epoch, title_problem,
)
from zooforge.artifacts.release.manifest import model_path_prefix as parse_prefix
from zooforge.artifacts.release.source import release_source
from zooforge.artifacts.release.testdata import InputRecipe
from zooforge.artifacts.validation.parity import Tolerance
from zooforge.converters import api
from zooforge.converters.cli import (
    FiniteFloat, allow_non_finite_option, optimize_option, parse_input_shapes, run_reporting_errors, source_options, source_spec,
    synthetic_options, zoo_command,
)


PORT_PATTERN = re.compile(r"(?P<group>[A-Za-z0-9_-]+)=(?P<tensor>[^\s=][^\s]*)")
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _input_range(value: str) -> tuple[float, float]:
    """``LOW,HIGH``: finite, LOW < HIGH, both within float32 (test inputs are float32)."""
    try:
        low, high = (float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"--input-range {value!r} is not LOW,HIGH (two comma-separated numbers)") from None
    if not (math.isfinite(low) and math.isfinite(high)) or max(abs(low), abs(high)) > FLOAT32_MAX:
        raise click.BadParameter(f"--input-range {value!r} must be finite numbers within float32's range")
    if not low < high:
        raise click.BadParameter(f"--input-range {value!r}: LOW must be smaller than HIGH")
    return low, high


def _opsets(value: str) -> tuple[int, ...]:
    try:
        opsets = tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"--opsets {value!r} is not comma-separated whole numbers such as 7,9,12") from None
    if len(set(opsets)) != len(opsets):
        raise click.BadParameter(f"--opsets {value!r} names an opset twice")
    return opsets


def _extra_ports(values: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """``GROUP=TENSOR`` values of --extra-port, e.g. features=fc7_1."""
    ports = []
    for value in values:
        match = PORT_PATTERN.fullmatch(value)
        if match is None:
            raise click.BadParameter(f"--extra-port {value!r} is not GROUP=TENSOR, such as features=fc7_1")
        ports.append((match["group"], match["tensor"]))
    return tuple(ports)


def _title(value: str | None) -> str | None:
    if problem := title_problem(value):
        raise click.BadParameter(f"--title {value!r} {problem}")
    return value


def _name(value: str) -> str:
    if problem := name_problem(value):
        raise click.BadParameter(f"--name {value!r} {problem}")
    return value


@zoo_command(
    examples=[
        "zoo-package                  # the built-in AlexNet (synthetic weights) into release/",
        "zoo-package deploy.prototxt bvlc_alexnet.caffemodel --name bvlcalexnet --out release/",
        "zoo-package lenet.prototxt lenet_iter_10000.caffemodel --name lenet --input-range 0,1 --dynamic-batch",
        "zoo-package bvlcalexnet-9.onnx --name bvlcalexnet --opsets 7,12,17",
        "zoo-package lenet.prototxt --synthetic-weights --weights-seed 7 --name lenet --input-range 0,1 --opsets 9,12",
    ],
    exit_codes={0: "built: every variant matches the source; the release is in place",
                2: "bad input or usage, or a variant fails parity (named); --out is left as it was"},
)
@source_options("A model shipped with zooforge (default when no MODEL: alexnet, with SYNTHETIC weights).")
@click.option("--name", default="bvlcalexnet", show_default=True, help="File name stem: <name>-<opset>.onnx.")
@click.option("--opsets", default=",".join(map(str, DEFAULT_OPSETS)), show_default=True,
              help="Comma-separated opsets, one variant each.")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="[NAME=]N,C,H,W", help="Input shape.")
@click.option("--compat", type=click.Choice(["zoo"]), default=None,
              help="Reproduce the ONNX zoo's published graph (deviates from Caffe's pooling at 224).")
@click.option("--names", type=click.Choice(["zoo", "caffe"]), default="zoo", show_default=True,
              help="zoo: Caffe2 SSA names as the ONNX zoo (data_0, prob_1); caffe: plain blob names (data, prob).")
@click.option("--dynamic-batch", is_flag=True,
              help="Make the batch dimension symbolic (N) in every variant; test sets stay batch 1.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("release"), show_default=True,
              help="Release folder; replaced only once the new release is complete.")
@click.option("--test-sets", type=click.IntRange(1, 1000), default=3, show_default=True,
              help="Number of test sets per variant.")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1000), default=0, show_default=True,
              help="Seed of the first test set's inputs.")
@click.option("--input-range", default=None, metavar="LOW,HIGH",
              help="Range of the uniform test inputs; default -128,128 for the built-in AlexNet, else -1,1.")
@click.option("--rtol", type=FiniteFloat(), default=1e-3, show_default=True, help="Parity tolerance (relative).")
@click.option("--atol", type=FiniteFloat(), default=1e-7, show_default=True, help="Parity tolerance (absolute).")
@click.option("--quantize", default="int8,qdq", show_default=True,
              help="Quantized variants of the opset-12 model: int8 (QOperator), qdq, or 'none'.")
@click.option("--calibration", type=click.Path(path_type=Path), metavar="DATASET",
              help="Calibration images (a folder with labels.tsv, or MNIST idx files); default: seeded "
                   "inputs in the --input-range.")
@click.option("--calibration-samples", type=click.IntRange(min=1), default=100, show_default=True,
              help="Calibration images to use.")
@click.option("--eval-dataset", type=click.Path(path_type=Path), metavar="DATASET",
              help="Labelled images for the README's top-1/top-5 columns.")
@click.option("--preprocess", metavar="PRESET",
              help="Preprocessing of calibration and evaluation images: inc-alexnet, caffe-imagenet, mnist, ...")
@click.option("--eval-limit", type=click.IntRange(min=1), default=None, help="Evaluate only the first N images.")
@click.option("--measure-speed", is_flag=True,
              help="Add the quantized models' speed-up to the README (machine-dependent: not reproducible).")
@click.option("--sign-key", type=click.Path(path_type=Path), metavar="PEM",
              help="EC private key: sign the finished release with model-signing (writes release.sig; "
                   "needs zooforge[sign]). Check with zoo-verify RELEASE --public-key PUB.")
@click.option("--title", default=None,
              help="The model's name in the manifest and README (the zoo's: AlexNet); default: the source's "
                   "(AlexNet for the built-in, else the net's name). Its lowercase is the model's own tag.")
@click.option("--extra-port", "extra_ports", multiple=True, metavar="GROUP=TENSOR",
              help="A feature output for the manifest's extra_ports, e.g. features=fc7_1 (repeatable).")
@click.option("--model-path-prefix", default="", metavar="FOLDER/",
              help="Repository folder before the manifest's paths, e.g. "
                   "validated/vision/classification/alexnet/model/ (zoo-verify and zoo-validate find the "
                   "files by name in the release folder).")
@click.option("--description", type=click.Path(exists=True, dir_okay=False, path_type=Path), metavar="FILE",
              help="The source model's readme: its text becomes the README's Description.")
@click.option("--license", "license_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              metavar="FILE", help="The source model's licence text, included under the README's License.")
@synthetic_options("scaled for the --input-range (default -1,1), their softmax neither uniform nor "
                   "saturated; manifest, README and provenance say synthetic. --seed seeds the test inputs only")
@allow_non_finite_option
@optimize_option
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
@run_reporting_errors
def main(model, weights, builtin, init_net, value_info, name, opsets, input_shapes, compat, names, dynamic_batch,
         out, test_sets,
         seed, input_range, rtol, atol, quantize, calibration, calibration_samples, eval_dataset, preprocess,
         eval_limit, measure_speed, sign_key, title, extra_ports, model_path_prefix: str, description,
         license_file, synthetic_weights, weights_seed, allow_non_finite, optimize, quiet) -> None:  # noqa: ANN001
    """Build a complete model release: every opset variant with test data, tarballs, README table,
    manifest, checksums and a parity report. Every variant must match the source model (the Caffe2
    executor for Caffe and NetDef sources, the source model for ONNX) or nothing is written.
    Quantized variants (int8, qdq) come from the opset-12 model; their test sets hold their own
    outputs and the parity report records their top-1 agreement with fp32.

    Timestamps come from SOURCE_DATE_EPOCH (default 0), so two builds give identical bytes.
    """
    options = api.ConvertOptions(names=names, input_shapes=parse_input_shapes(input_shapes),
                                 dynamic_batch=dynamic_batch, compat=compat, allow_non_finite=allow_non_finite)
    name = _name(name)
    parsed_opsets = _opsets(opsets)
    parsed_range = _input_range(input_range) if input_range else None
    spec = source_spec(model, weights, builtin, init_net, value_info, default_builtin="alexnet",
                       synthetic_weights=synthetic_weights, weights_seed=weights_seed, input_range=parsed_range)
    source = release_source(spec, options)
    low, high = parsed_range or source.input_range
    release = ReleaseOptions(
        name=name,
        opsets=parsed_opsets,
        test_sets=test_sets,
        recipe=InputRecipe(seed, low, high),
        tolerance=Tolerance(rtol, atol),
        source_date_epoch=source_date_epoch(),
        quantize=() if quantize.strip().lower() in ("", "none") else tuple(f.strip() for f in quantize.split(",")),
        calibration=calibration,
        calibration_samples=calibration_samples,
        eval_dataset=eval_dataset,
        preprocess=preprocess,
        eval_limit=eval_limit,
        measure_speed=measure_speed,
        sign_key=sign_key,
        optimize=optimize,
        title=_title(title),
        extra_ports=_extra_ports(extra_ports),
        model_path_prefix=parse_prefix(model_path_prefix),
        description=description,
        license=license_file,
    )
    unknown = set(release.quantize) - {"int8", "qdq"}
    if unknown:
        raise click.BadParameter(f"unknown quantized format(s) {sorted(unknown)}; use int8, qdq or none")
    if (calibration or eval_dataset) and not preprocess:
        raise click.UsageError("--calibration and --eval-dataset need --preprocess PRESET")
    started = time.perf_counter()
    steps = 4 + len(release.opsets) + len(release.quantize) + (1 if eval_dataset else 0) + (1 if sign_key else 0)
    if quiet:
        summary = build_release(source, release, out)
    else:
        with click.progressbar(length=steps, label="zoo-package", file=sys.stderr,
                               show_eta=False, item_show_func=lambda item: item) as bar:
            summary = build_release(source, release, out, progress=lambda message: bar.update(1, message))
    size = sum(path.stat().st_size for path in summary.files) / 2**20
    click.echo(f"wrote {summary.out}: {len(release.opsets) + len(release.quantize)} variants, {len(summary.files)} files, "
               f"{size:.0f} MiB in {time.perf_counter() - started:.1f} s; all variants match the source")


if __name__ == "__main__":
    main()
