"""The provenance stamp inside each ONNX model zooforge writes (``docs/provenance-format.md``).

A stamp records the lineage line, the source files and the parent artifact the model was made
from (by name and SHA-256), the settings it was made with and whether its weights are synthetic:

- ``producer_name`` = ``zooforge``, ``producer_version`` = zooforge's version;
- ``doc_string`` = the lineage line (then, for synthetic weights, a sentence saying so);
- ``metadata_props`` ``zooforge.lineage``, ``zooforge.sources``, ``zooforge.parents``,
  ``zooforge.settings`` (JSON, sorted keys, no spaces) and ``zooforge.synthetic_weights``.

Stamping is deterministic: the same model and lineage give the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from converters import __version__
from converters.api import SYNTHETIC_NOTE
from converters.errors import InputFileError

PRODUCER = "zooforge"
ROLES = ("prototxt", "weights", "predict_net", "init_net", "value_info", "onnx")

KEY_LINEAGE = "zooforge.lineage"
KEY_SOURCES = "zooforge.sources"
KEY_PARENTS = "zooforge.parents"
KEY_SETTINGS = "zooforge.settings"
KEY_SYNTHETIC = "zooforge.synthetic_weights"
STAMP_KEYS = (KEY_LINEAGE, KEY_PARENTS, KEY_SETTINGS, KEY_SOURCES, KEY_SYNTHETIC)

SYNTHETIC_SENTENCE = SYNTHETIC_NOTE  # the sentence zoo-convert writes for synthetic weights

_HEX64 = re.compile(r"[0-9a-f]{64}")


class LineageError(InputFileError):
    """A model's zooforge stamp is present but malformed."""


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces after separators: the same value, the same bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _check_digest(what: str, digest: object) -> str:
    if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
        raise LineageError(f"{what}: sha256 {digest!r} is not 64 lowercase hex digits")
    return digest


@dataclass(frozen=True)
class SourceFile:
    """A file the conversion read: its file name, its role and its SHA-256."""

    name: str
    role: str
    sha256: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise LineageError(f"source {self.name!r}: role {self.role!r} is not one of {', '.join(ROLES)}")
        _check_digest(f"source {self.name!r}", self.sha256)

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "role": self.role, "sha256": self.sha256}


@dataclass(frozen=True)
class ParentRef:
    """The artifact a model was made from: its release-relative path and its SHA-256."""

    name: str
    sha256: str

    def __post_init__(self) -> None:
        _check_digest(f"parent {self.name!r}", self.sha256)

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "sha256": self.sha256}


class FrozenSettings(Mapping[str, Any]):
    """A read-only, hashable JSON object: nested objects are FrozenSettings, arrays are tuples.

    Compares equal to any mapping with the same JSON form, so ``lineage.settings == {...}``
    works with plain dicts and lists.
    """

    __slots__ = ("_items", "_json")

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        thawed = _thaw(dict(values or {}))
        try:
            self._json = canonical_json(thawed)
        except (TypeError, ValueError) as exc:
            raise LineageError(f"settings are not JSON: {exc}") from None
        self._items = {key: _freeze(thawed[key]) for key in sorted(thawed)}

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(self._json)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrozenSettings):
            return self._json == other._json
        if isinstance(other, Mapping):
            try:
                return self._json == canonical_json(_thaw(dict(other)))
            except (TypeError, ValueError):
                return False
        return NotImplemented

    def __repr__(self) -> str:
        return f"FrozenSettings({self._json})"

    def to_json(self) -> dict[str, Any]:
        """A plain, mutable copy (dicts and lists)."""
        return _thaw(self)


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return FrozenSettings(value)
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(item) for item in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(key): _thaw(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_thaw(item) for item in value]
    return value


@dataclass(frozen=True)
class Lineage:
    """How an artifact was made (see the module docstring)."""

    line: str
    sources: tuple[SourceFile, ...] = ()
    parents: tuple[ParentRef, ...] = ()
    settings: Mapping[str, Any] = field(default_factory=FrozenSettings)
    synthetic: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", tuple(self.sources))
        object.__setattr__(self, "parents", tuple(self.parents))
        if not isinstance(self.settings, FrozenSettings):
            object.__setattr__(self, "settings", FrozenSettings(self.settings))
        object.__setattr__(self, "synthetic", bool(self.synthetic))

    @property
    def doc_string(self) -> str:
        return f"{self.line}\n\n{SYNTHETIC_SENTENCE}" if self.synthetic else self.line

    def metadata(self) -> dict[str, str]:
        """The five ``zooforge.*`` metadata values, by key."""
        return {
            KEY_LINEAGE: self.line,
            KEY_SOURCES: canonical_json([s.to_json() for s in self.sources]),
            KEY_PARENTS: canonical_json([p.to_json() for p in self.parents]),
            KEY_SETTINGS: canonical_json(self.settings.to_json()),
            KEY_SYNTHETIC: "true" if self.synthetic else "false",
        }


def settings_dict(*, target_opset: int, compat: str | None = None, names: str = "zoo",
                  input_shape: Iterable[int] | None = None, dynamic_batch: bool = False,
                  quantization: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``zooforge.settings`` object; ``quantization`` only for quantized models
    (build it with :func:`quantization_settings`)."""
    settings: dict[str, Any] = {
        "target_opset": int(target_opset),
        "compat": compat,
        "names": names,
        "input_shape": None if input_shape is None else [int(d) for d in input_shape],
        "dynamic_batch": bool(dynamic_batch),
    }
    if quantization is not None:
        settings["quantization"] = dict(quantization)
    return settings


def quantization_settings(format: str, samples: int, seed: int, calibration: str,  # noqa: A002
                          calibration_sha256: str) -> dict[str, Any]:
    """The ``quantization`` member of the settings (see :func:`calibration_digest`)."""
    if format not in ("int8", "qdq"):
        raise LineageError(f"quantization format {format!r} is not int8 or qdq")
    return {"format": format, "samples": int(samples), "seed": int(seed), "calibration": calibration,
            "calibration_sha256": _check_digest("calibration", calibration_sha256)}


def calibration_digest(*, file_digests: Iterable[str] | None = None,
                       recipe: Mapping[str, Any] | None = None) -> str:
    """``calibration_sha256``: the SHA-256 of the calibration files' hex digests, sorted, one per
    line (each line ending in ``\\n``), or of the seeded recipe's canonical JSON."""
    if (file_digests is None) == (recipe is None):
        raise ValueError("give exactly one of file_digests and recipe")
    if file_digests is not None:
        payload = "".join(f"{digest}\n" for digest in sorted(file_digests))
    else:
        payload = canonical_json(_thaw(recipe))
    return hashlib.sha256(payload.encode()).hexdigest()


def stamp(model: onnx.ModelProto, lineage: Lineage) -> None:
    """Write ``lineage`` into ``model`` (in place): producer, doc_string and the ``zooforge.*``
    metadata, replacing an earlier stamp, keeping every other key; keys end up sorted."""
    model.producer_name = PRODUCER
    model.producer_version = __version__
    model.doc_string = lineage.doc_string
    props = {entry.key: entry.value for entry in model.metadata_props if entry.key not in STAMP_KEYS}
    props.update(lineage.metadata())
    del model.metadata_props[:]
    for key in sorted(props):
        model.metadata_props.add(key=key, value=props[key])


def read_lineage(model_or_path: onnx.ModelProto | Path | str) -> Lineage | None:
    """The lineage stamped in a model (or an .onnx file); None when it carries no zooforge stamp."""
    if isinstance(model_or_path, onnx.ModelProto):
        model, where = model_or_path, "model"
    else:
        path = Path(model_or_path)
        where = str(path)
        if not path.is_file():
            raise InputFileError(f"{path} does not exist or is not a file")
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as exc:  # noqa: BLE001 - protobuf raises several kinds of decode error
            raise InputFileError(f"{path} is not an ONNX model: {exc}") from None
    props = {entry.key: entry.value for entry in model.metadata_props}
    if KEY_LINEAGE not in props:
        return None
    return _parse(props, where)


def _parse(props: Mapping[str, str], where: str) -> Lineage:
    def load(key: str, kind: type) -> Any:
        if key not in props:
            raise LineageError(f"{where}: has {KEY_LINEAGE} but no {key}")
        try:
            value = json.loads(props[key])
        except json.JSONDecodeError as exc:
            raise LineageError(f"{where}: {key} is not JSON ({exc.msg})") from None
        if not isinstance(value, kind):
            raise LineageError(f"{where}: {key} is not a JSON {'list' if kind is list else 'object'}")
        return value

    try:
        sources = tuple(SourceFile(item["name"], item["role"], item["sha256"]) for item in load(KEY_SOURCES, list))
        parents = tuple(ParentRef(item["name"], item["sha256"]) for item in load(KEY_PARENTS, list))
    except (KeyError, TypeError) as exc:
        raise LineageError(f"{where}: a source or parent entry lacks {exc}") from None
    except LineageError as exc:
        raise LineageError(f"{where}: {exc}") from None
    settings = load(KEY_SETTINGS, dict)
    synthetic = props.get(KEY_SYNTHETIC)
    if synthetic not in ("true", "false"):
        raise LineageError(f"{where}: {KEY_SYNTHETIC} is {synthetic!r}, not \"true\" or \"false\"")
    return Lineage(props[KEY_LINEAGE], sources, parents, settings, synthetic == "true")
