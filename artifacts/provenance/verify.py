"""Check a release (or one downloaded file) against what the release itself records.

``verify_release`` checks, in order: ``SHA256SUMS`` (every listed file has its digest and no file is
unlisted), ``manifest.json`` (each model and tarball has the recorded sha256 and size),
``provenance.intoto.jsonl`` when present (the statements parse, each subject's digest is its
file's, and each recorded parent artifact is in the release with its digest) and ``release.sig``
(when a public key is given; without one a present signature is only noted). Problems name the
file at fault: ``changed: X``, ``added: Y``, ``removed: Z``, ``renamed? X -> Y``, or a line
beginning with the index that disagrees (``manifest.json: ...``, ``provenance: ...``,
``signature: ...``, ``release.sig ...``). An unusable argument (no such folder, an unreadable key) raises
InputFileError instead.
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from zooforge.artifacts.release.manifest import sha256_file
from zooforge.artifacts.validation.listing import listed_file
from zooforge.artifacts.provenance.statements import STATEMENTS_FILE, check_subjects, read_statements
from zooforge.artifacts.provenance.signing import SIGNATURE_NAME, load_public_key, verify_signature
from zooforge.converters.errors import InputFileError

SUMS_NAME = "SHA256SUMS"
MANIFEST_NAME = "manifest.json"
PROVENANCE_NAME = STATEMENTS_FILE
_SUMS_LINE = re.compile(r"^(?P<digest>[0-9a-f]{64}) [ *](?P<name>.+)$")


@dataclass
class VerifyReport:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checked: dict[str, object] = field(default_factory=dict)

    @property
    def verified(self) -> bool:
        return not self.problems


def verify_release(release: Path, public_key: Path | None = None) -> VerifyReport:
    """Check ``release`` against its own indexes and, with ``public_key``, its signature."""
    release = Path(release)
    if not release.exists():
        raise InputFileError(f"release folder {release} does not exist")
    if not release.is_dir():
        raise InputFileError(f"{release} is not a folder; to check one file give --manifest")
    if public_key is not None:
        load_public_key(public_key)  # an unusable key is the caller's error, found before any hashing
    report = VerifyReport()
    digests = _Digests(release)
    _check_sums(release, digests, report)
    _check_manifest(release, digests, report)
    _check_provenance(release, digests, report)
    _check_signature(release, public_key, report)
    return report


def verify_artifact(file: Path, manifest: Path) -> VerifyReport:
    """Check one downloaded ``.onnx`` or ``.tar.gz`` against the release's ``manifest.json``
    (matched by file name); a tarball's ``model.onnx`` must also be the manifest's model."""
    file, manifest = Path(file), Path(manifest)
    if not file.is_file():
        raise InputFileError(f"{file} does not exist or is not a file")
    tarball = file.name.endswith(".tar.gz")
    if not tarball and file.suffix != ".onnx":
        raise InputFileError(f"{file.name} is neither an .onnx model nor a .tar.gz archive of the release")
    entries = _load_manifest(manifest)
    if entries is None:
        raise InputFileError(f"manifest {manifest} does not exist")
    if isinstance(entries, str):
        raise InputFileError(f"manifest {manifest} {entries}")
    report = VerifyReport()
    key = "model_with_data" if tarball else "model"

    def listed_name(entry: dict) -> str:
        path = entry["metadata"].get("model_with_data_path") if tarball else entry.get("model_path")
        return Path(str(path or "")).name

    matches = [e for e in entries if listed_name(e) == file.name]
    if not matches:
        report.problems.append(f"{file.name} is not listed in {manifest.name} (as a {key}_path)")
        return report
    entry = matches[0]
    recorded_sha, recorded_bytes = entry["metadata"].get(f"{key}_sha"), entry["metadata"].get(f"{key}_bytes")
    sha, size = sha256_file(file), file.stat().st_size
    report.checked["sha256"] = sha
    if sha != recorded_sha:
        report.problems.append(f"changed: {file.name} has sha256 {sha}, {manifest.name} records {recorded_sha}")
    if size != recorded_bytes:
        report.problems.append(f"changed: {file.name} is {size} bytes, {manifest.name} records {recorded_bytes}")
    if tarball:
        inner = _inner_model_sha(file)
        if inner is None:
            report.problems.append(f"{file.name} holds no readable model.onnx")
        elif inner != entry["metadata"].get("model_sha"):
            report.problems.append(f"{file.name}: its model.onnx is not the manifest's "
                                   f"{Path(str(entry.get('model_path'))).name}")
    report.checked["entry"] = entry.get("model_path")
    return report


# ------------------------------------------------------------------------------------ helpers


class _Digests:
    """sha256 of release files, each computed once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._cache: dict[str, str | None] = {}

    def __call__(self, name: str) -> str | None:
        if name not in self._cache:
            path = self.root / name
            self._cache[name] = sha256_file(path) if _inside(self.root, path) and path.is_file() else None
        return self._cache[name]


def _inside(root: Path, path: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def _release_files(release: Path) -> list[str]:
    return sorted(p.relative_to(release).as_posix() for p in release.rglob("*")
                  if p.is_file() and not p.is_symlink()
                  and p.relative_to(release).as_posix() not in (SUMS_NAME, SIGNATURE_NAME))


def _odd_entries(release: Path) -> list[str]:
    """Entries no release holds: links, devices, FIFOs, and folders without a file below them."""
    odd = []
    for path in sorted(release.rglob("*")):
        name = path.relative_to(release).as_posix()
        if path.is_symlink():
            odd.append(f"added: {name} (a symbolic link)")
        elif path.is_dir():
            if not any(p.is_file() and not p.is_symlink() for p in path.rglob("*")):
                odd.append(f"added: {name}/ (a folder with no files)")
        elif not path.is_file():
            odd.append(f"added: {name} (not a regular file)")
    return odd


def _recorded_elsewhere(release: Path) -> dict[str, set[str]]:
    """sha256 digests that manifest.json and the provenance statements record, by file name."""
    records: dict[str, set[str]] = {}
    entries = _load_manifest(release / MANIFEST_NAME)
    for entry in entries if isinstance(entries, list) else []:
        meta = entry["metadata"]
        for name, digest in ((entry.get("model_path"), meta.get("model_sha")),
                             (meta.get("model_with_data_path"), meta.get("model_with_data_sha"))):
            file = listed_file(release, name)
            if file is not None and digest:
                records.setdefault(file.relative_to(release).as_posix(), set()).add(str(digest))
    try:
        statements = read_statements(release / PROVENANCE_NAME) if (release / PROVENANCE_NAME).is_file() else []
    except InputFileError:
        statements = []
    for statement in statements:
        for subject in statement.get("subject", []):
            records.setdefault(str(subject["name"]), set()).add(str(subject["digest"]["sha256"]))
    return records


def _check_sums(release: Path, digests: _Digests, report: VerifyReport) -> None:
    sums = release / SUMS_NAME
    if not sums.is_file():
        report.problems.append(f"{SUMS_NAME} is missing")
        report.checked["sha256sums"] = 0
        return
    listed: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for number, line in enumerate(sums.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        match = _SUMS_LINE.match(line)
        if match is None:
            report.problems.append(f"{SUMS_NAME} line {number} is not '<sha256>  <file>'")
            continue
        if match["name"] in first_line:  # each line must hold: a second one must not hide the first
            report.problems.append(f"{SUMS_NAME} line {number} lists {match['name']} again "
                                   f"(first on line {first_line[match['name']]})")
            continue
        first_line[match["name"]] = number
        listed[match["name"]] = match["digest"]
    present = set(_release_files(release))
    changed = [n for n in listed if n in present and digests(n) != listed[n]]
    removed = [n for n in listed if n not in present]
    added = sorted(present - set(listed))
    renamed = []
    for old in list(removed):
        for new in added:
            if digests(new) == listed[old]:
                renamed.append(f"renamed? {old} -> {new}")
                removed.remove(old)
                added.remove(new)
                break
    elsewhere = _recorded_elsewhere(release)
    blamed = []
    for name in changed:
        if elsewhere.get(name) == {digests(name)}:  # the file is what the other indexes say: the line is wrong
            blamed.append(f"changed: {SUMS_NAME} (its line for {name} records {listed[name]}, but {name} has the "
                          "sha256 that manifest.json and the provenance statements record)")
        else:
            blamed.append(f"changed: {name}")
    report.problems += (blamed + [f"added: {n}" for n in added]
                        + [f"removed: {n}" for n in removed] + renamed + _odd_entries(release))
    report.checked["sha256sums"] = len(listed)


def _load_manifest(path: Path) -> list[dict] | str | None:
    """The manifest's entries; None when absent; a sentence (str) when unusable."""
    if not path.is_file():
        return None
    try:
        entries = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"is not readable JSON ({exc})"
    if not isinstance(entries, list) or not all(
            isinstance(e, dict) and isinstance(e.get("metadata"), dict) for e in entries):
        return "is not a list of entries with metadata"
    return entries


def _check_manifest(release: Path, digests: _Digests, report: VerifyReport) -> None:
    entries = _load_manifest(release / MANIFEST_NAME)
    if entries is None:
        report.problems.append(f"{MANIFEST_NAME} is missing")
        return
    if isinstance(entries, str):
        report.problems.append(f"{MANIFEST_NAME} {entries}")
        return
    for entry in entries:
        meta = entry["metadata"]
        for key, name in (("model", entry.get("model_path")), ("model_with_data", meta.get("model_with_data_path"))):
            if not name:
                report.problems.append(f"{MANIFEST_NAME}: an entry ({entry.get('model')}) has no {key}_path")
                continue
            path = listed_file(release, name)  # a --model-path-prefix is the zoo's folder, not the release's
            sha = digests(path.relative_to(release).as_posix()) if path is not None else None
            if sha is None:
                report.problems.append(f"{MANIFEST_NAME}: {name} is missing")
                continue
            if sha != meta.get(f"{key}_sha"):
                report.problems.append(f"{MANIFEST_NAME}: {name} has sha256 {sha}, the manifest records "
                                       f"{meta.get(f'{key}_sha')}")
            if path.stat().st_size != meta.get(f"{key}_bytes"):
                report.problems.append(f"{MANIFEST_NAME}: {name} is {path.stat().st_size} bytes, the manifest "
                                       f"records {meta.get(f'{key}_bytes')}")
    report.checked["manifest"] = len(entries)


def _check_provenance(release: Path, digests: _Digests, report: VerifyReport) -> None:
    path = release / PROVENANCE_NAME
    if not path.is_file():
        report.notes.append(f"no {PROVENANCE_NAME}: provenance not checked")
        report.checked["provenance"] = None
        return
    try:
        statements = read_statements(path)
    except InputFileError as exc:  # ProvenanceError: a malformed line makes the release unverified
        report.problems.append(f"provenance: {str(exc).replace(str(path), PROVENANCE_NAME)}")
        report.checked["provenance"] = None
        return
    report.problems += [p if p.startswith("provenance:") else f"provenance: {p}"
                        for p in check_subjects(release, statements)]
    for statement in statements:
        subject = _subject_name(statement)
        dependencies = (statement.get("predicate", {}).get("buildDefinition", {}).get("resolvedDependencies", [])
                        if isinstance(statement.get("predicate"), dict) else [])
        for dependency in dependencies if isinstance(dependencies, list) else []:
            if not isinstance(dependency, dict) or (dependency.get("annotations") or {}).get("role") != "parent":
                continue
            name = str(dependency.get("name", ""))
            recorded = (dependency.get("digest") or {}).get("sha256")
            actual = digests(name) if name else None
            if actual is None:
                report.problems.append(f"provenance: {subject}: parent {name or '(unnamed)'} is not in the release")
            elif actual != recorded:
                report.problems.append(f"provenance: {subject}: parent {name} has sha256 {actual}, "
                                       f"its statement records {recorded}")
    report.checked["provenance"] = len(statements)


def _subject_name(statement: dict) -> str:
    """The first subject's name (read_statements refuses a statement without a named subject)."""
    return str(statement["subject"][0]["name"])


def _check_signature(release: Path, public_key: Path | None, report: VerifyReport) -> None:
    present = (release / SIGNATURE_NAME).is_file()
    if public_key is None:
        if present:
            report.notes.append("signature present, not checked: pass --public-key")
            report.checked["signature"] = "not checked"
        else:
            report.notes.append(f"no {SIGNATURE_NAME}: the release is unsigned")
            report.checked["signature"] = "absent"
        return
    problems = verify_signature(release, public_key)
    report.problems += [p if p.startswith(SIGNATURE_NAME) else f"signature: {p}" for p in problems]
    report.checked["signature"] = "failed" if problems else "verified"


def _inner_model_sha(archive: Path) -> str | None:
    try:
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                if member.isfile() and member.name.split("/")[-1] == "model.onnx":
                    stream = tar.extractfile(member)
                    return hashlib.sha256(stream.read()).hexdigest() if stream else None
    except (OSError, tarfile.TarError, EOFError):
        return None
    return None
