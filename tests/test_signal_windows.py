"""A termination signal that lands between the call creating a temporary and the assignment of its
name: before ``held_termination`` nothing could find the temporary to remove it.

The race (seen in tests/test_interruptions.py's "started" cases on a loaded machine) is made
deterministic here: the creating call itself sends the signal just before it returns.
"""

from __future__ import annotations

import os
import signal
import tempfile

import pytest

from zooforge.artifacts.release import tarball
from zooforge.artifacts.release.build import ReleaseOptions, build_release
from zooforge.artifacts.release.source import builtin_source
from zooforge.converters import api, fileio
from zooforge.converters.interrupts import Interrupted, held_termination, raise_on_termination


@pytest.fixture
def terminating(monkeypatch):
    """SIGINT raises KeyboardInterrupt and SIGTERM and SIGHUP Interrupted, as in every zoo-* command run
    from a terminal (a background job may have SIGINT ignored: set here); restored afterwards."""
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    raise_on_termination()
    yield
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def _signalling(monkeypatch, name: str, signum: int = signal.SIGTERM) -> None:
    """``tempfile.<name>`` creates its temporary, then the process receives ``signum`` before it returns."""
    real = getattr(tempfile, name)

    def create(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        made = real(*args, **kwargs)
        os.kill(os.getpid(), signum)
        return made

    monkeypatch.setattr(tempfile, name, create)


def test_held_signals_arrive_when_the_block_ends(terminating):
    reached_end_of_block = False
    with pytest.raises(Interrupted) as caught:
        with held_termination():
            os.kill(os.getpid(), signal.SIGTERM)
            reached_end_of_block = True
    assert reached_end_of_block and caught.value.signum == signal.SIGTERM


def test_an_ignored_signal_stays_ignored(terminating):
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    with held_termination():
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGHUP)
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN


def test_nothing_held_nothing_raised(terminating):
    with held_termination():
        pass
    assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL  # the command's handler is back


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_atomic_write_leaves_no_temporary(terminating, monkeypatch, tmp_path, signum):
    _signalling(monkeypatch, "mkstemp", signum)
    with pytest.raises(KeyboardInterrupt):
        fileio.atomic_write_bytes(tmp_path / "model.onnx", b"payload")
    assert list(tmp_path.iterdir()) == []


def test_release_build_leaves_no_building_folder(terminating, monkeypatch, tmp_path):
    source = builtin_source("alexnet", api.ConvertOptions())
    _signalling(monkeypatch, "mkdtemp")
    with pytest.raises(Interrupted):
        build_release(source, ReleaseOptions(opsets=(12,), quantize=()), tmp_path / "release")
    assert list(tmp_path.iterdir()) == []


def test_extraction_leaves_no_staging_folder(terminating, monkeypatch, tmp_path):
    member = tmp_path / "model.onnx"
    member.write_bytes(b"x")
    archive = tmp_path / "m.tar.gz"
    tarball.write_tarball(archive, "m", [("model.onnx", member)], mtime=0)
    dest = tmp_path / "dest"
    dest.mkdir()
    _signalling(monkeypatch, "mkdtemp")
    with pytest.raises(Interrupted):
        tarball.safe_extract(archive, dest)
    assert list(dest.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest", "m.tar.gz", "model.onnx"]
