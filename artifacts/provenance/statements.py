"""A release's ``provenance.intoto.jsonl``: one in-toto Statement v1 with a SLSA v1 provenance
predicate per artifact, sorted by subject name (``docs/provenance-format.md``).

Statements are written as compact JSON with sorted keys and carry timestamps taken from
``SOURCE_DATE_EPOCH``, so a rebuild gives the same bytes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

from zooforge.converters.lineage import Lineage, canonical_json
from zooforge.artifacts.release.manifest import sha256_file
from zooforge.converters import __version__
from zooforge.converters.errors import InputFileError
from zooforge.converters.fileio import atomic_write_bytes

STATEMENTS_FILE = "provenance.intoto.jsonl"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://zooforge.invalid/buildtypes/release/v1"
BUILDER_ID = "https://zooforge.invalid/builder/zoo-package"
CAFFE2_FILES = ("predict_net.pb", "init_net.pb", "value_info.json")
BUILDER_PACKAGES = ("onnx", "onnxruntime", "numpy", "protobuf")

_HEX64 = re.compile(r"[0-9a-f]{64}")


class ProvenanceError(InputFileError):
    """A provenance file is missing, or a line of it is not a zooforge SLSA statement."""


def rfc3339(epoch: int) -> str:
    """``epoch`` (seconds since 1970, UTC) as RFC 3339, e.g. ``1970-01-01T00:00:00Z``."""
    return datetime.fromtimestamp(int(epoch), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def builder_versions() -> dict[str, str]:
    """zooforge's version and those of the packages that shape its output; missing ones omitted."""
    versions = {"zooforge": __version__}
    for package in BUILDER_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def artifact_stem(name: str) -> str:
    """``bvlcalexnet-12.onnx`` and ``bvlcalexnet-12.tar.gz`` -> ``bvlcalexnet-12``;
    ``caffe2/predict_net.pb`` -> ``predict_net``."""
    base = PurePosixPath(name).name
    if base.endswith(".tar.gz"):
        return base[: -len(".tar.gz")]
    return PurePosixPath(base).stem


def _digest(name: str, sha256: str) -> dict[str, Any]:
    if not isinstance(sha256, str) or not _HEX64.fullmatch(sha256):
        raise ValueError(f"{name}: sha256 {sha256!r} is not 64 lowercase hex digits")
    return {"name": name, "digest": {"sha256": sha256}}


def statement(subject_name: str, subject_sha256: str, lineage: Lineage, *, release_name: str,
              internal: Mapping[str, Any], byproducts: Sequence[tuple[str, str]] = (), epoch: int,
              versions: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The statement for one artifact of the release.

    ``subject_name`` is release-relative (``bvlcalexnet-12.onnx``, ``caffe2/init_net.pb``);
    ``lineage`` gives the settings (``externalParameters``, with ``name`` = ``release_name``) and
    the sources and parents (``resolvedDependencies``, sources first). For artifacts without a
    stamp of their own (tarballs, Caffe2 files) build a :class:`Lineage` for them. ``byproducts``
    are ``(name, sha256)`` pairs (``parity.json``); ``versions`` defaults to :func:`builder_versions`.
    """
    dependencies = [
        {**_digest(source.name, source.sha256), "annotations": {"role": "source"}} for source in lineage.sources
    ] + [
        {**_digest(parent.name, parent.sha256), "annotations": {"role": "parent"}} for parent in lineage.parents
    ]
    timestamp = rfc3339(epoch)
    result = {
        "_type": STATEMENT_TYPE,
        "subject": [_digest(subject_name, subject_sha256)],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {**lineage.settings.to_json(), "name": release_name},
                "internalParameters": json.loads(canonical_json(dict(internal))),
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {"id": BUILDER_ID,
                            "version": dict(versions) if versions is not None else builder_versions()},
                "metadata": {"invocationId": f"{release_name}-{artifact_stem(subject_name)}",
                             "startedOn": timestamp, "finishedOn": timestamp},
                "byproducts": [_digest(name, sha256) for name, sha256 in byproducts],
            },
        },
    }
    return result


def subject_name(entry: Mapping[str, Any]) -> str:
    """The first subject's name of a statement."""
    return entry["subject"][0]["name"]


def write_statements(path: Path, statements: Sequence[Mapping[str, Any]]) -> None:
    """Write ``statements`` as JSON lines sorted by subject name (atomically)."""
    seen: set[str] = set()
    for index, entry in enumerate(statements, 1):
        problem = statement_problem(entry)
        if problem:
            raise ProvenanceError(f"statement {index} for {path}: {problem}")
        name = subject_name(entry)
        if name in seen:
            raise ProvenanceError(f"two statements for {name} in {path}")
        seen.add(name)
    lines = [canonical_json(entry) + "\n" for entry in sorted(statements, key=subject_name)]
    atomic_write_bytes(Path(path), "".join(lines).encode())


def read_statements(path: Path) -> list[dict[str, Any]]:
    """The statements of a ``provenance.intoto.jsonl``, each checked for the in-toto/SLSA shape."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProvenanceError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProvenanceError(f"cannot read {path}: {exc}") from None
    statements = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            raise ProvenanceError(f"{path} line {number}: empty line")
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ProvenanceError(f"{path} line {number}: not JSON ({exc.msg})") from None
        problem = statement_problem(entry)
        if problem:
            raise ProvenanceError(f"{path} line {number}: {problem}")
        statements.append(entry)
    if not statements:
        raise ProvenanceError(f"{path} holds no statements")
    return statements


def statement_problem(entry: object) -> str | None:
    """Why ``entry`` is not an in-toto Statement v1 with a SLSA v1 provenance predicate, or None."""
    if not isinstance(entry, dict):
        return "not a JSON object"
    if entry.get("_type") != STATEMENT_TYPE:
        return f"_type is {entry.get('_type')!r}, not {STATEMENT_TYPE!r}"
    if entry.get("predicateType") != PREDICATE_TYPE:
        return f"predicateType is {entry.get('predicateType')!r}, not {PREDICATE_TYPE!r}"
    subjects = entry.get("subject")
    if not isinstance(subjects, list) or not subjects:
        return "subject is not a non-empty list"
    for subject in subjects:
        problem = _descriptor_problem(subject, "subject")
        if problem:
            return problem
    predicate = entry.get("predicate")
    if not isinstance(predicate, dict):
        return "predicate is not an object"
    build = predicate.get("buildDefinition")
    if not isinstance(build, dict):
        return "predicate.buildDefinition is missing"
    if not isinstance(build.get("buildType"), str):
        return "predicate.buildDefinition.buildType is not a string"
    if not isinstance(build.get("externalParameters"), dict):
        return "predicate.buildDefinition.externalParameters is not an object"
    for key in ("internalParameters",):
        if key in build and not isinstance(build[key], dict):
            return f"predicate.buildDefinition.{key} is not an object"
    dependencies = build.get("resolvedDependencies", [])
    if not isinstance(dependencies, list):
        return "predicate.buildDefinition.resolvedDependencies is not a list"
    for dependency in dependencies:
        problem = _descriptor_problem(dependency, "resolvedDependencies entry")
        if problem:
            return problem
    run = predicate.get("runDetails")
    if not isinstance(run, dict):
        return "predicate.runDetails is missing"
    builder = run.get("builder")
    if not isinstance(builder, dict) or not isinstance(builder.get("id"), str):
        return "predicate.runDetails.builder.id is missing"
    if "metadata" in run and not isinstance(run["metadata"], dict):
        return "predicate.runDetails.metadata is not an object"
    byproducts = run.get("byproducts", [])
    if not isinstance(byproducts, list):
        return "predicate.runDetails.byproducts is not a list"
    for byproduct in byproducts:
        problem = _descriptor_problem(byproduct, "byproducts entry")
        if problem:
            return problem
    return None


def _descriptor_problem(descriptor: object, what: str) -> str | None:
    if not isinstance(descriptor, dict):
        return f"a {what} is not an object"
    name = descriptor.get("name")
    if not isinstance(name, str) or not name:
        return f"a {what} has no name"
    digest = descriptor.get("digest")
    if not isinstance(digest, dict) or "sha256" not in digest:
        return f"{what} {name} has no sha256 digest"
    if not isinstance(digest["sha256"], str) or not _HEX64.fullmatch(digest["sha256"]):
        return f"{what} {name}: sha256 {digest['sha256']!r} is not 64 lowercase hex digits"
    return None


def find_statement(statements: Sequence[Mapping[str, Any]], name: str) -> Mapping[str, Any] | None:
    """The statement whose subjects include ``name`` (release-relative), or None."""
    for entry in statements:
        if any(subject.get("name") == name for subject in entry.get("subject", [])):
            return entry
    return None


def check_subjects(release_dir: Path, statements: Sequence[Mapping[str, Any]], *,
                   expect: Sequence[str] | None = None) -> list[str]:
    """Problems with the statements' subjects in ``release_dir``: missing files, digests that do
    not match the files, names outside the release, subjects stated twice, and (``expect``:
    release-relative names that must have a statement; default: every ``.onnx`` and ``.tar.gz``
    at the top of the release and the Caffe2 files) artifacts without a statement. Empty: all good."""
    release_dir = Path(release_dir)
    problems: list[str] = []
    named: set[str] = set()
    for entry in statements:
        for subject in entry["subject"]:
            name, recorded = subject["name"], subject["digest"]["sha256"]
            relative = PurePosixPath(name)
            if relative.is_absolute() or ".." in relative.parts or "\\" in name:
                problems.append(f"provenance: subject {name} is not a path inside the release")
                continue
            if name in named:
                problems.append(f"provenance: subject {name} has more than one statement")
                continue
            named.add(name)
            path = release_dir / relative
            if not path.is_file():
                problems.append(f"provenance: subject {name} is missing")
                continue
            actual = sha256_file(path)
            if actual != recorded:
                problems.append(f"provenance: subject {name} has sha256 {recorded} but the file has {actual}")
    if expect is None:
        expect = sorted(
            [p.name for p in release_dir.iterdir() if p.is_file() and p.name.endswith((".onnx", ".tar.gz"))]
            + [f"caffe2/{name}" for name in CAFFE2_FILES if (release_dir / "caffe2" / name).is_file()]
        ) if release_dir.is_dir() else []
    for name in expect:
        if name not in named:
            problems.append(f"provenance: {name} has no statement")
    return problems
