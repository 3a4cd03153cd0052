"""Where the real models and data live: ``../shared`` beside the clone, or ``$ZOOFORGE_SHARED``.

The override exists for copies of the tests run from elsewhere (the mutation script runs them from a
scratch folder); CI lays ``../shared`` beside the clone and sets ``CI=true``, where its absence is an
error, not a reason to skip.
"""

from __future__ import annotations

import os
from pathlib import Path

SHARED_VARIABLE = "ZOOFORGE_SHARED"
SHARED = Path(os.environ.get(SHARED_VARIABLE) or Path(__file__).resolve().parents[2] / "shared")
SHARED_MISSING = "needs ../shared (the real models and data); CI always has it"


def on_ci() -> bool:
    """True where the CI convention ``CI=true`` (or ``CI=1``) is set."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")
