"""Termination signals become exceptions, so that every clean-up path runs for them too.

Python turns SIGINT into ``KeyboardInterrupt`` and lets SIGTERM and SIGHUP kill the process on
the spot, leaving temporary files behind. ``raise_on_termination`` makes those raise
``Interrupted`` (a ``KeyboardInterrupt``) instead. ``deferred_termination`` holds the three
signals back during a step that must not be cut in half (a release's final swap); a signal that
arrived meanwhile is then reported and dropped, since what it would have stopped is done.
``held_termination`` holds them while a temporary is created and then delivers them.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

TERMINATING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """A termination signal arrived; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise(signum: int, frame) -> None:  # noqa: ANN001
    raise Interrupted(signum)


def raise_on_termination() -> None:
    """SIGTERM and SIGHUP raise ``Interrupted`` (SIGINT already raises ``KeyboardInterrupt``)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) in (signal.SIG_DFL, None):
            signal.signal(signum, _raise)


def exit_status(exc: KeyboardInterrupt) -> int:
    """The shell's convention: 128 + the signal's number."""
    return 128 + (exc.signum if isinstance(exc, Interrupted) else int(signal.SIGINT))


@dataclass
class Deferred:
    """What ``deferred_termination`` held back and dropped."""

    dropped: list[str] = field(default_factory=list)


@contextmanager
def _recorded() -> Iterator[list[int] | None]:
    """Record SIGINT, SIGTERM and SIGHUP instead of acting on them until the block ends (only the
    main thread can; elsewhere yields None). A handler that records rather than a blocked signal
    mask: other threads, onnxruntime's among them, would otherwise take the signal for the process."""
    if threading.current_thread() is not threading.main_thread():
        yield None
        return
    arrived: list[int] = []
    # a signal the process ignores (SIGINT in a background job, say) stays ignored: nothing to hold
    watched = [signum for signum in TERMINATING if signal.getsignal(signum) is not signal.SIG_IGN]
    previous = {signum: signal.signal(signum, lambda number, frame: arrived.append(number)) for signum in watched}
    try:
        yield arrived
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def deferred_termination() -> Iterator[Deferred]:
    """Hold SIGINT, SIGTERM and SIGHUP back until the block ends; report and drop them if it
    completed."""
    state = Deferred()
    with _recorded() as arrived:
        yield state
    state.dropped = [signal.Signals(s).name for s in dict.fromkeys(arrived or ())]


@contextmanager
def held_termination() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP back until the block ends, then deliver them: around the
    creation of a temporary file or folder, so that a signal cannot land between the call that
    makes it and the assignment of its name, where no clean-up could find it."""
    with _recorded() as arrived:
        yield
    for signum in dict.fromkeys(arrived or ()):
        signal.raise_signal(signum)
