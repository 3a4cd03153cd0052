"""Helpers of the hostile-input suite: run a command as a user would, and prove that it refused
cleanly (exit status 2, one ``error:`` sentence, no traceback) and touched nothing of the user's."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from click.testing import CliRunner


def snapshot(*roots: Path) -> dict[str, str]:
    """Every entry below ``roots`` (and the roots themselves): kind, mode and content digest."""
    state: dict[str, str] = {}
    for root in roots:
        paths = [root, *sorted(root.rglob("*"))] if root.is_dir() and not root.is_symlink() else [root]
        for path in paths:
            try:
                info = path.lstat()
            except FileNotFoundError:
                state[str(path)] = "absent"
                continue
            if stat.S_ISREG(info.st_mode):
                state[str(path)] = "file " + hashlib.sha256(path.read_bytes()).hexdigest()
            elif stat.S_ISLNK(info.st_mode):
                state[str(path)] = "link " + os.readlink(path)
            else:
                state[str(path)] = f"mode {stat.S_IFMT(info.st_mode):o}"
    return state


def invoke(command, args: Sequence[object], env: dict[str, str] | None = None):  # noqa: ANN001, ANN201
    return CliRunner().invoke(command, [str(a) for a in args], env=env)


def assert_refused(result, *mentions: str) -> str:  # noqa: ANN001
    """Exit 2, exactly one ``error:`` line on stderr, the last one, naming every ``mentions``, no
    traceback (progress lines may come before it)."""
    assert result.exit_code == 2, f"exit {result.exit_code}; stderr: {result.stderr!r}; exception: {result.exception!r}"
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output + result.stderr
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], lines
    for mention in mentions:
        assert mention in errors[0], f"{mention!r} not in {errors[0]!r}"
    return errors[0]


def leftovers(folder: Path, name: str) -> list[str]:
    """Temporary entries of zooforge's beside ``folder/name`` (build, old-release, temp files)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f".{name}."))
