"""Regenerate ``docs/caffe2-conformance.md``: every operator signature zooforge's translator writes,
measured on REAL Caffe2 and through the historical onnx-caffe2 frontend.

Needs the historical toolchain (``../shared/tools/caffe2-historical-setup.sh``; built on first use
when a Python 3.8 exists). ``tests/test_caffe2_conformance.py`` recomputes every figure in CI and
fails when the translator emits a signature the committed table lacks.

    python scripts/caffe2_conformance.py [--out docs/caffe2-conformance.md]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))

from conftest import run_onnx_file  # noqa: E402
from detection_cases import CONFORMANCE as DETECTION, detection_feeds_for, detection_model  # noqa: E402
from layer_cases import CASES, prepare  # noqa: E402
from real_caffe2 import RealCaffe2, environment  # noqa: E402
from real_caffe2.conformance import TABLE, render_table, run_case  # noqa: E402


class _Folders:
    """The two methods of pytest's TempPathFactory that ``prepare`` uses."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def getbasetemp(self) -> Path:
        return self.root

    def mktemp(self, name: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.root))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=TABLE)
    args = parser.parse_args()
    real = RealCaffe2(environment())
    checks = []
    with tempfile.TemporaryDirectory() as root:
        for case in CASES:
            prepared = prepare(case, _Folders(Path(root)))
            checks += run_case(real, case.id, prepared.conversion(12).caffe2, prepared.feeds, run_onnx_file)
        for case_id, params in DETECTION.items():  # SSD heads: DetectionOutput is not a layer case
            _, model = detection_model(Path(tempfile.mkdtemp(prefix=f"{case_id}-", dir=root)), params)
            checks += run_case(real, case_id, model, detection_feeds_for(params), run_onnx_file)
    args.out.write_text(render_table(checks, real.versions()))
    real.close()
    failed = [c for c in checks if not c.passed]
    for check in failed:
        print(f"{check.case} op {check.index} {check.signature}: {'; '.join(check.problems)}", file=sys.stderr)
    print(f"{len(checks)} operators, {len({c.signature for c in checks})} signatures -> {args.out}"
          f" ({len(failed)} failing)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
