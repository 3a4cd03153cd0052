"""Static 8-bit quantization of a float ONNX model with onnxruntime, the way the zoo made its int8/qdq.

The ONNX model zoo published two quantized variants of each classic CNN:

- ``int8``: the QOperator format (``QLinearConv``, quantized matrix products, ``uint8`` activations),
- ``qdq``: the QDQ format (float operators between ``QuantizeLinear``/``DequantizeLinear`` pairs),

both made by ``onnxruntime.quantization.quantize_static`` from a calibration reader. This module
calls it with every setting spelled out (ORT's defaults changed over the years: the format is QDQ
and activations are int8 by default today), then makes the result reproducible and writes it
atomically.

Choices, each checked against onnxruntime 1.32:

- Types: ``uint8`` activations (asymmetric, ``QUInt8``) and ``int8`` weights (symmetric,
  ``QInt8``), ``reduce_range=False``, for both formats. This is what the zoo's int8 used and what
  ORT's own guidance names for x86/x64 CPUs (ORT refuses int8 activations with uint8 weights, and
  warns that int8/int8 in QOperator is slow on x64).
- Per-tensor scales by default (``per_channel=False``), MinMax calibration.
- Softmax is not quantized: a ``QLinearSoftmax`` output has 1/256 resolution, so every class but the
  winner rounds to the same value and top-5 becomes a tie-break over zeros. The graph's last
  quantized product is dequantized and Softmax runs in float, as in the zoo's int8 models.
- ORT writes ``Gemm`` as ``com.microsoft.QGemm`` in the QOperator format (the model then imports
  the ``com.microsoft`` domain; onnxruntime runs it, other runtimes may not).
- Opset: ORT keeps the model's opset from 10 up and (through ``onnx.version_converter``) silently
  moves older models to 11. We never let it: a model below opset 10 is first moved to opset 12 by
  zooforge's own adapters (:func:`zooforge.versioning.convert.convert_opset`), which says so in the result's
  notes; every other model keeps its opset.
- No ``quant_pre_process``: it runs ORT graph optimizations that rename and reorder the graph, while
  zooforge's models already carry full shape inference (the converter checks with it) and have no
  fusable patterns that change what is quantized. The "consider pre-processing" warning ORT logs for
  that is dropped.
- Determinism: ORT derives every new name from the float model's tensor names and MinMax ranges are
  plain min/max over the calibration outputs, so the same model, settings and calibration data give
  byte-identical files (tested). ORT's working files (the shape-inferred copy, the augmented
  calibration model) are made inside one temporary folder that is removed on return, never beside
  the input or the output.
"""

from __future__ import annotations

import logging
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import onnx

from zooforge.converters import finite
from zooforge.converters.api import load_onnx
from zooforge.converters.errors import ZooforgeError
from zooforge.converters.fileio import atomic_write_bytes
from zooforge.converters.safety import check_output_file, owner_tag, remove_stale
from zooforge.versioning.convert import convert_opset, model_opset

__all__ = [
    "EXCLUDED_OP_TYPES",
    "QuantizationError",
    "QuantizeResult",
    "QuantizeSettings",
    "Reader",
    "calibration_reader",
    "model_input",
    "quantize_model",
    "value_range",
]

QuantFormatName = Literal["int8", "qdq"]
FORMATS: tuple[str, ...] = ("int8", "qdq")
#: Operators left in float (see the module notes).
EXCLUDED_OP_TYPES: tuple[str, ...] = ("Softmax",)
#: QuantizeLinear/DequantizeLinear/QLinearConv exist from this opset; ORT upgrades anything older.
MIN_QUANT_OPSET = 10
#: Where a model below MIN_QUANT_OPSET is moved first (the zoo's quantized models are opset 12).
UPGRADE_OPSET = 12
METADATA_KEY = "zooforge.quantization"
#: ORT's own note that it ran shape inference on the model; a working flag, not lineage: dropped.
ORT_INFER_MARKER = "onnx.infer"


class QuantizationError(ZooforgeError):
    """The model cannot be quantized as asked (or onnxruntime refused it)."""


class Reader(Protocol):
    """onnxruntime's ``CalibrationDataReader`` protocol: feeds until ``None``."""

    def get_next(self) -> dict | None: ...  # noqa: D102

    def rewind(self) -> None: ...  # noqa: D102


@dataclass(frozen=True)
class QuantizeSettings:
    """Everything that decides the quantized model's bytes, besides the model and the data."""

    format: QuantFormatName
    samples: int = 100
    seed: int = 0
    per_channel: bool = False
    calibrate_method: Literal["MinMax"] = "MinMax"

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise QuantizationError(f"unknown quantization format {self.format!r}: choose int8 or qdq")
        if self.samples < 1:
            raise QuantizationError(f"calibration needs at least 1 sample, not {self.samples}")
        if self.calibrate_method != "MinMax":
            raise QuantizationError(f"calibration method {self.calibrate_method!r} is not supported (MinMax)")

    def describe(self) -> str:
        channel = "per-channel" if self.per_channel else "per-tensor"
        return (f"{self.format} ({'QOperator' if self.format == 'int8' else 'QDQ'}), uint8 activations, "
                f"int8 weights, {channel}, {self.calibrate_method} over {self.samples} samples (seed {self.seed})")


@dataclass
class QuantizeResult:
    """What :func:`quantize_model` wrote."""

    output: Path
    settings: QuantizeSettings
    source_opset: int
    opset: int
    op_counts: dict[str, int]
    calibration_samples: int
    size_bytes: int
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "output": str(self.output),
            "format": self.settings.format,
            "samples": self.settings.samples,
            "seed": self.settings.seed,
            "per_channel": self.settings.per_channel,
            "calibrate_method": self.settings.calibrate_method,
            "calibration_samples": self.calibration_samples,
            "source_opset": self.source_opset,
            "opset": self.opset,
            "op_counts": dict(self.op_counts),
            "size_bytes": self.size_bytes,
            "notes": list(self.notes),
        }


class _CountingReader:
    """Wraps a reader to count the feeds onnxruntime actually consumed."""

    def __init__(self, inner: Reader) -> None:
        self.inner = inner
        self.count = 0

    def get_next(self) -> dict | None:
        feed = self.inner.get_next()
        if feed is not None:
            self.count += 1
        return feed

    def rewind(self) -> None:
        self.count = 0
        self.inner.rewind()

    def __iter__(self) -> Iterator[dict]:  # ORT's SmoothQuant path iterates; harmless otherwise
        while (feed := self.get_next()) is not None:
            yield feed


TEMP_PREFIX = "zooforge-quantize."
_COMPUTED_WEIGHTS = ("ConstantOfShape",)


def quantize_model(model_path: Path, output: Path, settings: QuantizeSettings, reader: Reader) -> QuantizeResult:
    """Quantize the float model at ``model_path`` into ``output`` (written whole or not at all)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static  # noqa: PLC0415
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry  # noqa: PLC0415

    model_path, output = Path(model_path), Path(output)
    model = _load(model_path)
    check_output_file(output, [model_path])

    notes: list[str] = []
    source_opset = model_opset(model)
    if source_opset < MIN_QUANT_OPSET:
        model = convert_opset(model, UPGRADE_OPSET)
        notes.append(f"the model is opset {source_opset}, below the quantization operators' opset "
                     f"{MIN_QUANT_OPSET}: moved to opset {UPGRADE_OPSET} first")
    _check_float_model(model, model_path)

    registry = QLinearOpsRegistry if settings.format == "int8" else QDQRegistry
    op_types = sorted(set(registry) - set(EXCLUDED_OP_TYPES))
    counting = _CountingReader(reader)
    remove_stale(Path(tempfile.gettempdir()), TEMP_PREFIX)  # the leftovers of killed quantizations
    with tempfile.TemporaryDirectory(prefix=f"{TEMP_PREFIX}{owner_tag()}-") as work, _quiet_ort_preprocess_hint():
        source = Path(work) / "model.onnx"
        target = Path(work) / "quantized.onnx"
        onnx.save_model(model, str(source))
        del model
        try:
            quantize_static(
                source,
                target,
                counting,
                quant_format=QuantFormat.QOperator if settings.format == "int8" else QuantFormat.QDQ,
                op_types_to_quantize=op_types,
                per_channel=settings.per_channel,
                reduce_range=False,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_quantize=None,
                nodes_to_exclude=None,
                use_external_data_format=False,
                calibrate_method=CalibrationMethod.MinMax,
                calibration_providers=["CPUExecutionProvider"],
                extra_options={},
                calibration_cache_path=None,
            )
        except (ValueError, RuntimeError) as exc:  # ORT reports bad feeds/graphs as these
            raise QuantizationError(f"onnxruntime could not quantize {model_path}: {exc}") from None
        if counting.count == 0:
            raise QuantizationError("the calibration reader gave no inputs")
        quantized = onnx.load(str(target))

    _stamp(quantized, settings, counting.count)
    payload = quantized.SerializeToString(deterministic=True)
    atomic_write_bytes(output, payload)
    opset = model_opset(quantized)
    if opset != (source_opset if source_opset >= MIN_QUANT_OPSET else UPGRADE_OPSET):
        notes.append(f"onnxruntime moved the model from opset {source_opset} to {opset}")
    return QuantizeResult(
        output=output,
        settings=settings,
        source_opset=source_opset,
        opset=opset,
        op_counts=dict(sorted(Counter(n.op_type for n in quantized.graph.node).items())),
        calibration_samples=counting.count,
        size_bytes=len(payload),
        notes=notes,
    )


def _load(path: Path) -> onnx.ModelProto:
    """The model, checked at its declared opset (see ``zooforge.converters.api.load_onnx``)."""
    return load_onnx(path)


def _check_float_model(model: onnx.ModelProto, path: Path) -> None:
    ops = {n.op_type for n in model.graph.node}
    already = ops & {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "QGemm"}
    if already:
        raise QuantizationError(f"{path} is already quantized (it has {', '.join(sorted(already))} nodes)")
    computed = sorted({n.output[0] for n in model.graph.node if n.op_type in _COMPUTED_WEIGHTS})
    if computed:
        raise QuantizationError(
            f"{path} computes tensors such as {computed[0]!r} with {'/'.join(_COMPUTED_WEIGHTS)} nodes (a "
            "'light' model without its weights?); quantization needs the weights as initializers")
    try:
        finite.check_onnx(model, str(path))
    except finite.NonFiniteWeightsError as exc:
        raise QuantizationError(f"{exc}".replace(finite.ALLOW_HINT, "such a model cannot be quantized")) from None
    initializers = {i.name for i in model.graph.initializer}
    for graph_input in model.graph.input:
        elem = graph_input.type.tensor_type.elem_type
        if graph_input.name not in initializers and elem != onnx.TensorProto.FLOAT:
            raise QuantizationError(f"{path}: input {graph_input.name!r} is not float32; only float models "
                                    "can be quantized")


def _stamp(model: onnx.ModelProto, settings: QuantizeSettings, samples: int) -> None:
    """Record how the model was made; keep ORT's producer name and the float model's lineage."""
    import onnxruntime  # noqa: PLC0415

    props = {p.key: p.value for p in model.metadata_props if p.key != ORT_INFER_MARKER}
    props[METADATA_KEY] = (f"{settings.describe()}; calibrated on {samples} inputs; "
                           f"onnxruntime {onnxruntime.__version__} quantize_static")
    del model.metadata_props[:]
    for key in sorted(props):
        model.metadata_props.add(key=key, value=props[key])


class _DropPreprocessHint(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-process" not in record.getMessage()


@contextmanager
def _quiet_ort_preprocess_hint() -> Iterator[None]:
    """ORT logs 'consider pre-processing' on the root logger for every call: we decided not to."""
    root = logging.getLogger()
    hint = _DropPreprocessHint()
    root.addFilter(hint)
    try:
        yield
    finally:
        root.removeFilter(hint)


def model_input(model_path: Path) -> tuple[str, list[int | str | None]]:
    """The float model's one image input: its name and (N, C, H, W) dims (symbolic ones as names)."""
    model = _load(Path(model_path))
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise QuantizationError(f"{model_path} has {len(inputs)} inputs; calibration feeds exactly one")
    dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
            for d in inputs[0].type.tensor_type.shape.dim]
    return inputs[0].name, dims


def value_range(preprocess) -> tuple[float, float]:  # noqa: ANN001 - zooforge.artifacts.quantization.preprocess.Preprocess
    """[low, high) of the values ``preprocess`` can produce, from its pixel range, mean and scale.

    Pixels span 0..255 (0..1 with ``pixel_range="0-1"``); the widest channel after subtracting the
    mean (per-channel values, or the extremes of a mean image) times the scale gives the range:
    mnist -> [0, 0.996), inc-alexnet -> [-123.68, 151.06). Seeded calibration draws from it.
    """
    import numpy as np  # noqa: PLC0415

    top = 1.0 if getattr(preprocess, "pixel_range", "0-255") == "0-1" else 255.0
    mean = preprocess.mean
    if mean is None:
        means = [0.0]
    elif isinstance(mean, str):
        from zooforge.artifacts.quantization.preprocess import load_mean_file  # noqa: PLC0415

        array = load_mean_file(mean) / (255.0 if top == 1.0 else 1.0)
        means = [float(np.min(array)), float(np.max(array))]
    else:
        means = [float(m) for m in mean]
    scale = float(preprocess.scale)
    ends = [(0.0 - m) * scale for m in means] + [(top - m) * scale for m in means]
    return min(ends), max(ends)


def calibration_reader(model_path: Path, settings: QuantizeSettings, preprocess=None,  # noqa: ANN001
                       dataset=None) -> tuple[Reader, str]:  # noqa: ANN001
    """The reader for ``settings``: ``settings.samples`` images of ``dataset`` chosen by
    ``settings.seed`` (:func:`zooforge.artifacts.quantization.datasets.deterministic_subset`) through ``preprocess``, or,
    without a dataset, ``settings.samples`` seeded uniform inputs in ``value_range(preprocess)``.
    Returns the reader and a one-line description of it."""
    from zooforge.artifacts.quantization.preprocess import CalibrationReader, SeededReader  # noqa: PLC0415

    name, dims = model_input(model_path)
    if dataset is not None:
        if preprocess is None:
            raise QuantizationError("calibration images need a preprocessing (--preprocess)")
        from zooforge.artifacts.quantization.datasets import deterministic_subset  # noqa: PLC0415

        indices = deterministic_subset(dataset, settings.samples, settings.seed)
        return (CalibrationReader(dataset, preprocess, name, indices, dims),
                f"calibration: {len(indices)} images of {dataset.root} (seed {settings.seed})")
    if preprocess is None:
        raise QuantizationError("without calibration data, give --preprocess so the seeded inputs "
                                "span the values the model expects")
    low, high = value_range(preprocess)
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in dims]
    return (SeededReader(name, shape, low, high, settings.samples, settings.seed),
            f"no calibration data: using {settings.samples} seeded inputs in [{low:g}, {high:g})")
