#!/usr/bin/env python3
"""Measure the default release (the built-in full-size AlexNet, opsets 3,6,7,8,9,12) against a naive baseline.

Both run as child processes; wall time and peak resident memory come from ``os.wait4`` (as in
``benchmarks/convert_alexnet.py``).

* zooforge: ``zoo-package --quantize none --out <tmp> -q``: the six fp32 variants, the job the
  baseline does (the issue's target: under 40 s and 1.5 GB on 2 cores); and, reported beside it,
  the default release, which adds the int8 and QDQ variants.
* naive baseline (``--baseline OUT``, run by this script in a child process): the same job the
  simple way. ``zooforge.converters.api.convert_builtin`` makes the opset-12 model once; every other opset
  comes from ``onnx.version_converter.convert_version`` where that works, else (recorded and
  reported) from zooforge's converter. Models are written with plain ``onnx.save``, the expected
  outputs come from the Caffe2 executor on the source NetDef, test data is written as TensorProtos
  and with ``numpy.savez``, every variant is checked by loading it fresh from disk for every test
  set (onnxruntime from opset 7, ``onnx.reference`` below, zooforge's reference kernels if that
  fails), and tarballs are written with ``tarfile.open(mode="w:gz")`` (stdlib gzip, level 9).

Nothing here is downloaded; everything is written to a temporary folder.

    python benchmarks/release.py [--runs 1]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

OPSETS = (3, 6, 7, 8, 9, 12)
TEST_SETS = 3
LOW, HIGH = -128.0, 128.0


def measure(command: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MiB) and stdout of one child process."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(command, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if process.returncode != 0:
        raise SystemExit(f"command failed ({process.returncode}): {' '.join(command)}\n{stdout}\n{stderr}")
    return elapsed, usage.ru_maxrss / 1024, stdout


# ------------------------------------------------------------------------------- naive baseline


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run_naive(path: Path, opset: int, feeds: dict) -> tuple[list, str]:
    import numpy as np
    import onnx

    if opset >= 7:
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, feeds), "onnxruntime"
    try:
        from onnx.reference import ReferenceEvaluator

        return [np.asarray(v) for v in ReferenceEvaluator(onnx.load(str(path))).run(None, feeds)], "onnx.reference"
    except Exception:  # noqa: BLE001 - onnx.reference lacks some opset-3/6 kernels
        from zooforge.versioning.runtime import run_with

        return list(run_with("reference", onnx.load(str(path)), feeds).values()), "zooforge reference"


def baseline(out: Path) -> None:
    import numpy as np
    import onnx
    from onnx import numpy_helper, version_converter

    from zooforge.converters import api
    from zooforge.converters.caffe2.executor import run_net
    from zooforge.versioning.convert import convert_opset

    out.mkdir(parents=True)
    conversion = api.convert_builtin("alexnet", api.ConvertOptions(opset=12))
    base = conversion.onnx_model
    caffe2 = conversion.caffe2
    initializers = {t.name for t in base.graph.initializer}
    inputs = [v.name for v in base.graph.input if v.name not in initializers]
    outputs = [v.name for v in base.graph.output]
    shapes = dict(caffe2.input_shapes)
    drawn = [[np.random.default_rng(n).uniform(LOW, HIGH, shape).astype(np.float32) for shape in shapes.values()]
             for n in range(TEST_SETS)]
    expected = [list(run_net(caffe2, dict(zip(caffe2.inputs, arrays))).values()) for arrays in drawn]
    feeds = [dict(zip(inputs, arrays)) for arrays in drawn]  # by ONNX graph input name
    how, runtimes, manifest = {}, {}, []
    for opset in OPSETS:
        if opset == 12:
            model, how[opset] = base, "convert_builtin"
        else:
            try:
                model = version_converter.convert_version(base, opset)
                onnx.checker.check_model(model)
                how[opset] = "onnx.version_converter"
            except Exception as exc:  # noqa: BLE001
                model = convert_opset(base, opset)
                reason = str(exc).strip().splitlines()[-1]
                reason = reason.split("failed: ", 1)[-1][:100]  # e.g. "No Adapter From Version $11 for Gemm"
                how[opset] = f"version_converter failed ({reason}): zooforge's converter instead"
        stem = f"bvlcalexnet-{opset}"
        work = out / "work" / "bvlcalexnet"
        work.mkdir(parents=True)
        onnx.save(model, str(work / "model.onnx"))
        del model
        for n, (feed, values) in enumerate(zip(feeds, expected)):
            folder = work / f"test_data_set_{n}"
            folder.mkdir()
            for k, name in enumerate(inputs):
                (folder / f"input_{k}.pb").write_bytes(
                    numpy_helper.from_array(feed[name], name).SerializeToString())
            for k, (name, value) in enumerate(zip(outputs, values)):
                (folder / f"output_{k}.pb").write_bytes(
                    numpy_helper.from_array(value, name).SerializeToString())
            np.savez(work / f"test_data_{n}.npz", inputs=np.stack(list(feed.values())), outputs=np.stack(values))
        for n, (feed, values) in enumerate(zip(feeds, expected)):  # parity, model loaded fresh each time
            got, runtimes[opset] = _run_naive(work / "model.onnx", opset, feed)
            for g, e in zip(got, values):
                if not np.allclose(g, e, rtol=1e-3, atol=1e-7):
                    raise SystemExit(f"baseline: {stem} set {n} fails parity (max abs {np.abs(g - e).max():g})")
        shutil.copyfile(work / "model.onnx", out / f"{stem}.onnx")
        with tarfile.open(out / f"{stem}.tar.gz", mode="w:gz") as tar:
            tar.add(work, arcname="bvlcalexnet")
        shutil.rmtree(out / "work")
        manifest.append({"model_path": f"{stem}.onnx", "model_sha": _sha256(out / f"{stem}.onnx"),
                         "model_with_data_sha": _sha256(out / f"{stem}.tar.gz"), "opset_version": opset})
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    print(json.dumps({"how": how, "runtimes": runtimes}))


# ------------------------------------------------------------------------------------------ main


def _size(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--baseline", type=Path, metavar="OUT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline is not None:
        baseline(args.baseline)
        return

    zoo_package = shutil.which("zoo-package")
    ours_cmd = [zoo_package] if zoo_package else [sys.executable, "-m", "zooforge.artifacts.release.package_cli"]
    results = {"zoo-package": [], "naive baseline": [], "default (+int8, qdq)": []}
    info, sizes = None, {}
    with tempfile.TemporaryDirectory(prefix="zooforge-bench-release-") as folder:
        folder = Path(folder)
        for run in range(args.runs):
            out = folder / f"ours-{run}"
            elapsed, peak, _ = measure([*ours_cmd, "--quantize", "none", "--out", str(out), "-q"])
            results["zoo-package"].append((elapsed, peak))
            sizes["zoo-package"] = _size(out)
            shutil.rmtree(out)
            elapsed, peak, _ = measure([*ours_cmd, "--out", str(out), "-q"])
            results["default (+int8, qdq)"].append((elapsed, peak))
            sizes["default (+int8, qdq)"] = _size(out)
            shutil.rmtree(out)
            out = folder / f"naive-{run}"
            elapsed, peak, stdout = measure([sys.executable, str(Path(__file__).resolve()), "--baseline", str(out)])
            results["naive baseline"].append((elapsed, peak))
            sizes["naive baseline"] = _size(out)
            info = json.loads(stdout.strip().splitlines()[-1])
            shutil.rmtree(out)

    print(f"Default release: built-in AlexNet (full size, synthetic weights), opsets {','.join(map(str, OPSETS))}, "
          f"{TEST_SETS} test sets, {os.cpu_count()} cores, {args.runs} run(s) each")
    medians = {}
    for label, runs in results.items():
        t = statistics.median(r[0] for r in runs)
        m = statistics.median(r[1] for r in runs)
        medians[label] = (t, m)
        print(f"  {label:20s} {t:7.2f} s wall, peak RSS {m:6.0f} MiB, output {sizes[label]:.0f} MiB")
    (ot, om), (nt, nm) = medians["zoo-package"], medians["naive baseline"]
    print(f"  ratio (naive / zoo-package): {nt / ot:.2f}x time, {nm / om:.2f}x peak RSS")
    print("Baseline: how each opset's model was made:")
    for opset, how in info["how"].items():
        print(f"  opset {opset}: {how}; parity on {info['runtimes'][opset]}")


if __name__ == "__main__":
    main()
