"""Reproducible ``.tar.gz`` release tarballs, and safe extraction of untrusted ones.

The format of a tarball written here is fixed so the same inputs give the same bytes on any machine:

* tar layer: POSIX.1-2001 (``tarfile.PAX_FORMAT``), UTF-8 names. Python writes a ``ustar`` header
  per entry and adds a pax extended header only for a field that does not fit ``ustar`` (a name over
  100 bytes or not ASCII); integer mtimes and zero uid/gid always fit, so no pax record ever carries
  an atime, ctime or fractional mtime. One top folder, a directory entry for it and for every
  intermediate folder, entries sorted by name (a folder sorts before its contents), every entry with
  mtime = the given integer (SOURCE_DATE_EPOCH), uid = gid = 0, uname = gname = "", mode 0o644 for
  files and 0o755 for folders. Tar data reaches the compressor in 1 MiB writes (``_COPY_BUFSIZE``).
* gzip layer: ISA-L through the ``isal`` package's threaded writer at level ``GZIP_LEVEL``, cut into
  independent 1 MiB deflate blocks (``_BLOCK_SIZE``), each primed with the previous block's last
  32 KiB. The header is the fixed 10 bytes ``1f 8b 08 00 00000000 00 ff``: no flags (so no FNAME),
  MTIME 0, OS 255. Which thread compresses a block does not change its bytes, so the output is the
  same for every ``threads`` value; it may change with the ISA-L version, which is therefore part
  of what a release pins.
* Without ``isal`` the stdlib ``gzip`` module writes the gzip layer instead (zlib level
  ``_FALLBACK_LEVEL``, MTIME 0, no file name). That is still deterministic, but about 15-25 times
  slower on float weights and gives *different bytes* from the ISA-L writer, so a release must be
  built with ``isal`` installed to reproduce published checksums.
"""

from __future__ import annotations

import copy
import gzip
import os
import shutil
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from zooforge.converters.errors import InputFileError
from zooforge.converters.fileio import atomic_writer, current_umask
from zooforge.converters.interrupts import held_termination

try:
    from isal import igzip_threaded as _isal_threaded
except ImportError:  # pragma: no cover - exercised by monkeypatching in tests
    _isal_threaded = None

__all__ = [
    "GZIP_LEVEL", "TAR_FORMAT", "UnsafeArchiveError", "list_members", "safe_extract",
    "write_tarball",
]

TAR_FORMAT = tarfile.PAX_FORMAT
GZIP_LEVEL = 1            # ISA-L level 1: zlib level 9's ratio on float weights at ~20x its speed
FILE_MODE = 0o644
DIR_MODE = 0o755
_BLOCK_SIZE = 1 << 20     # ISA-L threaded writer block; part of the byte format
_COPY_BUFSIZE = 1 << 20   # tarfile's copy chunk; fixes the write pattern the blocks are cut from
_FALLBACK_LEVEL = 9       # stdlib zlib when isal is missing: the ratio ISA-L level 1 gives
MAX_MTIME = 8**11 - 1
MAX_DEPTH = 32            # a member's folders, in an archive to extract
MAX_NAME_LENGTH = 1024    # a member's path (Linux's PATH_MAX is 4096, beside the destination's own)
_HAVE_DATA_FILTER = hasattr(tarfile, "data_filter")  # Python 3.12, 3.11.4+, 3.10.12+


class UnsafeArchiveError(InputFileError):
    """An archive holds a member that could escape its destination or exhaust the disk."""


# --------------------------------------------------------------------------------------- writing


def write_tarball(path: Path, top: str, files: Sequence[tuple[str, Path]], *, mtime: int,
                  threads: int = 2) -> None:
    """Write ``path``: a reproducible tar.gz of ``files`` (relative name, source) under ``top/``.

    Sources are streamed, never read whole; ``path`` appears only once complete. ``threads`` sets
    how many threads compress and does not change the bytes written.
    """
    _write_tarball(Path(path), top, files, mtime=mtime, threads=threads, level=GZIP_LEVEL)


def _write_tarball(path: Path, top: str, files: Sequence[tuple[str, Path]], *, mtime: int,
                   threads: int, level: int) -> None:
    """``write_tarball`` with the gzip level open, for benchmarks."""
    if isinstance(mtime, bool) or not isinstance(mtime, int) or not 0 <= mtime <= MAX_MTIME:
        raise ValueError(f"mtime must be an integer from 0 to {MAX_MTIME}, got {mtime!r}")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    entries = _plan_entries(top, files)
    with atomic_writer(path) as raw, _gzip_writer(raw, threads, level) as compressed:
        counted = _CountingWriter(compressed)
        with tarfile.TarFile(fileobj=counted, mode="w", format=TAR_FORMAT, encoding="utf-8",
                             errors="strict", copybufsize=_COPY_BUFSIZE) as tar:
            for name, source in entries:
                info = tarfile.TarInfo(name)
                info.mtime = mtime
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                if source is None:
                    info.type = tarfile.DIRTYPE
                    info.mode = DIR_MODE
                    tar.addfile(info)
                    continue
                info.type = tarfile.REGTYPE
                info.mode = FILE_MODE
                with _open_regular(source, name) as stream:
                    info.size = os.fstat(stream.fileno()).st_size
                    tar.addfile(info, stream)


def _plan_entries(top: str, files: Sequence[tuple[str, Path]]) -> list[tuple[str, Path | None]]:
    """Every tar entry as (name, source or None for a folder), sorted by name."""
    if not isinstance(top, str) or top in ("", ".", "..") or "/" in top or "\\" in top:
        raise ValueError(f"the tarball's top folder must be one plain name, got {top!r}")
    entries: dict[str, Path | None] = {top: None}
    for relative, source in files:
        parts = relative.split("/") if isinstance(relative, str) else []
        if not parts or any(part in ("", ".", "..") or "\\" in part for part in parts):
            raise ValueError(f"tarball member {relative!r} is not a plain relative path")
        name = "/".join((top, *parts))
        if name in entries:
            raise ValueError(f"tarball member {relative!r} is given twice (or is also a folder)")
        entries[name] = Path(source)
        for depth in range(1, len(parts)):
            folder = "/".join((top, *parts[:depth]))
            if entries.setdefault(folder, None) is not None:
                raise ValueError(f"tarball member {'/'.join(parts[:depth])!r} is both a file "
                                 f"and the folder of {relative!r}")
    return sorted(entries.items())


@contextmanager
def _open_regular(source: Path, name: str) -> Iterator[BinaryIO]:
    try:
        stream = source.open("rb")
    except OSError as error:
        raise InputFileError(f"cannot add {source} to a tarball as {name}: "
                             f"{error.strerror or error}") from error
    with stream:
        if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
            raise InputFileError(f"cannot add {source} to a tarball as {name}: "
                                 "it is not a regular file")
        yield stream


@contextmanager
def _gzip_writer(raw: BinaryIO, threads: int, level: int) -> Iterator[BinaryIO]:
    """A gzip stream into ``raw`` with MTIME 0 and no file name; ``raw`` stays open."""
    if _isal_threaded is not None:
        stream = _isal_threaded.open(raw, "wb", compresslevel=level, threads=threads,
                                     block_size=_BLOCK_SIZE)
    else:
        stream = gzip.GzipFile(filename="", mode="wb", compresslevel=_FALLBACK_LEVEL,
                               fileobj=raw, mtime=0)
    with stream:
        yield stream


class _CountingWriter:
    """The write-only stream ``tarfile`` needs: ``write`` plus a ``tell`` it cannot seek for."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._offset = 0

    def write(self, data: bytes) -> int:
        self._stream.write(data)
        self._offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self._offset


# ------------------------------------------------------------------------------------ extracting


def list_members(archive: Path) -> list[str]:
    """The sorted member names of a .tar or .tar.gz (folders without a trailing slash)."""
    archive = Path(archive)
    with _open_archive(archive) as tar, _reading(archive):
        return sorted(tar.getnames())


def safe_extract(archive: Path, dest: Path, *, max_bytes: int = 8 * 2**30,
                 max_members: int = 10000) -> list[Path]:
    """Extract an untrusted .tar or .tar.gz into ``dest``; the paths of its members, sorted.

    Every member is checked before anything is written: only regular files and folders, no
    absolute names or ``..`` components, at most ``max_members`` members declaring at most
    ``max_bytes`` in total, nothing already present in ``dest``. Extraction then goes member by
    member through ``tarfile``'s ``"data"`` filter into a temporary sibling of ``dest``, counting
    the bytes actually written, and is moved into ``dest`` only when complete. A refusal raises
    :class:`UnsafeArchiveError` and leaves ``dest`` and its parent as they were.
    """
    archive, dest = Path(archive), Path(dest).absolute()
    if not dest.parent.is_dir():
        raise InputFileError(f"cannot extract {archive}: the folder {dest.parent} does not exist")
    if dest.exists() and not dest.is_dir():
        raise InputFileError(f"cannot extract {archive} into {dest}: it is not a folder")
    with _open_archive(archive) as tar, _reading(archive):
        tar.errorlevel = 2
        members = _checked_members(tar, archive, max_bytes, max_members)
        for name in sorted({name.split("/")[0] for name, _ in members}):
            if os.path.lexists(dest / name):
                raise InputFileError(f"cannot extract {archive} into {dest}: "
                                     f"{dest / name} already exists")
        staging = None
        try:
            with held_termination():  # a signal meanwhile arrives once `staging` names what to remove
                staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".extracting", dir=dest.parent))
            written = 0
            for name, member in members:
                try:
                    _extract_member(tar, member, staging, archive)
                except OSError as error:
                    raise UnsafeArchiveError(f"{archive}: member {member.name!r} cannot be extracted "
                                             f"({error.strerror or error})") from None
                if member.isreg():
                    written += (staging / name).lstat().st_size
                    if written > max_bytes:
                        raise UnsafeArchiveError(
                            f"{archive} wrote more than {max_bytes} bytes by member "
                            f"{member.name!r}, refused as a likely decompression bomb")
            _move_into(staging, dest)
        except BaseException:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
            raise
    return sorted(dest / name for name, _ in members)


def _checked_members(tar: tarfile.TarFile, archive: Path, max_bytes: int,
                     max_members: int) -> list[tuple[str, tarfile.TarInfo]]:
    """(normalised name, member) for every member but the root ``.``, all checks passed."""
    checked: list[tuple[str, tarfile.TarInfo]] = []
    files: set[str] = set()
    seen: set[str] = set()
    total = count = 0
    while (member := tar.next()) is not None:
        count += 1
        if count > max_members:
            raise UnsafeArchiveError(f"{archive} holds more than {max_members} members "
                                     f"(refused at member {member.name!r})")
        name = _checked_name(archive, member)
        _check_type(archive, member)
        if not name:
            continue  # the archive root "./" as a folder: nothing to create
        if name in seen:
            raise UnsafeArchiveError(f"{archive} holds member {member.name!r} more than once")
        seen.add(name)
        if member.isreg():
            files.add(name)
            total += member.size
            if total > max_bytes:
                raise UnsafeArchiveError(
                    f"{archive} declares more than {max_bytes} bytes in total by member "
                    f"{member.name!r}, refused as too large to extract")
        checked.append((name, member))
    for name, member in checked:
        parts = name.split("/")
        for depth in range(1, len(parts)):
            if "/".join(parts[:depth]) in files:
                raise UnsafeArchiveError(f"{archive} holds member {member.name!r} inside "
                                         f"{'/'.join(parts[:depth])!r}, which is a file")
    return checked


def _checked_name(archive: Path, member: tarfile.TarInfo) -> str:
    raw = member.name
    if raw.startswith(("/", "\\")) or (len(raw) > 1 and raw[1] == ":" and raw[0].isalpha()):
        raise UnsafeArchiveError(f"{archive} holds member {raw!r} with an absolute path")
    parts = raw.replace("\\", "/").split("/")
    if ".." in parts:
        raise UnsafeArchiveError(f"{archive} holds member {raw!r} whose path climbs out with '..'")
    if "\x00" in raw:
        raise UnsafeArchiveError(f"{archive} holds member {raw!r} with a NUL in its name")
    kept = [part for part in parts if part not in ("", ".")]
    if len(kept) > MAX_DEPTH or len(raw) > MAX_NAME_LENGTH or any(len(part.encode()) > 255 for part in kept):
        raise UnsafeArchiveError(f"{archive} holds a member {len(kept)} folders deep and {len(raw)} characters long "
                                 f"(at most {MAX_DEPTH} and {MAX_NAME_LENGTH}, 255 bytes per name): {raw[:60]!r}...")
    return "/".join(kept)


def _check_type(archive: Path, member: tarfile.TarInfo) -> None:
    if member.isreg() and not member.issparse() or member.isdir():
        return
    if member.issym():
        kind = f"a symbolic link to {member.linkname!r}"
    elif member.islnk():
        kind = f"a hard link to {member.linkname!r}"
    elif member.ischr() or member.isblk():
        kind = "a device node"
    elif member.isfifo():
        kind = "a FIFO"
    elif member.issparse():
        kind = "a sparse file"
    else:
        kind = f"of unsupported type {member.type!r}"
    raise UnsafeArchiveError(f"{archive} holds member {member.name!r}, which is {kind}")


def _extract_member(tar: tarfile.TarFile, member: tarfile.TarInfo, staging: Path,
                    archive: Path) -> None:
    if _HAVE_DATA_FILTER:
        try:
            tar.extract(member, staging, set_attrs=True, filter="data")
        except tarfile.FilterError as error:
            raise UnsafeArchiveError(f"{archive} holds member {member.name!r}, refused by "
                                     f"tarfile's data filter: {error}") from error
        return
    # No filter in this Python: the checks above already hold; also drop owners and odd mode bits.
    member = copy.copy(member)
    member.uid, member.gid, member.uname, member.gname = os.getuid(), os.getgid(), "", ""
    executable = member.mode & 0o100
    member.mode = DIR_MODE if member.isdir() or executable else FILE_MODE
    trusted = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
    tar.extract(member, staging, set_attrs=True, **trusted)  # ("fully_trusted": tests on 3.12+)


def _move_into(staging: Path, dest: Path) -> None:
    if not dest.exists():
        os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp makes 0700; give the mode mkdir would
        os.rename(staging, dest)
        return
    for entry in sorted(os.listdir(staging)):
        os.rename(staging / entry, dest / entry)
    staging.rmdir()


@contextmanager
def _open_archive(archive: Path) -> Iterator[tarfile.TarFile]:
    try:
        tar = tarfile.open(archive, "r:*")
    except FileNotFoundError as error:
        raise InputFileError(f"cannot open {archive}: it does not exist") from error
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise InputFileError(f"{archive} is not a readable tar archive: {error}") from error
    with tar:
        yield tar


@contextmanager
def _reading(archive: Path) -> Iterator[None]:
    """Turn a corrupt or truncated archive met while reading into one InputFileError."""
    try:
        yield
    except (tarfile.ReadError, tarfile.CompressionError, EOFError, zlib.error,
            gzip.BadGzipFile) as error:
        raise InputFileError(f"{archive} is corrupt or truncated: {error}") from error

