"""``zoo-quantize``: a thin command over :func:`zooforge.artifacts.quantization.quantize.quantize_model`."""

from __future__ import annotations

from pathlib import Path

import click

from zooforge.artifacts.quantization.quantize import QuantizeSettings, calibration_reader, model_input, quantize_model
from zooforge.converters.cli import run_reporting_errors, zoo_command
from zooforge.converters.safety import check_output_file


@zoo_command(
    examples=[
        "zoo-quantize lenet.onnx --format int8 --calibration ../shared/data/mnist_t10k --preprocess mnist "
        "-o lenet-int8.onnx",
        "zoo-quantize alexnet.onnx --format qdq --preprocess inc-alexnet --samples 20 -o alexnet-qdq.onnx",
    ],
    exit_codes={0: "quantized: the model was written"},
)
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["int8", "qdq"]), required=True,
              help="int8: QOperator (QLinearConv, QGemm/QLinearMatMul); qdq: QuantizeLinear/DequantizeLinear "
                   "around float operators. Both: uint8 activations, int8 weights, per-tensor, MinMax.")
@click.option("--calibration", type=click.Path(path_type=Path), metavar="DATASET",
              help="Calibration images: an MNIST idx folder or a folder with labels.tsv. Without it, "
                   "seeded random inputs spanning the preset's value range are used.")
@click.option("--preprocess", "preset", metavar="PRESET",
              help="Preprocessing preset (mnist, inc-alexnet, caffe-imagenet, cifar10-caffe).")
@click.option("--samples", type=click.IntRange(min=1), default=100, show_default=True,
              help="Calibration inputs.")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1000), default=0, show_default=True,
              help="Chooses the calibration images / inputs.")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Quantized ONNX file.")
@run_reporting_errors
def main(model: Path, fmt: str, calibration: Path | None, preset: str | None, samples: int, seed: int,
         output: Path) -> None:
    """Quantize a float ONNX model to 8 bits with onnxruntime's static quantization."""
    from zooforge.artifacts.quantization.datasets import load_dataset  # noqa: PLC0415
    from zooforge.artifacts.quantization.preprocess import get_preset  # noqa: PLC0415

    settings = QuantizeSettings(fmt, samples=samples, seed=seed)
    check_output_file(output, [model])  # before any work: never over the input, a device or a link
    _, dims = model_input(model)
    preprocess = get_preset(preset, dims) if preset else None
    dataset = load_dataset(calibration) if calibration is not None else None
    reader, description = calibration_reader(model, settings, preprocess, dataset)
    click.echo(description, err=True)
    result = quantize_model(model, output, settings, reader)
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(f"wrote {output} ({settings.describe()}; opset {result.opset}, "
               f"{result.size_bytes / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
