"""Release indexes: ``manifest.json`` in the ONNX hub's manifest form, and ``SHA256SUMS``.

The entries follow ``ONNX_HUB_MANIFEST.json`` of onnx/models field for field and in its key
order: ``model``, ``model_path``, ``onnx_version``, ``opset_version``, ``metadata`` (``model_sha``,
``model_bytes``, ``tags``, ``io_ports``, ``extra_ports`` where feature outputs are named,
``model_with_data_path``, ``model_with_data_sha``, ``model_with_data_bytes``).

Paths may carry a repository-relative prefix (``--model-path-prefix``, e.g. the zoo's
``validated/vision/classification/alexnet/model/``). A release is flat, so a listed path names
the file at that path inside the release folder if there is one, else the file of that name at
the top of the release folder, whatever its prefix
(``zooforge.artifacts.validation.listing.listed_file``);
a path that is absolute, holds ``..`` or a backslash, or ends in a folder names nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import onnx

from zooforge.converters.errors import InputFileError
from zooforge.converters.fileio import atomic_write_bytes, sha256_file

_PREFIX_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._ -]*")


@dataclass(frozen=True)
class Artifact:
    """One published model: its file, its tarball with test data, and what the hub records."""

    model: str            # the zoo's name, e.g. "AlexNet", "AlexNet-int8"
    model_path: Path      # the .onnx file
    archive_path: Path    # the .tar.gz with test data
    onnx_version: str
    opset_version: int
    tags: tuple[str, ...] = ()
    extra_ports: tuple[tuple[str, str], ...] = ()  # (group, tensor name), e.g. ("features", "fc7_1")


def model_path_prefix(value: str) -> str:
    """``value`` as a folder prefix of manifest paths (``a/b/``; empty stays empty); a prefix that is
    absolute, climbs with ``..`` or has odd characters is refused."""
    parts = [part for part in value.strip().split("/") if part]
    if value.strip().startswith("/") or not all(_PREFIX_PART.fullmatch(part) and part not in (".", "..")
                                                  for part in parts):
        raise InputFileError(f"--model-path-prefix {value!r} must be a relative folder path such as "
                             "validated/vision/classification/alexnet/model/ (letters, digits, '.', '_', '-', "
                             "no '..', no leading '/')")
    return "".join(f"{part}/" for part in parts)


def model_tag(title: str) -> str:
    """The model's own tag, as the hub derives it: its lowercased name (``AlexNet`` -> ``alexnet``)."""
    return title.lower()


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


def tensor_shapes(graph: onnx.ModelProto, external: Mapping[str, Sequence[int]], names: Iterable[str]
                  ) -> dict[str, list[int | str]]:
    """Shapes of the named tensors of ``graph`` from onnx's shape inference; ``external`` gives the
    shapes of initializers kept outside ``graph``. Tensors absent or without a shape are left out."""
    wanted = set(names)
    probe = onnx.ModelProto()
    probe.CopyFrom(graph)
    listed = {v.name for v in probe.graph.input}
    for name, shape in external.items():
        if name not in listed:
            probe.graph.input.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, list(shape)))
    try:
        inferred = onnx.shape_inference.infer_shapes(probe)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError):
        inferred = probe
    shapes = {}
    for value in [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]:
        tensor = value.type.tensor_type
        if value.name in wanted and tensor.HasField("shape") and value.name not in shapes:
            shapes[value.name] = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in tensor.shape.dim]
    return shapes


def manifest_entry(artifact: Artifact, root: Path, graph: onnx.ModelProto,
                   external: Iterable[str] = (), prefix: str = "",
                   feature_shapes: Mapping[str, list[int | str]] | None = None) -> dict[str, object]:
    """The hub's record of ``artifact``, keys in the hub's order; ``graph`` is the model (its weights
    are not needed; name the initializers missing from it in ``external``). Paths get ``prefix``
    (``model_path_prefix``); ``extra_ports`` lists the artifact's named tensors found in
    ``feature_shapes`` (name -> shape), and is left out when none is."""
    metadata: dict[str, object] = {
        "model_sha": sha256_file(artifact.model_path),
        "model_bytes": artifact.model_path.stat().st_size,
        "tags": list(artifact.tags),
        "io_ports": io_ports(graph, external),
    }
    extra: dict[str, list[dict[str, object]]] = {}
    for group, name in artifact.extra_ports:
        if feature_shapes and name in feature_shapes:
            extra.setdefault(group, []).append({"name": name, "shape": list(feature_shapes[name])})
    if extra:
        metadata["extra_ports"] = extra
    metadata.update({
        "model_with_data_path": prefix + artifact.archive_path.relative_to(root).as_posix(),
        "model_with_data_sha": sha256_file(artifact.archive_path),
        "model_with_data_bytes": artifact.archive_path.stat().st_size,
    })
    return {
        "model": artifact.model,
        "model_path": prefix + artifact.model_path.relative_to(root).as_posix(),
        "onnx_version": artifact.onnx_version,
        "opset_version": artifact.opset_version,
        "metadata": metadata,
    }


def write_manifest(path: Path, entries: list[dict[str, object]]) -> None:
    """The entries as the hub writes its manifest: keys in the order given, four-space indents."""
    atomic_write_bytes(path, (json.dumps(entries, indent=4) + "\n").encode())


def write_sha256sums(root: Path, path: Path) -> None:
    """``sha256sum -c`` format for every file under ``root`` except the sums file itself."""
    lines = []
    for file in sorted(p for p in Path(root).rglob("*") if p.is_file() and p != path):
        lines.append(f"{sha256_file(file)}  {file.relative_to(root).as_posix()}\n")
    atomic_write_bytes(path, "".join(lines).encode())
