"""How a released artifact was made, from its source files down to it (the library behind ``zoo-lineage``).

The lineage is read from the model's own stamp (``zooforge.converters.lineage``) and, when the release
folder is known, from the release's ``provenance.intoto.jsonl``; parents are followed through the
release (an ``.onnx`` parent: its stamp; any other parent: its statement).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from zooforge.converters.lineage import Lineage, SourceFile, canonical_json, read_lineage
from zooforge.artifacts.release.manifest import sha256_file
from zooforge.artifacts.provenance.statements import STATEMENTS_FILE, find_statement, read_statements
from zooforge.artifacts.release.tarball import safe_extract
from zooforge.converters.errors import InputFileError

SHORT = 12


@dataclass(frozen=True)
class Input:
    """A file a step read."""

    name: str
    sha256: str | None
    role: str | None = None


@dataclass
class Step:
    """How an artifact was made: ``verb`` ``inputs`` with ``settings``; ``children`` are the
    steps that made the inputs (with the input they belong to, when they differ)."""

    verb: str
    inputs: list[Input]
    settings: Mapping[str, Any]
    children: list[tuple[str | None, Step]] = field(default_factory=list)

    def key(self) -> str:
        return canonical_json([self.verb, [(i.name, i.sha256) for i in self.inputs], _plain(self.settings)])


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _is_caffe2(name: str) -> bool:
    path = PurePosixPath(name)
    return path.parts[0] == "caffe2" or path.name in ("predict_net.pb", "init_net.pb", "value_info.json")


def guess_role(name: str) -> str | None:
    """A source file's role from its name, when no stamp records it."""
    base = PurePosixPath(name).name
    if base.endswith(".prototxt"):
        return "prototxt"
    if base.endswith((".caffemodel", ".caffemodel.h5", ".h5")):
        return "weights"
    for role in ("predict_net", "init_net", "value_info"):
        if base.startswith(role):
            return role
    return "onnx" if base.endswith(".onnx") else None


class Walker:
    """Follows an artifact's parents through a release folder and its statements."""

    def __init__(self, release: Path | None, statements: Sequence[Mapping[str, Any]]) -> None:
        self.release = release
        self.statements = statements
        self.roles: dict[str, str] = {}
        self.digests: dict[str, str] = {}
        self.mismatches: list[str] = []

    def from_lineage(self, name: str, lineage: Lineage, seen: frozenset[str]) -> Step:
        for source in lineage.sources:
            self.roles.setdefault(source.name, source.role)
        seen = seen | {name}
        if lineage.parents:
            inputs = [Input(p.name, p.sha256, self.roles.get(p.name)) for p in lineage.parents]
            parent_names = {p.name for p in lineage.parents}
            leftover = [s for s in lineage.sources if s.name not in parent_names]
            verb = "quantized from" if "quantization" in lineage.settings else "converted from"
            step = Step(verb, inputs, lineage.settings)
            step.children = self._children(inputs, leftover, seen)
        else:
            step = Step("converted from", [Input(s.name, s.sha256, s.role) for s in lineage.sources],
                        lineage.settings)
        return step

    def from_statement(self, name: str, entry: Mapping[str, Any], seen: frozenset[str]) -> Step:
        build = entry["predicate"]["buildDefinition"]
        settings = {k: v for k, v in build.get("externalParameters", {}).items() if k != "name"}
        parents, sources = [], []
        for dependency in build.get("resolvedDependencies", []):
            role = (dependency.get("annotations") or {}).get("role")
            dep_name = dependency["name"]
            known = self.roles.get(dep_name) or (guess_role(dep_name) if role != "parent" else None)
            item = Input(dep_name, dependency["digest"]["sha256"], known)
            (parents if role == "parent" else sources).append(item)
        seen = seen | {name}
        if parents:
            if name.endswith(".tar.gz"):
                verb = "packaged from"
            else:
                verb = "quantized from" if "quantization" in settings else "converted from"
            leftover = [SourceFile(s.name, s.role, s.sha256) for s in sources
                        if s.role and s.sha256 and s.name not in {p.name for p in parents}]
            step = Step(verb, parents, settings)
            step.children = self._children(parents, leftover, seen)
        else:
            step = Step("translated from" if _is_caffe2(name) else "converted from", sources, settings)
        return step

    def origin(self, name: str, sources: Sequence[SourceFile], seen: frozenset[str]) -> Step | None:
        """How the release artifact ``name`` was made; ``sources``: the child's source files that
        are not its parents, the fallback for a Caffe2 parent without a statement."""
        if name in seen:
            return None
        if self.release is not None and name.endswith(".onnx"):
            path = self.release / PurePosixPath(name)
            if path.is_file():
                lineage = read_lineage(path)
                if lineage is not None:
                    return self.from_lineage(name, lineage, seen)
        entry = find_statement(self.statements, name)
        if entry is not None:
            return self.from_statement(name, entry, seen)
        if sources and _is_caffe2(name):
            return Step("translated from", [Input(s.name, s.sha256, s.role) for s in sources], {})
        return None

    def _children(self, inputs: Sequence[Input], sources: Sequence[SourceFile],
                  seen: frozenset[str]) -> list[tuple[str | None, Step]]:
        for item in inputs:
            self._check_on_disk(item)
        found = [(item.name, self.origin(item.name, sources, seen)) for item in inputs]
        found = [(name, step) for name, step in found if step is not None]
        distinct: dict[str, tuple[str, Step]] = {}
        for name, step in found:
            distinct.setdefault(step.key(), (name, step))
        if len(distinct) == 1:
            return [(None, next(iter(distinct.values()))[1])]
        return [(name, step) for name, step in found]

    def _check_on_disk(self, item: Input) -> None:
        if self.release is None or item.sha256 is None:
            return
        path = self.release / PurePosixPath(item.name)
        if not path.is_file():
            return
        actual = self.digests.setdefault(item.name, sha256_file(path))
        if actual != item.sha256:
            self.mismatches.append(f"{item.name} is recorded with sha256 {item.sha256} but the file "
                                   f"in {self.release} has {actual}")


# How each known setting reads in the tree, in the order shown; None values are left out.
_QUANTIZATION_WORDS: tuple[tuple[str, Callable[[Any, bool], str]], ...] = (
    ("format", lambda v, full: f"format {v}"),
    ("samples", lambda v, full: f"{v} calibration samples"),
    ("seed", lambda v, full: f"seed {v}"),
    ("calibration", lambda v, full: f"calibration {v}"),
    ("calibration_sha256", lambda v, full: f"calibration sha256 {digest_text(v, full)}"),
)
_SETTING_WORDS: tuple[tuple[str, Callable[[Any, bool], str | None]], ...] = (
    ("target_opset", lambda v, full: f"opset {v}"),
    ("names", lambda v, full: f"names {v}"),
    ("compat", lambda v, full: f"compat {v}"),
    ("input_shape", lambda v, full: "input " + "x".join(str(d) for d in v)),
    ("dynamic_batch", lambda v, full: "dynamic batch" if v else None),
    ("synthetic_weights", lambda v, full: _synthetic_words(v)),
)


def _synthetic_words(made: Any) -> str:  # noqa: ANN401 - a JSON value from a stamp
    """``synthetic weights seed 0 (input std 0.5774, logit std 2)``; an odd value as JSON."""
    if isinstance(made, dict) and {"seed", "input_std", "logit_std"} <= set(made) and \
            all(isinstance(made[key], (int, float)) for key in ("seed", "input_std", "logit_std")):
        return (f"synthetic weights seed {made['seed']} (input std {made['input_std']:.4g}, "
                f"logit std {made['logit_std']:g})")
    return f"synthetic_weights {canonical_json(made)}"


def _words(values: dict[str, Any], table, full: bool) -> list[str]:  # noqa: ANN001
    """Known keys through ``table`` (popped from ``values``), then the rest as JSON, sorted."""
    parts = []
    for key, word in table:
        if key in values:
            value = values.pop(key)
            text = word(value, full) if value is not None else None
            if text:
                parts.append(text)
    return parts + [f"{key} {value if isinstance(value, str) else canonical_json(value)}"
                    for key, value in sorted(values.items())]


def describe_settings(settings: Mapping[str, Any], full: bool = False) -> str:
    """``format int8, 100 calibration samples, …, opset 12, names zoo``."""
    rest = dict(_plain(settings))
    quantization = rest.pop("quantization", None)
    parts: list[str] = []
    if isinstance(quantization, dict):
        parts += _words(dict(quantization), _QUANTIZATION_WORDS, full)
    elif quantization is not None:
        parts.append(f"quantization {canonical_json(quantization)}")
    return ", ".join(parts + _words(rest, _SETTING_WORDS, full))


def digest_text(sha256: str | None, full: bool) -> str:
    if sha256 is None:
        return "?"
    return sha256 if full or len(sha256) <= SHORT else sha256[:SHORT] + "…"


def render(name: str, sha256: str, step: Step | None, full: bool = False) -> list[str]:
    """The tree, one string per line."""
    lines = [f"{name}  sha256 {digest_text(sha256, full)}"]

    def walk(label: str | None, node: Step, prefix: str, last: bool) -> None:
        inputs = ", ".join(
            f"{item.name} sha256 {digest_text(item.sha256, full)}" + (f" ({item.role})" if item.role else "")
            for item in node.inputs
        ) or "(nothing recorded)"
        settings = describe_settings(node.settings, full)
        head = f"{label}: " if label else ""
        lines.append(f"{prefix}{'└─' if last else '├─'} {head}{node.verb} {inputs}"
                     + (f"  ({settings})" if settings else ""))
        deeper = prefix + ("   " if last else "│  ")
        for index, (child_label, child) in enumerate(node.children):
            walk(child_label, child, deeper, index == len(node.children) - 1)

    if step is not None:
        walk(None, step, "", True)
    return lines


def release_for(path: Path, given: Path | None) -> tuple[Path | None, list[dict[str, Any]]]:
    if given is not None:
        if not given.is_dir():
            raise InputFileError(f"release folder {given} does not exist or is not a folder")
        jsonl = given / STATEMENTS_FILE
        return given, read_statements(jsonl) if jsonl.is_file() else []
    for folder in (path.parent, path.parent.parent):
        if (folder / STATEMENTS_FILE).is_file():
            return folder, read_statements(folder / STATEMENTS_FILE)
    return path.parent, []


def release_name(path: Path, release: Path | None) -> str:
    if release is not None:
        try:
            return path.resolve().relative_to(release.resolve()).as_posix()
        except ValueError:
            pass
    return path.name


def from_tarball(archive: Path, walker: Walker, name: str) -> tuple[Step | None, Lineage | None]:
    """A tarball without a statement: the lineage of the ``model.onnx`` inside."""
    with tempfile.TemporaryDirectory(prefix="zoo-lineage-") as temp:
        members = safe_extract(archive, Path(temp) / "x")
        models = [path for path in members if path.name == "model.onnx" and path.is_file()]
        if not models:
            raise InputFileError(f"{archive} holds no model.onnx")
        model = models[0]
        lineage = read_lineage(model)
        if lineage is None:
            return None, None
        inner = model.relative_to(Path(temp) / "x").as_posix()
        step = Step("packaged from", [Input(inner, sha256_file(model))], {})
        step.children = [(None, walker.from_lineage(inner, lineage, frozenset({name})))]
        return step, lineage


@dataclass
class Trace:
    """What is known of how one file was made."""

    name: str                      # the file's name within its release (or its base name)
    sha256: str
    step: Step | None              # None: the file carries no zooforge lineage
    lineage: Lineage | None        # the model's own stamp, when it has one
    warnings: list[str] = field(default_factory=list)  # recorded digests that the files on disk contradict


def trace(file: Path, release: Path | None = None) -> Trace:
    """Trace ``file`` (an .onnx, a .tar.gz or a Caffe2 file of a zooforge release) to its sources;
    ``release`` is the folder holding its ``provenance.intoto.jsonl`` (default: found beside it)."""
    if not file.is_file():
        raise InputFileError(f"{file} does not exist or is not a file")
    folder, statements = release_for(file, release)
    walker = Walker(folder, statements)
    name = release_name(file, folder)
    sha256 = sha256_file(file)
    found: list[str] = []
    entry = find_statement(statements, name)
    if entry is not None:
        recorded = next(s["digest"]["sha256"] for s in entry["subject"] if s["name"] == name)
        if recorded != sha256:
            found.append(f"{STATEMENTS_FILE} records sha256 {recorded} for {name}, but the file has {sha256}")
    lineage = None
    if file.name.endswith(".onnx"):
        lineage = read_lineage(file)
        step = walker.from_lineage(name, lineage, frozenset()) if lineage is not None else None
    elif entry is not None:
        step = walker.from_statement(name, entry, frozenset())
    elif file.name.endswith((".tar.gz", ".tgz", ".tar")):
        step, lineage = from_tarball(file, walker, name)
    else:
        step = None
    return Trace(name, sha256, step, lineage, found + walker.mismatches)
