#!/usr/bin/env python3
"""How far a release's int8 (QOperator) and QDQ outputs move between onnxruntime kernel paths.

The ONNX zoo's int8 test data only reproduce on CPUs like the one that made them (onnx/models
#522, #526, #533, #568): on x86 without VNNI, MLAS multiplies uint8 by int8 with VPMADDUBSW, which
adds pairs of products into a saturating int16; VNNI (VPDPBUSD) and AMX accumulate in int32
without saturation. MLAS picks its kernels from CPUID when it loads and has no switch or
environment variable that masks CPU features, so this script runs every path this machine and
onnxruntime offer, and one that computes what an exact-int32 (VNNI/AMX-like) CPU computes:

* ``ort-default``: the session the release's test data came from (default options);
* ``ort-1-thread``, ``ort-no-spinning``, ``ort-no-prepack`` (``session.disable_prepacking``);
* ``ort-basic`` / ``ort-disable-all`` (graph optimisation levels) and ``ort-no-qdq-fusion``
  (``session.disable_quant_qdq``): a QDQ model then runs DequantizeLinear -> fp32 Conv/Gemm ->
  QuantizeLinear instead of fused integer kernels;
* ``exact-int32``: onnx's reference evaluator, whose QLinearConv accumulates in exact int32, with
  a NumPy ``com.microsoft.QGemm`` doing the same (the QDQ model runs in fp32 there).

For each model and path it reports, against ``ort-default`` on the same inputs: the largest drift
of the quantized logits (the integer tensor the final DequantizeLinear reads) in quantization
steps, the output steps the validator's rule needs (:mod:`zooforge.artifacts.validation.quantized`),
the largest absolute change of the output, and top-1 agreement. Inputs: the release's test sets
plus ``--inputs`` seeded inputs in the recipe's range (and MNIST test images for LeNet).

    python benchmarks/int8_cross_cpu.py                    # LeNet (../shared), a few seconds
    python benchmarks/int8_cross_cpu.py --alexnet          # also the built-in AlexNet (~2 min)
    python benchmarks/int8_cross_cpu.py --json drift.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun

from zooforge.artifacts.quantization.cpu import cpu_record
from zooforge.artifacts.release.build import ReleaseOptions, build_release
from zooforge.artifacts.release.source import builtin_source, caffe_source
from zooforge.artifacts.release.testdata import InputRecipe
from zooforge.artifacts.validation.quantized import QuantizedRule, output_steps, steps_needed
from zooforge.converters.api import ConvertOptions

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


class QGemm(OpRun):
    """``com.microsoft.QGemm`` with exact int32 accumulation (what VNNI and AMX compute)."""

    op_domain = "com.microsoft"

    def _run(self, a, a_scale, a_zp, b, b_scale, b_zp, c=None, y_scale=None, y_zp=None,  # noqa: ANN001, ANN202
             alpha=None, transA=None, transB=None):  # noqa: N803
        a32 = a.astype(np.int64) - np.int64(a_zp)
        b32 = b.astype(np.int64) - np.asarray(b_zp, dtype=np.int64)
        a32 = a32.T if transA else a32
        b32 = b32.T if transB else b32
        acc = a32 @ b32 + (0 if c is None else c.astype(np.int64))
        real = acc.astype(np.float64) * (1.0 if alpha is None else float(alpha)) * np.float64(a_scale) \
            * np.asarray(b_scale, np.float64)
        if y_scale is None:
            return (real.astype(np.float32),)
        info = np.iinfo(y_zp.dtype)
        q = np.rint(real / np.float64(y_scale)) + np.int64(y_zp)
        return (np.clip(q, info.min, info.max).astype(y_zp.dtype),)


def _with_logits(model: onnx.ModelProto) -> tuple[onnx.ModelProto, str | None]:
    """The model with the integer tensor its last DequantizeLinear reads as an extra output."""
    dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] not in
          {t.name for t in model.graph.initializer}]
    if not dq:
        return model, None
    name = dq[-1].input[0]
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    copy.graph.output.append(onnx.ValueInfoProto(name=name))
    return copy, name


def _ort(options: dict, level=ort.GraphOptimizationLevel.ORT_ENABLE_ALL, threads: int = 0):  # noqa: ANN001, ANN202
    def make(payload: bytes):  # noqa: ANN202
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.graph_optimization_level = level
        so.intra_op_num_threads = threads
        for key, value in options.items():
            so.add_session_config_entry(key, value)
        session = ort.InferenceSession(payload, so, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        return lambda feed: dict(zip(names, session.run(names, feed)))
    return make


def _exact(payload: bytes):  # noqa: ANN202
    proto = onnx.load_from_string(payload)
    # The reference evaluator implements (De)QuantizeLinear from opset 19 only; for these models
    # (per-tensor scales, Softmax over a [N, C] tensor) opset 12 and 19 mean the same.
    for entry in proto.opset_import:
        if entry.domain in ("", "ai.onnx"):
            entry.version = max(entry.version, 19)
    ref = ReferenceEvaluator(proto, new_ops=[QGemm])
    names = [o.name for o in proto.graph.output]
    return lambda feed: dict(zip(names, ref.run(names, feed)))


PATHS = {
    "ort-default": _ort({}),
    "ort-1-thread": _ort({}, threads=1),
    "ort-no-spinning": _ort({"session.intra_op.allow_spinning": "0"}),
    "ort-no-prepack": _ort({"session.disable_prepacking": "1"}),
    "ort-no-qdq-fusion": _ort({"session.disable_quant_qdq": "1"}),
    "ort-basic": _ort({}, level=ort.GraphOptimizationLevel.ORT_ENABLE_BASIC),
    "ort-disable-all": _ort({}, level=ort.GraphOptimizationLevel.ORT_DISABLE_ALL),
    "exact-int32": _exact,
}


def _inputs(release: Path, stem: str, name: str, shape: list[int], count: int, recipe: InputRecipe,
            mnist: bool) -> list[dict]:
    import tarfile  # noqa: PLC0415

    feeds = []
    with tarfile.open(release / f"{stem}.tar.gz") as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            if member.name.endswith("/input_0.pb"):
                tensor = onnx.TensorProto()
                tensor.ParseFromString(tar.extractfile(member).read())
                feeds.append({name: onnx.numpy_helper.to_array(tensor)})
    rng = np.random.default_rng(12345)
    feeds += [{name: rng.uniform(recipe.low, recipe.high, shape).astype(np.float32)} for _ in range(count)]
    if mnist and (SHARED / "data" / "mnist_t10k").is_dir():
        from zooforge.artifacts.quantization.datasets import load_dataset  # noqa: PLC0415
        from zooforge.artifacts.quantization.preprocess import get_preset  # noqa: PLC0415

        dataset = load_dataset(SHARED / "data" / "mnist_t10k")
        preprocess = get_preset("mnist", shape)
        feeds += [{name: _mnist(dataset, preprocess, i)} for i in range(min(count, len(dataset)))]
    return feeds


def _mnist(dataset, preprocess, index: int) -> np.ndarray:  # noqa: ANN001
    return np.asarray(preprocess.apply(dataset[index].image), dtype=np.float32).reshape(1, 1, 28, 28)


def reduce_range_variant(release: Path, name: str, fmt: str, recipe: InputRecipe, out: Path) -> Path:
    """The release's opset-12 model quantized as the release does, but with 7-bit weights
    (``reduce_range=True``): u8 x s7 pairs cannot saturate int16 (255 * 63 * 2 < 32767)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static  # noqa: PLC0415
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry  # noqa: PLC0415

    from zooforge.artifacts.quantization.preprocess import SeededReader  # noqa: PLC0415
    from zooforge.artifacts.quantization.quantize import EXCLUDED_OP_TYPES, model_input  # noqa: PLC0415

    fp32 = release / f"{name}-12.onnx"
    input_name, dims = model_input(fp32)
    registry = QLinearOpsRegistry if fmt == "int8" else QDQRegistry
    quantize_static(fp32, out, SeededReader(input_name, dims, recipe.low, recipe.high, 100, recipe.seed),
                    quant_format=QuantFormat.QOperator if fmt == "int8" else QuantFormat.QDQ,
                    op_types_to_quantize=sorted(set(registry) - set(EXCLUDED_OP_TYPES)), per_channel=False,
                    reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)
    return out


def measure(release: Path, stem: str, count: int, recipe: InputRecipe, mnist: bool,
            model_path: Path | None = None) -> dict:
    """Drift of every path against ``ort-default`` for one quantized model of the release (or
    ``model_path``, fed the release's ``stem`` test inputs)."""
    model = onnx.load(str(model_path or release / f"{stem}.onnx"))
    steps = output_steps(model)
    extended, logits = _with_logits(model)
    payload = extended.SerializeToString()
    graph_input = model.graph.input[0]
    shape = [d.dim_value or 1 for d in graph_input.type.tensor_type.shape.dim]
    feeds = _inputs(release, stem, graph_input.name, shape, count, recipe, mnist)
    outputs = {path: [run(feed) for feed in feeds] for path, make in PATHS.items() if (run := make(payload))}
    base = outputs["ort-default"]
    result = {"inputs": len(feeds), "output_steps": {k: v.to_dict() for k, v in steps.items()}, "paths": {}}
    for path, runs in outputs.items():
        row = {"logit_steps_max": None, "output_steps_needed": 0.0, "max_abs": 0.0, "top1_agree": 0}
        for got, exp in zip(runs, base):
            if logits is not None:
                drift = np.abs(got[logits].astype(np.int64) - exp[logits].astype(np.int64)).max()
                row["logit_steps_max"] = max(row["logit_steps_max"] or 0, int(drift))
            for out in model.graph.output:
                g, e = np.asarray(got[out.name], np.float64), np.asarray(exp[out.name], np.float64)
                row["max_abs"] = max(row["max_abs"], float(np.abs(g - e).max()))
                need = steps_needed(steps[out.name], e, g)
                if need is not None:
                    row["output_steps_needed"] = max(row["output_steps_needed"], need)
                row["top1_agree"] += int(np.argmax(g) == np.argmax(e))
        result["paths"][path] = row
    return result


def _print(stem: str, figures: dict) -> None:
    print(f"{stem}: {figures['inputs']} inputs; output steps {figures['output_steps']}")
    for path, row in figures["paths"].items():
        print(f"  {path:18s} logits drift {row['logit_steps_max']} steps, output needs "
              f"{row['output_steps_needed']:.3g} steps, max abs {row['max_abs']:.3g}, "
              f"top-1 {row['top1_agree']}/{figures['inputs']}")


def _release(source, name: str, recipe: InputRecipe, out: Path) -> Path:  # noqa: ANN001
    build_release(source, ReleaseOptions(name=name, opsets=(12,), recipe=recipe, test_sets=3), out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=100, help="seeded inputs (and MNIST images) per model")
    parser.add_argument("--alexnet", action="store_true", help="also the built-in AlexNet (slow)")
    parser.add_argument("--no-reduce-range", dest="reduce_range", action="store_false",
                        help="skip the 7-bit-weight (reduce_range) comparison")
    parser.add_argument("--json", type=Path, help="write the figures as JSON")
    args = parser.parse_args()
    report = {"cpu": cpu_record(), "rule": QuantizedRule().to_dict(), "models": {}}
    with tempfile.TemporaryDirectory(prefix="zooforge-int8-") as temp:
        temp = Path(temp)
        jobs = []
        lenet = SHARED / "caffe" / "trained" / "lenet_mnist_v2"
        if lenet.is_dir():
            recipe = InputRecipe(0, 0.0, 1.0)
            source = caffe_source(lenet / "lenet.prototxt", lenet / "lenet_iter_10000.caffemodel",
                                  ConvertOptions(names="zoo"))
            jobs.append(("lenet", _release(source, "lenet", recipe, temp / "lenet"), recipe, True))
        else:
            print(f"skipping LeNet: {lenet} is missing", file=sys.stderr)
        if args.alexnet:
            recipe = InputRecipe()
            source = builtin_source("alexnet", ConvertOptions(names="zoo"))
            jobs.append(("bvlcalexnet", _release(source, "bvlcalexnet", recipe, temp / "alexnet"), recipe, False))
        for name, release, recipe, mnist in jobs:
            for fmt in ("int8", "qdq"):
                stem = f"{name}-12-{fmt}"
                figures = measure(release, stem, args.inputs if name == "lenet" else min(args.inputs, 20),
                                  recipe, mnist)
                report["models"][stem] = figures
                _print(stem, figures)
                if args.reduce_range:
                    path = reduce_range_variant(release, name, fmt, recipe, temp / f"{stem}-rr.onnx")
                    figures = measure(release, stem, args.inputs if name == "lenet" else min(args.inputs, 20),
                                      recipe, mnist, model_path=path)
                    report["models"][f"{stem} (reduce_range)"] = figures
                    _print(f"{stem} (reduce_range)", figures)
    cpu = report["cpu"]
    print(f"CPU: {cpu['model_name']} ({cpu['vendor']}), best int8 extension {cpu['best_int8_extension']}, "
          f"onnxruntime {cpu['onnxruntime']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
