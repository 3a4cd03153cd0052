#!/usr/bin/env python3
"""Measure converting a full-size AlexNet (BVLC architecture, 61M parameters, 233 MiB of weights).

Writes the built-in AlexNet's synthetic weights as a real ``.caffemodel`` in a temporary folder,
then runs ``zoo-convert deploy.prototxt weights.caffemodel --to-opset 12`` in fresh processes and
reports each run's wall time and peak resident memory (from ``wait4``), with the ratio of peak
memory to the weights' size. Nothing here is downloaded.

    python benchmarks/convert_alexnet.py [--runs 3] [--opset 12]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from zooforge.converters.builtin import builtin_model, load_builtin
from zooforge.converters.caffe.weights import write_caffemodel


def measure(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one child process."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"command failed: {' '.join(command)}\n{process.stderr.read().decode()}")
    return elapsed, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--opset", type=int, default=12)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="zooforge-bench-") as folder:
        folder = Path(folder)
        net = load_builtin("alexnet")
        weights = folder / "alexnet.caffemodel"
        write_caffemodel(net, weights)
        weight_mib = net.weight_bytes() / 2**20
        del net
        prototxt = builtin_model("alexnet").prototxt
        command = [
            sys.executable, "-m", "zooforge.converters.cli", str(prototxt), str(weights),
            "--to-opset", str(args.opset), "-o", str(folder / "alexnet.onnx"),
        ]
        runs = [measure(command) for _ in range(args.runs)]
        onnx_mib = (folder / "alexnet.onnx").stat().st_size / 2**20

    times = [t for t, _ in runs]
    peaks = [m for _, m in runs]
    print(f"AlexNet full size: weights {weight_mib:.1f} MiB, ONNX {onnx_mib:.1f} MiB, opset {args.opset}, "
          f"{os.cpu_count()} cores")
    for index, (elapsed, peak) in enumerate(runs, 1):
        print(f"  run {index}: {elapsed:.2f} s wall, peak RSS {peak:.0f} MiB ({peak / weight_mib:.2f}x weights)")
    print(f"median: {statistics.median(times):.2f} s wall, peak RSS {statistics.median(peaks):.0f} MiB "
          f"({statistics.median(peaks) / weight_mib:.2f}x weights); targets: < 3 s, < 3x")


if __name__ == "__main__":
    main()
