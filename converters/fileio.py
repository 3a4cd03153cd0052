"""File writing that never leaves half a file behind."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from zooforge.converters.errors import OutputFileError
from zooforge.converters.interrupts import held_termination
from zooforge.converters.safety import check_output_file, owner_tag, remove_stale


@contextmanager
def atomic_writer(path: Path) -> Iterator[BinaryIO]:
    """Yield a stream to a temporary sibling of ``path``; rename it into place only on success.

    ``path`` must be absent or a regular file (never a device, FIFO, socket, link or folder). The
    sibling is named after this process, and the leftovers of killed writers of ``path`` go.
    """
    path = Path(path)
    check_output_file(path)
    remove_stale(path.parent, f".{path.name}.")
    temp = None
    try:
        with held_termination():  # a signal meanwhile arrives once `temp` names what to remove
            handle, temp = tempfile.mkstemp(prefix=f".{path.name}.{owner_tag()}-", dir=path.parent)
            stream = os.fdopen(handle, "wb")
        with stream:
            yield stream
        os.chmod(temp, 0o666 & ~current_umask())  # mkstemp makes 0600; give the mode open() would
        os.replace(temp, path)
    except BaseException as exc:
        if temp is not None:
            Path(temp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OutputFileError(path, exc) from None
        raise


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    with atomic_writer(path) as stream:
        stream.write(payload)


def current_umask() -> int:
    """The process's file-creation mask (reading it means setting it; it is put back at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256_file(path: Path) -> str:
    """The file's SHA-256, read in 4 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        while chunk := stream.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()
