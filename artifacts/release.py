"""Build a complete, reproducible release of a model, the way the ONNX model zoo published AlexNet.

For every opset: ``<name>-<opset>.onnx`` and ``<name>-<opset>.tar.gz`` (one top folder with
``model.onnx``, ``test_data_set_N/`` and ``test_data_N.npz``); beside them ``caffe2/`` (the NetDef
pair, for Caffe sources), ``README.md``, ``manifest.json``, ``parity.json`` and ``SHA256SUMS``.
Every variant must match the source model's outputs on every test set or the build fails. The
release is assembled in a temporary folder beside ``out`` and renamed into place only when whole.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from artifacts.manifest import Artifact, manifest_entry, sha256_file, write_manifest, write_sha256sums
from artifacts.readme import ReleaseFacts, TableRow, render_readme
from artifacts.source import ReleaseSource
from artifacts.tarball import write_tarball
from artifacts.testdata import InputRecipe, TestSet, write_npz, write_test_set
from artifacts.validate import Tolerance, validate_path
from converters.caffe2.netdef import write_caffe2
from converters.errors import InputFileError, ZooforgeError
from converters.fileio import atomic_write_bytes
from versioning import opset_info
from versioning.runtime import ONNXRUNTIME, ORT_MIN_OPSET, REFERENCE

DEFAULT_OPSETS = (3, 6, 7, 8, 9, 12)
Progress = Callable[[str], None]


class ReleaseError(ZooforgeError):
    """A release could not be completed (a variant failed parity, or its inputs are unusable)."""


@dataclass(frozen=True)
class ReleaseOptions:
    name: str = "bvlcalexnet"
    opsets: tuple[int, ...] = DEFAULT_OPSETS
    test_sets: int = 3
    recipe: InputRecipe = InputRecipe()
    tolerance: Tolerance = Tolerance()
    source_date_epoch: int = 0
    tags: tuple[str, ...] = ("vision", "classification")


@dataclass
class ReleaseSummary:
    out: Path
    files: list[Path] = field(default_factory=list)
    parity: list[dict] = field(default_factory=list)


def source_date_epoch(default: int = 0) -> int:
    """``SOURCE_DATE_EPOCH`` from the environment (reproducible-builds.org), else ``default``."""
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise InputFileError(f"SOURCE_DATE_EPOCH={value!r} is not an integer number of seconds") from None


def build_release(source: ReleaseSource, options: ReleaseOptions, out: Path,
                  progress: Progress | None = None) -> ReleaseSummary:
    """Build the release into ``out`` (replacing what was there) or raise, leaving ``out`` untouched."""
    out = Path(out).absolute()
    if not out.parent.is_dir():
        raise InputFileError(f"output folder's parent {out.parent} does not exist")
    if out.exists() and not out.is_dir():
        raise InputFileError(f"{out} exists and is not a folder")
    for opset in options.opsets:
        opset_info(opset)  # refuse an unknown opset before any work
    say = progress or (lambda message: None)
    building = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    building.chmod(0o777 & ~_umask())
    try:
        summary = _build(source, options, building, say)
        _swap_into_place(building, out)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    summary.out = out
    summary.files = [out / p.relative_to(building) for p in summary.files]
    return summary


def _build(source: ReleaseSource, options: ReleaseOptions, root: Path, say: Progress) -> ReleaseSummary:
    summary = ReleaseSummary(root)
    say("computing the source model's outputs")
    feeds = [options.recipe.draw(source.input_shapes, index) for index in range(options.test_sets)]
    expected = [source.expected_outputs(feed) for feed in feeds]
    if source.caffe2 is not None and "predict_net" not in source.files:
        write_caffe2(source.caffe2, root / "caffe2")
    rows, entries, parity_lines = [], [], []
    graph = None
    for opset in options.opsets:
        stem = f"{options.name}-{opset}"
        say(f"{stem}: converting")
        variant = source.variant(opset)
        graph = variant.skeleton
        staging = root / ".staging" / options.name
        staging.mkdir(parents=True)
        variant.save(staging / "model.onnx")
        inputs = [v.name for v in graph.graph.input if v.name not in {t.name for t in graph.graph.initializer}
                  and v.name not in variant.large]
        outputs = [v.name for v in graph.graph.output]
        members = [("model.onnx", staging / "model.onnx")]
        for index, (feed, values) in enumerate(zip(feeds, expected)):
            test_set = TestSet(dict(zip(inputs, feed.values())), dict(zip(outputs, values)))
            for path in write_test_set(staging, index, test_set):
                members.append((path.relative_to(staging).as_posix(), path))
            npz = staging / f"test_data_{index}.npz"
            write_npz(npz, test_set)
            members.append((npz.name, npz))
        say(f"{stem}: checking parity")
        report = validate_path(staging, options.tolerance, runtimes=[parity_runtime(opset)])
        record = {"variant": stem, "opset": opset, "passed": report.passed,
                  "report": _relabel(report.to_dict(), str(staging), f"{stem}.tar.gz")}
        summary.parity.append(record)
        if not report.passed:
            raise ReleaseError(f"variant {stem} fails parity with the source model: "
                               + "; ".join(report.failures()))
        parity_lines.append(_parity_line(stem, report))
        say(f"{stem}: packing")
        archive = root / f"{stem}.tar.gz"
        write_tarball(archive, options.name, members, mtime=options.source_date_epoch)
        model_path = root / f"{stem}.onnx"
        os.replace(staging / "model.onnx", model_path)
        shutil.rmtree(root / ".staging")
        info = opset_info(opset)
        release = info.onnx_release.removesuffix(".0")
        artifact = Artifact(source.title, model_path, archive, release, opset, options.tags)
        entries.append(manifest_entry(artifact, root, graph, variant.large))
        rows.append(TableRow(source.title, model_path.name, model_path.stat().st_size, archive.name,
                             archive.stat().st_size, release, opset))
        summary.files += [model_path, archive]
    say("writing README, manifest and checksums")
    atomic_write_bytes(root / "parity.json", (json.dumps(summary.parity, indent=2, sort_keys=True) + "\n").encode())
    write_manifest(root / "manifest.json", entries)
    facts = ReleaseFacts(
        title=source.title, rows=rows, lineage=source.lineage,
        source_digests={path.name: sha256_file(path) for path in source.files.values()},
        inputs=_ports(graph.graph.input, graph, variant.large),
        outputs=_ports(graph.graph.output, graph, variant.large),
        parity=parity_lines, synthetic=source.synthetic,
        notes=_notes(source, options),
    )
    atomic_write_bytes(root / "README.md", render_readme(facts).encode())
    write_sha256sums(root, root / "SHA256SUMS")
    summary.files += [root / name for name in ("parity.json", "manifest.json", "README.md", "SHA256SUMS")]
    return summary


def parity_runtime(opset: int) -> str:
    """The build checks each variant on the runtime a user would run it with: onnxruntime from
    opset 7, the reference evaluator below. ``zoo-validate`` adds the reference evaluator at 7+."""
    return ONNXRUNTIME if opset >= ORT_MIN_OPSET else REFERENCE


def _relabel(value, old: str, new: str):  # noqa: ANN001, ANN202 - JSON-like data
    """Replace the temporary build path in a report with the artifact's name (reproducible JSON)."""
    if isinstance(value, str):
        return new + value[len(old):] if value.startswith(old) else value
    if isinstance(value, list):
        return [_relabel(item, old, new) for item in value]
    if isinstance(value, dict):
        return {key: _relabel(item, old, new) for key, item in value.items()}
    return value


def _ports(values, graph, large=()) -> list[tuple[str, list]]:  # noqa: ANN001
    initializers = {t.name for t in graph.graph.initializer} | set(large)
    return [
        (v.name, [d.dim_value if d.HasField("dim_value") else d.dim_param for d in v.type.tensor_type.shape.dim])
        for v in values if v.name not in initializers
    ]


def _parity_line(stem: str, report) -> str:  # noqa: ANN001
    worst = max((o.max_abs for s in report.sets for o in s.outputs), default=0.0)
    runtimes = sorted({s.runtime for s in report.sets})
    sets = len({s.test_set for s in report.sets})
    return f"`{stem}`: {sets} test sets on {', '.join(runtimes)}: pass, max abs error {worst:.1e}"


def _notes(source: ReleaseSource, options: ReleaseOptions) -> list[str]:
    notes = [
        f"Test inputs are uniform in [{options.recipe.low:g}, {options.recipe.high:g}) from "
        f"numpy.random.default_rng({options.recipe.seed} + N); expected outputs come from the source model.",
        f"Tolerances: rtol {options.tolerance.rtol:g}, atol {options.tolerance.atol:g}.",
    ]
    if source.options.compat == "zoo":
        notes.append("Built with --compat zoo: the published zoo graph's pooling, which departs from Caffe "
                     "at some input sizes; test outputs come from that same graph's NetDef.")
    return notes


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _swap_into_place(building: Path, out: Path) -> None:
    """Rename the finished release to ``out``; an old release there is removed only afterwards."""
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / out.name)
        os.replace(building, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(building, out)
