"""What the release README's zoo sections say, from the build's options, source and results.

:func:`section_facts` gathers the facts the README's Description, Dataset, Pre- and
Post-processing, Sample test data, Quantization and License sections hold (see
:mod:`zooforge.artifacts.release.readme`), as keyword arguments of ``ReleaseFacts``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnx

from zooforge.artifacts.quantization.preprocess import get_preset
from zooforge.artifacts.quantization.quantize import QuantizeSettings
from zooforge.artifacts.release.readme import read_text_file


def section_facts(options: Any, source: Any, graph: onnx.ModelProto, sample_files: Sequence[str],
                  records: Sequence[dict], base_model: str | None) -> dict[str, Any]:
    """``ReleaseFacts`` fields for ``options`` (ReleaseOptions), ``source`` (ReleaseSource), the fp32
    ``graph``, one tarball's members, the parity ``records`` and the quantized variants' fp32 file."""
    return {
        "description": read_text_file(options.description, "--description"),
        "about": source.about,
        "license": read_text_file(options.license, "--license"),
        "dataset": dataset_lines(options),
        "preset": options.preprocess,
        "preprocessing": preprocessing_steps(options.preprocess, next(iter(source.input_shapes.values())))
        if options.preprocess else (),
        "postprocessing": postprocessing_lines(graph),
        "sample_files": tuple(sample_files),
        "quantization": quantization_lines(options, records, base_model),
    }


def dataset_lines(options: Any) -> list[str]:
    lines = []
    if options.eval_dataset is not None:
        limit = f" (the first {options.eval_limit} images)" if options.eval_limit else ""
        lines.append(f"Accuracy: measured on `{Path(options.eval_dataset).name}`{limit}.")
    if options.calibration is not None and options.quantize:
        lines.append(f"Calibration: {options.calibration_samples} images of `{Path(options.calibration).name}` "
                     f"(a subset drawn with seed {options.recipe.seed}).")
    return lines


def preprocessing_steps(preset: str, input_shape: Sequence[Any]) -> list[str]:
    """The preset's steps, in the order they run (``Preprocess.describe``)."""
    described = get_preset(preset, input_shape).describe()
    steps = described.split(": ", 1)[1].split(" -> ")
    return ["decode the image (Pillow)", f"convert to {steps[0]}", *steps[1:]]


def postprocessing_lines(graph: onnx.ModelProto) -> list[str]:
    """What each output holds, from the operator that computes it."""
    producer = {output: node.op_type for node in graph.graph.node for output in node.output}
    lines = []
    for value in graph.graph.output:
        dims = [d.dim_value for d in value.type.tensor_type.shape.dim]
        op = producer.get(value.name, "graph input")
        if op == "Softmax":
            classes = f"its {dims[-1]} classes" if dims and dims[-1] > 0 else "the classes"
            lines.append(f"`{value.name}` holds probabilities over {classes} (the graph ends in Softmax): the "
                         "top-1 class is its argmax, the top-5 classes its five largest values; no further "
                         "step is needed.")
        else:
            lines.append(f"`{value.name}` is the {op} output as it is (no Softmax in the graph): apply one "
                         "for probabilities.")
    return lines


def quantization_lines(options: Any, records: Sequence[dict], base_model: str | None) -> list[str]:
    lines = []
    for record in records:
        if "format" not in record:
            continue
        settings = QuantizeSettings(record["format"], samples=options.calibration_samples, seed=options.recipe.seed)
        agreement = record["top1_agreement"]
        lines.append(
            f"- `{record['variant']}.onnx`: {settings.describe()}, made from `{base_model}` with onnxruntime's "
            f"quantize_static; calibrated on {record['calibration']}; its top-1 class agrees with fp32 on "
            f"{agreement['test']['agree']}/{agreement['test']['total']} test inputs and "
            f"{agreement['calibration']['agree']}/{agreement['calibration']['total']} calibration inputs."
        )
    if lines:
        import onnxruntime

        lines = ["The quantized variants are made by zooforge (not Intel Neural Compressor, which made the zoo's):",
                 "", *lines, "", f"Environment: onnx {onnx.__version__}, onnxruntime {onnxruntime.__version__}."]
    return lines
