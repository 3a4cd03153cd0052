#!/usr/bin/env python3
"""Latency of the built-in AlexNet in fp32, int8 (QOperator) and qdq (QDQ) on onnxruntime's CPU.

Converts ``--builtin alexnet`` (BVLC architecture, seeded SYNTHETIC weights) at opset 12,
quantizes it both ways with seeded calibration inputs in the inc-alexnet preset's value range
(no ImageNet data is available offline; the weights are synthetic, so only speed and size mean
anything here), then times batch-1 inference: median of ``--runs`` runs after 5 warm-ups, one
intra-op thread (and all threads). Everything lives in a temporary folder.

    python benchmarks/quantized.py [--samples 20] [--runs 50]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from zooforge.artifacts.quantization.evaluate import measure_latency
from zooforge.artifacts.quantization.preprocess import SeededReader, get_preset
from zooforge.artifacts.quantization.quantize import QuantizeSettings, calibration_reader, model_input, quantize_model, value_range
from zooforge.converters.api import ConvertOptions, convert_builtin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20, help="seeded calibration inputs")
    parser.add_argument("--runs", type=int, default=50, help="timed runs per model and thread setting")
    parser.add_argument("--inputs", type=int, default=5, help="distinct timing inputs, cycled")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="zooforge-bench-") as folder:
        folder = Path(folder)
        fp32 = folder / "alexnet.onnx"
        start = time.perf_counter()
        convert_builtin("alexnet", ConvertOptions(opset=12)).save(fp32)
        print(f"convert: {time.perf_counter() - start:.1f} s")
        name, dims = model_input(fp32)
        preprocess = get_preset("inc-alexnet", dims)
        low, high = value_range(preprocess)

        models = {"fp32": fp32}
        for fmt in ("int8", "qdq"):
            settings = QuantizeSettings(fmt, samples=args.samples, seed=0)
            reader, description = calibration_reader(fp32, settings, preprocess)
            start = time.perf_counter()
            result = quantize_model(fp32, folder / f"alexnet-{fmt}.onnx", settings, reader)
            print(f"quantize {fmt}: {time.perf_counter() - start:.1f} s ({description}); opset {result.opset}")
            models[fmt] = result.output

        shape = [d if isinstance(d, int) and d > 0 else 1 for d in dims]
        timing = SeededReader(name, shape, low, high, args.inputs, seed=1)
        inputs = [feed[name] for feed in timing]
        threads = os.cpu_count()
        print(f"\nAlexNet {shape}, batch 1, median of {args.runs} runs after 5 warm-ups "
              f"(onnxruntime CPU, {threads} logical CPUs)")
        print(f"{'model':<6} {'MiB':>7} {'1 thread ms':>12} {'all threads ms':>15} {'speed-up (1 thread)':>20}")
        base = None
        for label, path in models.items():
            one = measure_latency(path, inputs, 1, runs=args.runs)
            every = measure_latency(path, inputs, None, runs=args.runs)
            base = base or one
            print(f"{label:<6} {path.stat().st_size / 2**20:7.1f} {one:12.2f} {every:15.2f} {base / one:19.2f}x")
        agreement = _top1_agreement(models, inputs, name)
        print("\ntop-1 agreement with fp32 on the timing inputs (synthetic weights): "
              + ", ".join(f"{k} {v}/{len(inputs)}" for k, v in agreement.items()))


def _top1_agreement(models: dict[str, Path], inputs: list[np.ndarray], name: str) -> dict[str, int]:
    import onnxruntime as ort

    def top1(path: Path) -> list[int]:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return [int(np.argmax(session.run(None, {name: x})[0])) for x in inputs]

    reference = top1(models["fp32"])
    return {k: sum(a == b for a, b in zip(reference, top1(p))) for k, p in models.items() if k != "fp32"}


if __name__ == "__main__":
    main()
