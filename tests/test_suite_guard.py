"""The suite itself refuses to pass on CI without the real data (``tests/shared_paths.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _pytest(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    probe = tmp_path / "test_probe.py"
    probe.write_text("def test_nothing():\n    pass\n")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--rootdir={TESTS}",
         f"--confcutdir={TESTS}", "-c", os.devnull, str(TESTS / "conftest.py"), str(probe)],
        capture_output=True, text=True, check=False, cwd=TESTS,
        env={**os.environ, "PYTHONPATH": str(TESTS), **env}, timeout=120,
    )


def test_ci_without_shared_fails_in_one_sentence(tmp_path):
    result = _pytest(tmp_path, CI="true", ZOOFORGE_SHARED=str(tmp_path / "absent"))
    assert result.returncode != 0
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert lines == [f"ERROR: CI=true but the real models and data are missing: no folder {tmp_path / 'absent'} "
                     "(lay ../shared beside the clone or set ZOOFORGE_SHARED)"]


def test_outside_ci_a_missing_shared_only_skips(tmp_path):
    result = _pytest(tmp_path, CI="", ZOOFORGE_SHARED=str(tmp_path / "absent"))
    assert result.returncode == 0, result.stdout + result.stderr
