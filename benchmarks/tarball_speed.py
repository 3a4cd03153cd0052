#!/usr/bin/env python3
"""Measure the release tarball writer on AlexNet-sized float weights (233 MiB, float32 N(0, 1)).

Makes the weights file in a temporary folder (never in the repository), then writes a tarball of it
with ``zooforge.artifacts.release.tarball`` (ISA-L, each level and thread count asked for) and with the stdlib
(``tarfile`` mode ``"w:gz"``, zlib level 9, and level 1 for reference), and prints, for each,
throughput in MB/s of input (1 MB = 10**6 bytes), the compressed/input ratio, and whether repeated
ISA-L runs gave identical bytes. Nothing here is downloaded.

    python benchmarks/tarball_speed.py [--mib 233] [--levels 1 2] [--threads 1 2] [--runs 1]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout
from zooforge.artifacts.release import tarball  # noqa: E402


def make_weights(path: Path, mib: int, seed: int = 0) -> int:
    """Write ``mib`` MiB of float32 N(0, 1) to ``path`` in chunks; the byte count."""
    rng = np.random.default_rng(seed)
    remaining = mib * 2**20 // 4
    with path.open("wb") as stream:
        while remaining:
            count = min(remaining, 1 << 22)
            stream.write(rng.standard_normal(count, dtype=np.float32).tobytes())
            remaining -= count
    return path.stat().st_size


def timed(action: Callable[[], None], runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - start)
    return best


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=233)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--runs", type=int, default=1, help="best of N runs per row")
    parser.add_argument("--skip-stdlib", action="store_true", help="skip the slow zlib rows")
    args = parser.parse_args()
    if tarball._isal_threaded is None:
        raise SystemExit("isal is not installed: the ISA-L rows cannot be measured")

    with tempfile.TemporaryDirectory(prefix="zooforge-tarball-speed-") as folder:
        work = Path(folder)
        weights = work / "model.onnx"
        size = make_weights(weights, args.mib)
        files = [("model.onnx", weights)]
        print(f"input: {size} bytes ({size / 2**20:.0f} MiB) float32 N(0, 1)")
        print(f"{'writer':38s} {'MB/s':>8s} {'ratio':>8s}  sha256[:16]")

        def row(label: str, out: Path, seconds: float) -> None:
            ratio = out.stat().st_size / size
            speed = size / seconds / 1e6
            print(f"{label:38s} {speed:8.1f} {ratio:8.4f}  {digest(out)}", flush=True)

        for level in args.levels:
            for threads in args.threads:
                out = work / f"isal-{level}-{threads}.tar.gz"

                def isal_write(level=level, threads=threads, out=out) -> None:
                    tarball._write_tarball(out, "alexnet", files, mtime=1_700_000_000,
                                           threads=threads, level=level)

                default = " (default)" if level == tarball.GZIP_LEVEL else ""
                label = f"isal level {level}, threads={threads}{default}"
                row(label, out, timed(isal_write, args.runs))

        if not args.skip_stdlib:
            for level in (9, 1):
                out = work / f"zlib-{level}.tar.gz"

                def zlib_write(level=level, out=out) -> None:
                    with tarfile.open(out, "w:gz", compresslevel=level) as tar:
                        tar.add(weights, arcname="alexnet/model.onnx")

                row(f'stdlib tarfile "w:gz" zlib level {level}', out, timed(zlib_write, args.runs))


if __name__ == "__main__":
    main()
