#!/usr/bin/env python3
"""What ``--optimize`` saves: nodes, file size and onnxruntime latency, unoptimized vs optimized.

Models: the trained ResNet-20 (CIFAR-10, BatchNorm + Scale after each of its 21 convolutions) from
``../shared``, and a VGG-style BN/Scale net (8 Conv + BatchNorm + Scale + ReLU at 3x64x64) with
seeded weights; ``--alexnet`` adds the built-in AlexNet (synthetic weights, nothing to fold) to
time the optimizer itself and its peak memory. Latency: batch 1, one intra-op thread, median of
``--runs`` runs after 10 warm-ups, at onnxruntime's graph optimisation levels disabled, basic and
all (onnxruntime fuses Conv + BatchNormalization itself from basic on, so the gain it leaves to
``--optimize`` is what the disabled column shows minus what basic/all already recover).

    python benchmarks/optimize.py [--runs 100] [--opset 12] [--alexnet]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from zooforge.converters.api import ConvertOptions, convert_builtin, convert_caffe
from zooforge.converters.builtin import synthetic_weights
from zooforge.converters.caffe.loader import parse_prototxt
from zooforge.converters.caffe.weights import write_caffemodel
from zooforge.converters.onnx.optimize import check_parity, optimize_model

SHARED = Path(__file__).resolve().parents[2] / "shared"
RESNET = SHARED / "caffe/trained/resnet20_cifar10"
LEVELS = {"disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
          "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
          "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}


def vgg_bn_scale(folder: Path) -> tuple[Path, Path]:
    """A VGG-style net of Conv + BatchNorm + Scale + ReLU blocks, seeded weights."""
    layers, bottom = [], "data"
    for stage, width in enumerate((16, 32, 64, 128)):
        for block in range(2):
            name = f"s{stage}b{block}"
            layers.append(f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{name}" '
                          f'convolution_param {{ num_output: {width} kernel_size: 3 pad: 1 bias_term: false }} }}\n'
                          f'layer {{ name: "{name}_bn" type: "BatchNorm" bottom: "{name}" top: "{name}" }}\n'
                          f'layer {{ name: "{name}_sc" type: "Scale" bottom: "{name}" top: "{name}" '
                          f'scale_param {{ bias_term: true }} }}\n'
                          f'layer {{ name: "{name}_relu" type: "ReLU" bottom: "{name}" top: "{name}" }}\n')
            bottom = name
        layers.append(f'layer {{ name: "pool{stage}" type: "Pooling" bottom: "{bottom}" top: "pool{stage}" '
                      f'pooling_param {{ pool: MAX kernel_size: 2 stride: 2 }} }}\n')
        bottom = f"pool{stage}"
    layers.append(f'layer {{ name: "fc" type: "InnerProduct" bottom: "{bottom}" top: "fc" '
                  f'inner_product_param {{ num_output: 10 }} }}\n')
    prototxt = folder / "vgg_bn_scale.prototxt"
    prototxt.write_text('name: "vgg_bn_scale"\nlayer { name: "data" type: "Input" top: "data" '
                        'input_param { shape { dim: 1 dim: 3 dim: 64 dim: 64 } } }\n' + "".join(layers))
    table = synthetic_weights(parse_prototxt(prototxt), 3)
    rng = np.random.default_rng(4)
    for name, blobs in table.items():
        if name.endswith("_bn"):
            c = blobs[0].shape[0]
            table[name] = [rng.uniform(-0.2, 0.2, c).astype(np.float32), rng.uniform(0.5, 2, c).astype(np.float32),
                           np.ones(1, np.float32)]
    weights = folder / "vgg_bn_scale.caffemodel"
    write_caffemodel(table, weights)
    return prototxt, weights


def latency_ms(data: bytes, feed: np.ndarray, level: ort.GraphOptimizationLevel, runs: int) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.graph_optimization_level = level
    options.log_severity_level = 3
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    for _ in range(10):
        session.run(None, {name: feed})
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, {name: feed})
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def measure(label: str, conversion, runs: int, with_latency: bool = True) -> list[str]:  # noqa: ANN001
    model = conversion.model
    start, rss = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    optimized = optimize_model(model)
    seconds = time.perf_counter() - start
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss) / 1024
    error = check_parity(model, optimized.model)
    shape = [d.dim_value for d in model.skeleton.graph.input[0].type.tensor_type.shape.dim]
    feed = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
    rows = []
    for kind, candidate, nodes in (("unoptimized", model, optimized.nodes_before),
                                   ("optimized", optimized.model, optimized.nodes_after)):
        data = candidate.to_bytes()
        cells = [label, kind, str(nodes), f"{len(data) / 2**20:.3f}"]
        cells += [f"{latency_ms(data, feed, level, runs):.3f}" if with_latency else "-" for level in LEVELS.values()]
        rows.append(" | ".join(cells))
    rows.append(f"  ({label}: optimize_model {seconds:.2f} s, peak RSS grew {peak:.0f} MiB; parity "
                f"{error:.1e} of the output's magnitude)")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100, help="timed runs per model and level (>= 50)")
    parser.add_argument("--opset", type=int, default=12)
    parser.add_argument("--alexnet", action="store_true", help="also the built-in AlexNet (233 MiB)")
    args = parser.parse_args()
    options = ConvertOptions(opset=args.opset)
    print(f"onnxruntime {ort.__version__}, batch 1, 1 thread, median of {args.runs} runs (ms)")
    print("model | variant | nodes | MiB | ort disabled | ort basic | ort all")
    with tempfile.TemporaryDirectory(prefix="zooforge-bench-") as folder:
        rows = []
        if RESNET.is_dir():
            conversion = convert_caffe(RESNET / "test_ResNet_20.prototxt",
                                       RESNET / "cifar10_ResNet_20_iter_53500.caffemodel",
                                       ConvertOptions(opset=args.opset, input_shapes=(1, 3, 32, 32)))
            rows += measure("resnet20-cifar10", conversion, args.runs)
        rows += measure("vgg-bn-scale-64", convert_caffe(*vgg_bn_scale(Path(folder)), options), args.runs)
        if args.alexnet:
            rows += measure("alexnet (synthetic)", convert_builtin("alexnet", options), args.runs, with_latency=False)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
