"""Which file of a release folder a ``manifest.json`` path names.

Manifest paths may carry a repository-relative prefix (zoo-package's ``--model-path-prefix``, e.g.
``validated/vision/classification/alexnet/model/bvlcalexnet-12.onnx``), while a release folder is
flat. A listed path names the file at that path inside the folder if there is one, else the file
of its name at the top of the folder. A path that is absolute, holds ``..`` or a backslash, or
ends in a folder names nothing, so no listed path leads outside the folder.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath


def listed_file(root: Path, listed: object) -> Path | None:
    """The file of the release folder ``root`` that the manifest path ``listed`` names, or None."""
    if not isinstance(listed, str) or not listed or "\\" in listed or listed.endswith("/"):
        return None
    path = PurePosixPath(listed)
    if path.is_absolute() or ".." in path.parts or path.name in ("", "."):
        return None
    whole = Path(root) / path
    return whole if whole.is_file() else Path(root) / path.name
