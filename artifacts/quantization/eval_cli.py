"""``zoo-eval``: a thin command over :func:`zooforge.artifacts.quantization.evaluate.evaluate`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from zooforge.artifacts.quantization.evaluate import EvalReport, evaluate
from zooforge.converters.cli import run_reporting_errors, zoo_command
from zooforge.converters.errors import InputFileError
from zooforge.converters.fileio import atomic_write_bytes


def _table(report: EvalReport) -> list[str]:
    width = max(5, *(len(m.name) for m in report.models))
    head = f"{'model':<{width}}  {'top-1 %':>8}  {'top-5 %':>8}  {'1 thread ms':>11}  {'all threads ms':>14}"
    rows = [head, "-" * len(head)]
    for m in report.models:
        rows.append(f"{m.name:<{width}}  {m.top1 * 100:8.2f}  {m.top5 * 100:8.2f}  "
                    f"{m.latency_1thread_ms:11.3f}  {m.latency_all_threads_ms:14.3f}")
    return rows


@zoo_command(
    examples=[
        "zoo-eval lenet.onnx lenet-int8.onnx lenet-qdq.onnx --dataset ../shared/data/mnist_t10k --preprocess mnist",
        "zoo-eval alexnet.onnx alexnet-int8.onnx --dataset imagenet_samples --preprocess inc-alexnet "
        "--limit 50 --json eval.json",
    ],
    exit_codes={0: "evaluated: the table printed (and written with --json)"},
)
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--dataset", type=click.Path(path_type=Path), required=True,
              help="Labelled images: an MNIST idx folder or a folder with labels.tsv.")
@click.option("--preprocess", "preset", required=True, metavar="PRESET",
              help="Preprocessing preset (mnist, inc-alexnet, caffe-imagenet, cifar10-caffe).")
@click.option("--limit", type=click.IntRange(min=1), help="Evaluate only the first N samples.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Also write the report as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@run_reporting_errors
def main(models: tuple[Path, ...], dataset: Path, preset: str, limit: int | None, json_path: Path | None,
         quiet: bool) -> None:
    """Top-1/top-5 accuracy and batch-1 latency of MODELS on one dataset (onnxruntime, CPU).

    The first MODEL is the reference (fp32): each later one gets a line with its accuracy drop
    ratios and its one-thread speed-up against it. Latency is the median of 50 runs after 5
    warm-ups, with one intra-op thread and with all threads.
    """
    from zooforge.artifacts.quantization.datasets import load_dataset  # noqa: PLC0415
    from zooforge.artifacts.quantization.preprocess import get_preset  # noqa: PLC0415
    from zooforge.artifacts.quantization.quantize import model_input  # noqa: PLC0415

    data = load_dataset(dataset)
    _, dims = model_input(models[0])
    preprocess = get_preset(preset, dims)
    count = len(data) if limit is None else min(limit, len(data))
    with click.progressbar(length=count, label="evaluating", file=sys.stderr,
                           hidden=quiet) as bar:
        report = evaluate(models, data, preprocess, limit, progress=bar.update)
    if json_path is not None:
        try:
            text = json.dumps(report.to_dict(), indent=2, allow_nan=False)  # JSON has no NaN
            atomic_write_bytes(json_path, (text + "\n").encode())
        except OSError as exc:
            raise InputFileError(f"cannot write the report {json_path}: {exc.strerror or exc}") from None
    click.echo(f"{report.samples} samples of {report.dataset}; {report.preprocess}")
    for row in _table(report):
        click.echo(row)
    for sentence in report.sentences():
        click.echo(sentence)


if __name__ == "__main__":
    main()
