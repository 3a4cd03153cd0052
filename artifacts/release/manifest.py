"""Release indexes: ``manifest.json`` in the ONNX hub's manifest form, and ``SHA256SUMS``."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import onnx

from zooforge.converters.fileio import atomic_write_bytes, sha256_file

@dataclass(frozen=True)
class Artifact:
    """One published model: its file, its tarball with test data, and what the hub records."""

    model: str            # display name, e.g. "BVLC AlexNet"
    model_path: Path      # the .onnx file
    archive_path: Path    # the .tar.gz with test data
    onnx_version: str
    opset_version: int
    tags: tuple[str, ...] = ()


def io_ports(model: onnx.ModelProto, external: Iterable[str] = ()) -> dict[str, list[dict[str, object]]]:
    """The graph's real inputs and outputs; ``external`` names initializers kept outside ``model``
    (``OnnxModel.large``), which an IR 3 graph also lists among its inputs."""
    initializers = {t.name for t in model.graph.initializer} | set(external)

    def describe(values: Iterable[onnx.ValueInfoProto]) -> list[dict[str, object]]:
        ports = []
        for value in values:
            if value.name in initializers:
                continue
            tensor = value.type.tensor_type
            ports.append({
                "name": value.name,
                "shape": [d.dim_value if d.HasField("dim_value") else d.dim_param for d in tensor.shape.dim],
                "type": f"tensor({onnx.helper.tensor_dtype_to_string(tensor.elem_type).split('.')[-1].lower()})",
            })
        return ports

    return {"inputs": describe(model.graph.input), "outputs": describe(model.graph.output)}


def manifest_entry(artifact: Artifact, root: Path, graph: onnx.ModelProto,
                   external: Iterable[str] = ()) -> dict[str, object]:
    """The hub's record of ``artifact``; ``graph`` is the model (its weights are not needed; name the
    initializers missing from it in ``external``)."""
    return {
        "model": artifact.model,
        "model_path": artifact.model_path.relative_to(root).as_posix(),
        "onnx_version": artifact.onnx_version,
        "opset_version": artifact.opset_version,
        "metadata": {
            "model_sha": sha256_file(artifact.model_path),
            "model_bytes": artifact.model_path.stat().st_size,
            "tags": list(artifact.tags),
            "io_ports": io_ports(graph, external),
            "model_with_data_path": artifact.archive_path.relative_to(root).as_posix(),
            "model_with_data_sha": sha256_file(artifact.archive_path),
            "model_with_data_bytes": artifact.archive_path.stat().st_size,
        },
    }


def write_manifest(path: Path, entries: list[dict[str, object]]) -> None:
    atomic_write_bytes(path, (json.dumps(entries, indent=2, sort_keys=True) + "\n").encode())


def write_sha256sums(root: Path, path: Path) -> None:
    """``sha256sum -c`` format for every file under ``root`` except the sums file itself."""
    lines = []
    for file in sorted(p for p in Path(root).rglob("*") if p.is_file() and p != path):
        lines.append(f"{sha256_file(file)}  {file.relative_to(root).as_posix()}\n")
    atomic_write_bytes(path, "".join(lines).encode())
