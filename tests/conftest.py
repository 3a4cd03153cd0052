"""Shared fixtures: the real models and data in ``../shared``, and an ONNX Runtime helper."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
import pytest

from shared_paths import SHARED, SHARED_MISSING, SHARED_VARIABLE, on_ci


def pytest_configure(config) -> None:
    """On CI (``CI=true``) a missing ``../shared`` fails the run at once instead of skipping."""
    if on_ci() and not SHARED.is_dir():
        raise pytest.UsageError(
            f"CI=true but the real models and data are missing: no folder {SHARED} "
            f"(lay ../shared beside the clone or set {SHARED_VARIABLE})"
        )


@pytest.fixture(scope="session")
def shared() -> Path:
    """``<repo root>/../shared``; tests that use it skip when it is absent."""
    if not SHARED.is_dir():
        pytest.skip(SHARED_MISSING)
    return SHARED


def ort_session(model: onnx.ModelProto | Path | str):
    """A CPU-only ONNX Runtime session for a model in memory or on disk."""
    import onnxruntime as ort

    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def run_onnx(model, feeds: Mapping[str, np.ndarray], session=None) -> dict[str, np.ndarray]:
    """Run ``model`` (or a ready ``session``) on ``feeds``; outputs by graph output name."""
    session = session or ort_session(model)
    names = [output.name for output in session.get_outputs()]
    values = session.run(names, {k: np.asarray(v, np.float32) for k, v in feeds.items()})
    return dict(zip(names, values))


@pytest.fixture(scope="session")
def onnx_session():
    """``ort_session`` as a fixture, so test modules need not import conftest."""
    return ort_session


@pytest.fixture(scope="session")
def onnx_run():
    """``run_onnx`` as a fixture."""
    return run_onnx


@pytest.fixture(scope="session")
def real_caffe2():
    """The REAL historical Caffe2 (torch 1.10.2, Python 3.8) in its own interpreter.

    Built on first use by ``shared/tools/caffe2-historical-setup.sh`` (CI builds it beforehand);
    tests skip only where no Python 3.8 interpreter or no ``../shared`` exists.
    """
    from real_caffe2 import RealCaffe2, Unavailable, environment

    try:
        env = environment()
    except Unavailable as exc:
        if os.environ.get("ZOOFORGE_REQUIRE_REAL_CAFFE2") == "1":  # CI: the oracle must be there
            pytest.fail(f"real Caffe2 is required here (ZOOFORGE_REQUIRE_REAL_CAFFE2=1): {exc}")
        pytest.skip(str(exc))
    real = RealCaffe2(env)
    yield real
    real.close()


def run_onnx_file(path, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """onnxruntime on a model file; outputs in the graph's order, inputs fed by name."""
    session = ort_session(path)
    names = {i.name for i in session.get_inputs()}
    return session.run(None, {k: v for k, v in feeds.items() if k in names})
