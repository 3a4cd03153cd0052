"""What zooforge may write over, and what it leaves behind: never a user's file.

* An output file may replace only a regular file or nothing: never a device, FIFO, socket,
  symbolic link or folder, and never one of the command's own inputs.
* A release folder may replace only nothing, an empty folder, or a zooforge release (every file
  in it listed by its ``SHA256SUMS``, beside its ``manifest.json``); never ``/``, never a folder
  that holds an input.
* Temporary files and folders carry their owner's pid and start time in their names
  (``owner_tag``), so that a later run can tell the leftovers of a killed process from those of a
  live one and remove only the former (``remove_stale``).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from collections.abc import Iterable
from pathlib import Path

from zooforge.converters.errors import InputFileError

RELEASE_MARKERS = ("manifest.json", "SHA256SUMS")
_UNLISTED_RELEASE_FILES = frozenset({"SHA256SUMS", "release.sig"})  # written after SHA256SUMS


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_output_file(path: Path, inputs: Iterable[Path] = (), what: str = "output") -> None:
    """Refuse to write ``path`` unless it is absent or a regular file that is none of ``inputs``."""
    path = Path(path)
    if not path.parent.is_dir():
        raise InputFileError(f"{what} folder {path.parent} does not exist")
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise InputFileError(f"cannot inspect {what} {path}: {exc.strerror}") from None
    if stat.S_ISDIR(mode):
        raise InputFileError(f"{what} {path} is a folder; give a file name such as {path / 'model.onnx'}")
    if not stat.S_ISREG(mode):
        raise InputFileError(f"refusing to write {what} {path}: it is {_kind(mode)}, not a regular file")
    for source in inputs:
        if source is not None and _same(path, Path(source)):
            raise InputFileError(f"refusing to write {what} {path}: it is the input {source}")


def check_output_files(paths: Iterable[Path], inputs: Iterable[Path] = (), what: str = "output") -> None:
    inputs = [Path(p) for p in inputs if p is not None]
    for path in paths:
        check_output_file(path, inputs, what)


def foreign_entries(folder: Path) -> list[str]:
    """The entries of ``folder`` that are not part of the zooforge release it holds (all of them
    when it holds none). An empty folder has none."""
    folder = Path(folder)
    entries = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))
    if not entries:
        return []
    if not all((folder / marker).is_file() for marker in RELEASE_MARKERS):
        return entries
    listed = set()
    try:
        for line in (folder / "SHA256SUMS").read_text(errors="replace").splitlines():
            digest, sep, name = line.partition("  ")
            if sep and re.fullmatch(r"[0-9a-f]{64}", digest):
                listed.add(name)
    except OSError:
        return entries
    known = set(listed) | _UNLISTED_RELEASE_FILES
    known |= {parent.as_posix() for name in listed for parent in Path(name).parents if parent.as_posix() != "."}
    return [entry for entry in entries if entry not in known or
            (entry in listed and not (folder / entry).is_file())]


def check_release_folder(out: Path, inputs: Iterable[Path] = ()) -> None:
    """Refuse a release folder zooforge would have to clobber (see the module docstring)."""
    out = Path(out).absolute()
    if out.parent == out or out.resolve() == Path(out.anchor):
        raise InputFileError(f"refusing to use {out} as the release folder: it is a file system root")
    if out.exists() or out.is_symlink():
        if out.is_symlink() or not out.is_dir():
            raise InputFileError(f"release folder {out} exists and is not a folder")
    resolved = out.resolve()
    for source in inputs:
        if source is None:
            continue
        source = Path(source).absolute().resolve()
        if source == resolved or resolved in source.parents:
            raise InputFileError(f"refusing release folder {out}: it holds the input {source}, which "
                                 "replacing the folder would delete")
    if out.is_dir():
        foreign = foreign_entries(out)
        if foreign:
            shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            raise InputFileError(f"refusing to replace {out}: it holds {shown}, which no zooforge release there "
                                 "lists (give an absent or empty folder, or a previous release)")


# -- owners of temporary files ------------------------------------------------------------------

def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux), or "0" where unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[19]
    except (OSError, IndexError):
        return "0"


def owner_tag() -> str:
    """``<pid>.<start time>``: names this process among the live and the dead."""
    return f"{os.getpid()}.{_start_time(os.getpid())}"


def _alive(pid: int, started: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return started == "0" or _start_time(pid) in (started, "0")


def stale_entries(folder: Path, prefix: str) -> list[Path]:
    """The entries of ``folder`` named ``<prefix><pid>.<start>-...`` whose owner is dead."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.(\d+)-")
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return [Path(folder) / name for name in sorted(names)
            if (match := pattern.match(name)) and not _alive(int(match.group(1)), match.group(2))]


def remove_stale(folder: Path, prefix: str) -> list[Path]:
    """Remove the stale entries (see ``stale_entries``); return what was removed."""
    removed = stale_entries(folder, prefix)
    for path in removed:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return removed
