"""``zoo-package`` on the shared trained LeNet through click's runner, for tests that build small releases."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner, Result

from shared_paths import SHARED
from zooforge.artifacts.release import package_cli

LENET = SHARED / "caffe" / "trained" / "lenet_mnist_v2"


def package_lenet(out: Path, *extra: str) -> Result:
    """The LeNet release into ``out`` (inputs in [0, 1), quiet), with ``extra`` options."""
    return CliRunner().invoke(package_cli.main, [
        str(LENET / "lenet.prototxt"), str(LENET / "lenet_iter_10000.caffemodel"), "--name", "lenet",
        "--input-range", "0,1", "--out", str(out), "-q", *extra])
