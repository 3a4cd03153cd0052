"""A real ``zoo-package`` build, interrupted by SIGINT, SIGTERM, SIGHUP or SIGKILL at several
points, leaves ``--out`` holding either the old release or the new one, never a mixture; after
SIGINT, SIGTERM and SIGHUP nothing else is beside it, and after SIGKILL the next build removes
what the killed one left and says so."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from zooforge.artifacts.provenance.verify import verify_release

from hostile import leftovers, snapshot

LENET = ("caffe", "trained", "lenet_mnist_v2")
# When to send the signal, judged by what the build folder beside --out holds.
POINTS = {
    "started": lambda building: True,
    "first-tarball": lambda building: any(building.glob("*.tar.gz")),
    "checksums-written": lambda building: (building / "SHA256SUMS").exists(),
}
SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM, "SIGHUP": signal.SIGHUP, "SIGKILL": signal.SIGKILL}


def _command(shared: Path, out: Path) -> list[str]:
    folder = shared.joinpath(*LENET)
    return [sys.executable, "-c", "from zooforge.artifacts.release.package_cli import main; main()",
            str(folder / "lenet.prototxt"), str(folder / "lenet_iter_10000.caffemodel"), "--name", "lenet",
            "--opsets", "7,9,12", "--test-sets", "2", "--input-range", "0,1", "--quantize", "none", "--quiet",
            "--out", str(out)]


@pytest.fixture(scope="module")
def old_release(shared, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("old") / "release"
    subprocess.run(_command(shared, out), check=True, capture_output=True)
    return out


def _run_and_signal(command: list[str], parent: Path, name: str, point, signum: int):  # noqa: ANN001, ANN202
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sent = False
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        building = [p for p in parent.glob(f".{name}.building-*") if p.is_dir()]
        if building and point(building[0]):
            process.send_signal(signum)
            sent = True
            break
        time.sleep(0.001)
    stdout, stderr = process.communicate(timeout=300)
    return process.returncode, stderr, sent


@pytest.mark.parametrize("signame", list(SIGNALS))
@pytest.mark.parametrize("point", list(POINTS))
def test_interrupted_build_leaves_the_old_or_the_new_release(shared, old_release, tmp_path, signame, point):
    out = tmp_path / "release"
    shutil.copytree(old_release, out)
    before = snapshot(out)
    signum = SIGNALS[signame]
    code, stderr, sent = _run_and_signal(_command(shared, out), tmp_path, "release", POINTS[point], signum)
    finished = code == 0
    if finished:  # the signal came too late to matter, or during the final swap (then it is said)
        assert verify_release(out).verified
        assert not sent or signum == signal.SIGKILL or "moved into place" in stderr or "error" not in stderr
    else:
        assert sent
        assert snapshot(out) == before, "an interrupted build changed the old release"
        if signum == signal.SIGKILL:
            assert code == -signal.SIGKILL
        else:
            assert code == 128 + signum, stderr
            assert stderr.strip().splitlines()[-1].startswith("error: interrupted"), stderr
            assert "Traceback" not in stderr
    outcome = "finished" if finished else "interrupted"
    if signum != signal.SIGKILL:
        assert leftovers(tmp_path, "release") == []
        print(f"\n[interrupt] {signame} at {point} (signal {'sent' if sent else 'too late'}): {outcome}")
        return
    # after SIGKILL: the next build cleans up what the killed one left, and says so
    stale = leftovers(tmp_path, "release")
    rerun = subprocess.run(_command(shared, out), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert leftovers(tmp_path, "release") == []
    assert rerun.stderr.count("left by a build that was killed") == len(stale)
    assert verify_release(out).verified
    print(f"\n[interrupt] {signame} at {point} (signal {'sent' if sent else 'too late'}): {outcome}, "
          f"{len(stale)} left beside it, removed by the next build")
