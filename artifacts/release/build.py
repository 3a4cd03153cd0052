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
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import onnx

from zooforge.artifacts.quantization.cpu import cpu_record
from zooforge.artifacts.quantization.datasets import load_dataset
from zooforge.artifacts.quantization.evaluate import evaluate
from zooforge.artifacts.quantization.preprocess import get_preset
from zooforge.artifacts.quantization.quantize import QuantizeSettings, quantize_model
from zooforge.artifacts.release.quantized import QUANTIZATION_OPSET, quantization_plan, top1_agreement
from zooforge.converters.lineage import Lineage, ParentRef, SourceFile, quantization_settings, settings_dict, stamp
from zooforge.artifacts.provenance.statements import STATEMENTS_FILE, statement, write_statements
from zooforge.artifacts.release.manifest import (
    Artifact, io_ports, manifest_entry, model_tag, sha256_file, tensor_shapes, write_manifest, write_sha256sums,
)
from zooforge.artifacts.release.readme import ReleaseFacts, TableRow, read_text_file, render_readme
from zooforge.artifacts.release.sections import section_facts
from zooforge.artifacts.release.source import ReleaseSource
from zooforge.artifacts.release.tarball import MAX_MTIME, write_tarball
from zooforge.artifacts.release.testdata import InputRecipe, TestSet, write_npz, write_test_set
from zooforge.artifacts.validation.parity import Tolerance, validate_path
from zooforge.converters.caffe2.netdef import write_caffe2
from zooforge.converters.errors import InputFileError, OutputFileError, ZooforgeError
from zooforge.converters.interrupts import deferred_termination, held_termination
from zooforge.converters.onnx.optimize import MIN_OPSET as OPTIMIZE_MIN_OPSET, optimize_variant
from zooforge.converters.safety import check_release_folder, owner_tag, remove_stale, stale_entries
from zooforge.converters.fileio import atomic_write_bytes, current_umask
from zooforge.versioning import opset_info
from zooforge.versioning.runtime import (
    ONNXRUNTIME, ONNXRUNTIME_LIFTED, ORT_MIN_OPSET, REFERENCE, RUNTIME_DESCRIPTIONS, Session,
)

DEFAULT_OPSETS = (3, 6, 7, 8, 9, 12)
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
TITLE_PATTERN = re.compile(r"[^|`\n\r\t]{1,100}")
MAX_EPOCH = MAX_MTIME  # a ustar header's 11 octal digits (year 2242)
Progress = Callable[[str], None]


class ReleaseError(ZooforgeError):
    """A release could not be completed (a variant failed parity, or its inputs are unusable)."""


class StaleBuildWarning(UserWarning):
    """Leftovers of a killed build were removed, or a signal came after the release was complete."""


SYNTHETIC_TAG = "synthetic-weights"  # the manifest's tag of every entry whose weights zooforge made


@dataclass(frozen=True)
class ReleaseOptions:
    name: str = "bvlcalexnet"
    opsets: tuple[int, ...] = DEFAULT_OPSETS
    test_sets: int = 3
    recipe: InputRecipe = InputRecipe()
    tolerance: Tolerance = Tolerance()
    source_date_epoch: int = 0
    tags: tuple[str, ...] = ("vision", "classification")
    quantize: tuple[str, ...] = ("int8", "qdq")  # "int8" (QOperator) and/or "qdq", from the opset-12 model
    calibration: Path | None = None         # calibration DATASET; None: seeded inputs in the recipe's range
    calibration_samples: int = 100
    eval_dataset: Path | None = None        # labelled DATASET for the table's accuracy columns
    preprocess: str | None = None           # preset for calibration and evaluation images
    eval_limit: int | None = None
    measure_speed: bool = False             # add the speed-up to the README (machine-dependent bytes)
    sign_key: Path | None = None            # EC private key (PEM): sign the finished release (release.sig)
    optimize: bool = False                  # onnxoptimizer's exact passes on each variant of opset >= 7
    title: str | None = None                # the zoo's model name (manifest "model", README); None: the source's
    extra_ports: tuple[tuple[str, str], ...] = ()  # (group, tensor), the hub's extra_ports, e.g. features=fc7_1
    model_path_prefix: str = ""             # manifest paths' repository folder, manifest.model_path_prefix form
    description: Path | None = None         # the source model's readme (its text goes into the README)
    license: Path | None = None             # the source model's licence text (likewise)

    def __post_init__(self) -> None:
        for label, value, problem in (("name", self.name, name_problem(self.name)),
                                      ("title", self.title, title_problem(self.title))):
            if problem:
                raise ReleaseError(f"release {label} {value!r} {problem}")


def name_problem(value: str) -> str | None:
    """Why ``value`` cannot name a release's files, or None."""
    if not NAME_PATTERN.fullmatch(value):
        return "must be 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit (it becomes file names)"
    return None


def title_problem(value: str | None) -> str | None:
    """Why ``value`` cannot be a release's title, or None (no title: the source's)."""
    if value is not None and not (TITLE_PATTERN.fullmatch(value) and value.strip() == value):
        return ("must be 1-100 characters without '|', '`', tabs, line breaks or surrounding spaces (it becomes the "
                "README's heading and table rows)")
    return None


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
        epoch = int(value)
    except ValueError:
        raise InputFileError(f"SOURCE_DATE_EPOCH={value!r} is not an integer number of seconds") from None
    if not 0 <= epoch <= MAX_EPOCH:
        raise InputFileError(f"SOURCE_DATE_EPOCH={value!r} must lie between 0 and {MAX_EPOCH} "
                             "(1970 to the last second a tar header can hold)")
    return epoch


def build_release(source: ReleaseSource, options: ReleaseOptions, out: Path,
                  progress: Progress | None = None) -> ReleaseSummary:
    """Build the release into ``out`` (replacing what was there) or raise, leaving ``out`` untouched."""
    out = Path(out).absolute()
    if not out.parent.is_dir():
        raise InputFileError(f"output folder's parent {out.parent} does not exist")
    check_release_folder(out, [*source.files.values(), options.calibration, options.eval_dataset, options.sign_key,
                               options.description, options.license])
    _restore_swapped_out(out)
    for opset in options.opsets:
        opset_info(opset)  # refuse an unknown opset before any work
    if options.preprocess:  # a preset whose recipe fixes a size refuses a model of another size
        get_preset(options.preprocess, next(iter(source.input_shapes.values())))
    read_text_file(options.description, "--description")  # an unreadable text is refused before any work
    read_text_file(options.license, "--license")
    say = progress or (lambda message: None)
    for kind in ("building", "old"):
        for stale in remove_stale(out.parent, f".{out.name}.{kind}-"):
            warnings.warn(f"removed {stale}, left by a build that was killed", StaleBuildWarning, stacklevel=2)
    building = None
    try:
        with held_termination():  # a signal meanwhile arrives once `building` names what to remove
            building = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-{owner_tag()}-", dir=out.parent))
        building.chmod(0o777 & ~current_umask())
        summary = _build(source, options, building, say)
        if options.sign_key is not None:
            say("signing")
            from zooforge.artifacts.provenance.signing import sign_release

            summary.files.append(sign_release(building, options.sign_key))
        with deferred_termination() as deferred:
            _swap_into_place(building, out)
    except BaseException as exc:
        if building is not None:
            shutil.rmtree(building, ignore_errors=True)
        if isinstance(exc, OSError) and building is None:
            raise OutputFileError(out.parent, exc) from None
        raise
    if deferred.dropped:
        warnings.warn(f"{', '.join(deferred.dropped)} arrived while the finished release was moved into place; "
                      f"it is complete in {out}", StaleBuildWarning, stacklevel=2)
    summary.out = out
    summary.files = [out / p.relative_to(building) for p in summary.files]
    return summary


@dataclass
class _Packed:
    """One variant written into the release."""

    stem: str
    model_path: Path
    archive: Path
    report: object          # the ValidationReport
    record: dict            # the same, as reproducible JSON (no temporary paths)
    members: list[str] = field(default_factory=list)  # the tarball's, below its top folder


def _package(root: Path, options: ReleaseOptions, stem: str, write_model: Callable[[Path], None],
             feeds: Sequence[dict], outputs_for: Callable[[Path, list[dict]], list[list]],
             runtimes: Sequence[str], header: onnx.ModelProto | None = None,
             external: Sequence[str] = ()) -> _Packed:
    """Write ``<stem>.onnx`` and ``<stem>.tar.gz`` (model + test sets), validated on ``runtimes``.

    ``outputs_for(model_path, graph_feeds)`` gives each test set's expected outputs: the source
    model's for fp32 variants, the quantized model's own for quantized ones.
    """
    staging = root / ".staging" / options.name
    staging.mkdir(parents=True)
    model_file = staging / "model.onnx"
    write_model(model_file)
    header = header if header is not None else _header(model_file)
    initializers = {t.name for t in header.graph.initializer} | set(external)
    inputs = [v.name for v in header.graph.input if v.name not in initializers]
    outputs = [v.name for v in header.graph.output]
    graph_feeds = [dict(zip(inputs, feed.values())) for feed in feeds]
    expected = outputs_for(model_file, graph_feeds)
    members = [("model.onnx", model_file)]
    for index, (feed, values) in enumerate(zip(graph_feeds, expected)):
        test_set = TestSet(feed, dict(zip(outputs, values)))
        for path in write_test_set(staging, index, test_set):
            members.append((path.relative_to(staging).as_posix(), path))
        npz = staging / f"test_data_{index}.npz"
        write_npz(npz, test_set)
        members.append((npz.name, npz))
    report = validate_path(staging, options.tolerance, runtimes=list(runtimes))
    if not report.passed:
        raise ReleaseError(f"variant {stem} fails parity with the source model: " + "; ".join(report.failures()))
    archive = root / f"{stem}.tar.gz"
    write_tarball(archive, options.name, members, mtime=options.source_date_epoch)
    model_path = root / f"{stem}.onnx"
    os.replace(model_file, model_path)
    shutil.rmtree(root / ".staging")
    return _Packed(stem, model_path, archive, report, _relabel(report.to_dict(), str(staging), archive.name),
                   [name for name, _ in members])


def _header(path: Path) -> onnx.ModelProto:
    return onnx.load(str(path), load_external_data=False)


def _build(source: ReleaseSource, options: ReleaseOptions, root: Path, say: Progress) -> ReleaseSummary:
    summary = ReleaseSummary(root)
    title = options.title or source.title
    if options.quantize and source.detection_rows:
        raise ReleaseError(
            f"quantized variants of a detector (detection rows in {', '.join(source.detection_rows)}) cannot be "
            "released: their parity rule compares a classifier's outputs; pass --quantize none")
    say("computing the source model's outputs")
    feeds = [options.recipe.draw(source.input_shapes, index) for index in range(options.test_sets)]
    expected = [source.expected_outputs(feed) for feed in feeds]
    if source.caffe2 is not None and "predict_net" not in source.files:
        write_caffe2(source.caffe2, root / "caffe2")
    rows, entries, parity_lines = [], [], []
    graph, large, quant_base, quant_optimized, sample_files = None, (), None, None, []
    sources = tuple(SourceFile(path.name, role, sha256_file(path)) for role, path in source.files.items())
    parents = _fp32_parents(source, root, sources)
    lineages: dict[str, Lineage] = {}
    machine: dict[str, dict] = {}  # quantized artifacts -> the CPU that computed their outputs
    for opset in options.opsets:
        stem = f"{options.name}-{opset}"
        say(f"{stem}: converting and checking parity")
        variant, optimized = source.variant(opset), None
        if options.optimize:
            variant, optimized = optimize_variant(variant, stem)
        graph, large = variant.skeleton, tuple(variant.large)
        lineage = Lineage(" ==> ".join(source.lineage), sources, parents, _settings(source, opset, optimize=optimized),
                          source.synthetic)
        stamp(variant.skeleton, lineage)
        lineages[f"{stem}.onnx"] = lineages[f"{stem}.tar.gz"] = lineage
        packed = _package(root, options, stem, variant.save, feeds, lambda path, _: expected,
                          parity_runtimes(opset), graph, large)
        summary.parity.append({"variant": stem, "opset": opset, "passed": True, "report": packed.record,
                               "runtimes": {r: RUNTIME_DESCRIPTIONS[r] for r in parity_runtimes(opset)}})
        parity_lines.append(_parity_line(stem, packed.report))
        release = opset_info(opset).onnx_release.removesuffix(".0")
        entries.append(_hub_entry(options, title, title, packed, release, opset, graph,
                                  {name: variant.large[name].shape for name in large}, required=stem,
                                  synthetic=source.synthetic))
        rows.append(TableRow(title, packed.model_path.name, packed.model_path.stat().st_size,
                             packed.archive.name, packed.archive.stat().st_size, release, opset))
        summary.files += [packed.model_path, packed.archive]
        if opset == QUANTIZATION_OPSET:
            quant_base, quant_optimized = packed.model_path, optimized
        sample_files = sample_files or [f"{options.name}/{member}" for member in packed.members]
    fp32_row_count = len(rows)
    quantized: list[Path] = []
    if options.quantize:
        work = root / ".quantize"
        work.mkdir()
        if quant_base is None:
            quant_base = work / f"{options.name}-{QUANTIZATION_OPSET}.onnx"
            source.variant(QUANTIZATION_OPSET).save(quant_base)
        plan = quantization_plan(options, quant_base)
        cpu = cpu_record()  # machine-dependent: only in quantized entries, whose outputs are this CPU's
        for fmt in options.quantize:
            stem = f"{options.name}-{QUANTIZATION_OPSET}-{fmt}"
            say(f"{stem}: quantizing")
            settings = QuantizeSettings(fmt, samples=options.calibration_samples, seed=options.recipe.seed)
            reader, described = plan.reader(settings)
            lineage = Lineage(
                " ==> ".join([*source.lineage, f"{source.lineage[-1]}-{fmt}"]), sources,
                (ParentRef(quant_base.relative_to(root).as_posix(), sha256_file(quant_base)),),
                _settings(source, QUANTIZATION_OPSET, quantization_settings(
                    fmt, settings.samples, settings.seed, described, plan.digest(settings)), quant_optimized),
                source.synthetic,
            )
            lineages[f"{stem}.onnx"] = lineages[f"{stem}.tar.gz"] = lineage
            machine[f"{stem}.onnx"] = machine[f"{stem}.tar.gz"] = cpu

            def write_quantized(path: Path, settings=settings, reader=reader, lineage=lineage) -> None:
                quantize_model(quant_base, path, settings, reader)
                model = onnx.load(str(path))
                stamp(model, lineage)
                atomic_write_bytes(path, model.SerializeToString(deterministic=True))

            packed = _package(root, options, stem, write_quantized, feeds, _own_outputs, [ONNXRUNTIME])
            agreement = top1_agreement(quant_base, packed.model_path, [*feeds, *plan.calibration_feeds(settings)],
                                       len(feeds))
            summary.parity.append({"variant": stem, "format": fmt, "calibration": described,
                                   "top1_agreement": agreement, "report": packed.record, "cpu": cpu})
            parity_lines.append(
                f"`{stem}`: test sets hold its own outputs; top-1 agrees with fp32 on "
                f"{agreement['test']['agree']}/{agreement['test']['total']} test inputs and "
                f"{agreement['calibration']['agree']}/{agreement['calibration']['total']} calibration inputs"
            )
            release = opset_info(QUANTIZATION_OPSET).onnx_release.removesuffix(".0")
            entries.append(_hub_entry(options, f"{title}-{fmt}", title, packed, release, QUANTIZATION_OPSET,
                                      _header(packed.model_path), {}, synthetic=source.synthetic))
            rows.append(TableRow(f"{title}-{fmt}", packed.model_path.name, packed.model_path.stat().st_size,
                                 packed.archive.name, packed.archive.stat().st_size, release, QUANTIZATION_OPSET))
            summary.files += [packed.model_path, packed.archive]
            quantized.append(packed.model_path)
        shutil.rmtree(work)
    comparison = None
    if options.eval_dataset is not None:
        say("evaluating accuracy")
        rows, comparison = _evaluate(options, source, root, rows, fp32_row_count, quantized)
    say("writing README, manifest and checksums")
    atomic_write_bytes(root / "parity.json", (json.dumps(summary.parity, indent=2, sort_keys=True) + "\n").encode())
    write_manifest(root / "manifest.json", entries)
    facts = ReleaseFacts(
        title=title, rows=rows, lineage=source.lineage,
        source_digests={path.name: sha256_file(path) for path in source.files.values()},
        inputs=_ports(graph, large, "inputs"), outputs=_ports(graph, large, "outputs"),
        parity=parity_lines, synthetic=source.synthetic, synthetic_settings=source.synthetic_settings,
        notes=_notes(source, options), comparison=comparison,
        **section_facts(options, source, graph, sample_files, summary.parity,
                        quant_base.name if quant_base is not None and quant_base.parent == root
                        else f"the opset-{QUANTIZATION_OPSET} model"),
    )
    atomic_write_bytes(root / "README.md", render_readme(facts).encode())
    say("writing provenance")
    _write_provenance(root, options, source, sources, parents, lineages, machine)
    write_sha256sums(root, root / "SHA256SUMS")
    summary.files += [root / name for name in ("parity.json", "manifest.json", "README.md", STATEMENTS_FILE,
                                               "SHA256SUMS")]
    return summary


def _hub_entry(options: ReleaseOptions, name: str, title: str, packed: _Packed, release: str, opset: int,
               graph: onnx.ModelProto, external: dict[str, tuple[int, ...]], required: str | None = None,
               synthetic: bool = False) -> dict:
    """The manifest entry of ``packed``, named ``name``, tagged with ``title``'s own tag as the hub tags
    its models (quantized ones too), then with ``SYNTHETIC_TAG`` if its weights are synthetic. Each ``--extra-port`` tensor with a known shape is listed; one
    that an fp32 variant (``required``, its stem) does not compute at all fails the build."""
    names = [tensor for _, tensor in options.extra_ports]
    if required is not None:
        computed = {output for node in graph.graph.node for output in node.output}
        for group, tensor in options.extra_ports:
            if tensor not in computed:
                raise ReleaseError(f"--extra-port {group}={tensor}: variant {required} has no tensor named {tensor!r} "
                                   "(name one its graph computes, e.g. with the zoo's names fc7_1)")
    shapes = tensor_shapes(graph, external, names) if names else {}
    artifact = Artifact(name, packed.model_path, packed.archive, release, opset,
                        (*options.tags, model_tag(title), *((SYNTHETIC_TAG,) if synthetic else ())),
                        options.extra_ports)
    return manifest_entry(artifact, packed.model_path.parent, graph, tuple(external), options.model_path_prefix,
                          shapes)


def _settings(source: ReleaseSource, opset: int, quantization: dict | None = None,
              optimize: dict | None = None) -> dict:
    options = source.options
    shapes = options.input_shapes
    shape = list(shapes) if shapes is not None and not isinstance(shapes, dict) else (
        {k: list(v) for k, v in shapes.items()} if shapes else None)
    if isinstance(shape, dict):
        shape = next(iter(shape.values()))
    return settings_dict(target_opset=opset, compat=options.compat, names=options.names, input_shape=shape,
                         dynamic_batch=options.dynamic_batch, quantization=quantization, optimize=optimize,
                         synthetic_weights=source.synthetic_settings)


def _fp32_parents(source: ReleaseSource, root: Path, sources: tuple[SourceFile, ...]) -> tuple[ParentRef, ...]:
    """What the fp32 variants are made from: the NetDef pair this build wrote, else the source files."""
    written = [root / "caffe2" / name for name in ("predict_net.pb", "init_net.pb")]
    if all(path.exists() for path in written):
        return tuple(ParentRef(path.relative_to(root).as_posix(), sha256_file(path)) for path in written)
    return tuple(ParentRef(file.name, file.sha256) for file in sources)


def _write_provenance(root: Path, options: ReleaseOptions, source: ReleaseSource, sources, parents,
                      lineages: dict[str, Lineage], machine: dict[str, dict]) -> None:  # noqa: ANN001
    """One in-toto statement with a SLSA provenance predicate per artifact (docs/provenance-format.md);
    ``machine`` adds ``internalParameters.cpu`` to the quantized artifacts' statements."""
    internal = {
        "test_sets": options.test_sets,
        "input_recipe": {"seed": options.recipe.seed, "low": options.recipe.low, "high": options.recipe.high},
        "tolerance": {"rtol": options.tolerance.rtol, "atol": options.tolerance.atol},
    }
    byproducts = [("parity.json", sha256_file(root / "parity.json"))]
    subjects = dict(lineages)
    caffe2 = root / "caffe2"
    if caffe2.is_dir():
        made = {"synthetic_weights": source.synthetic_settings} if source.synthetic_settings else {}
        translated = Lineage(" ==> ".join(source.lineage[:2]), sources, (), made, source.synthetic)
        for path in sorted(caffe2.iterdir()):
            subjects[path.relative_to(root).as_posix()] = translated
    statements = [
        statement(name, sha256_file(root / name), lineage, release_name=options.name,
                  internal={**internal, "cpu": machine[name]} if name in machine else internal,
                  byproducts=byproducts, epoch=options.source_date_epoch)
        for name, lineage in sorted(subjects.items())
    ]
    write_statements(root / STATEMENTS_FILE, statements)


def _own_outputs(model_path: Path, graph_feeds: list[dict]) -> list[list]:
    session = Session(ONNXRUNTIME, model_path)
    return [list(session.run(feed).values()) for feed in graph_feeds]


def _evaluate(options: ReleaseOptions, source: ReleaseSource, root: Path, rows: list[TableRow],
              fp32_rows: int, quantized: list[Path]) -> tuple[list[TableRow], str | None]:
    """Measure top-1/top-5 of the fp32 model (opset 12, or the newest variant) and the quantized ones."""
    dataset = load_dataset(options.eval_dataset)
    fp32 = root / rows[fp32_rows - 1].model_file
    for row in rows[:fp32_rows]:
        if row.opset == QUANTIZATION_OPSET:
            fp32 = root / row.model_file
    preprocess = get_preset(options.preprocess, next(iter(source.input_shapes.values())))
    timing = {} if options.measure_speed else {"timed_runs": 1, "warmup_runs": 0}
    report = evaluate([fp32, *quantized], dataset, preprocess, options.eval_limit,
                      names=["fp32", *options.quantize][: 1 + len(quantized)], **timing)
    scores = report.models
    fp32_score = scores[0]
    updated = [replace(row, top1=100 * fp32_score.top1, top5=100 * fp32_score.top5) for row in rows[:fp32_rows]]
    updated += [replace(row, top1=100 * score.top1, top5=100 * score.top5)
                for row, score in zip(rows[fp32_rows:], scores[1:])]
    samples = fp32_score.samples
    sentence = (f"Accuracy measured on {samples} images of `{Path(options.eval_dataset).name}` with the "
                f"`{options.preprocess}` preprocessing; fp32 rows share the opset-{QUANTIZATION_OPSET} model's "
                "figures (every fp32 variant matches it within the parity tolerance).")
    if len(scores) > 1:
        sentence += " " + " ".join(f"{c.sentence(options.measure_speed)}." for c in report.comparisons())
    return updated, sentence


def parity_runtimes(opset: int) -> tuple[str, ...]:
    """The runtimes the build checks each fp32 variant on: onnxruntime from opset 7; below it the
    reference evaluator (what runs that opset) and, since its kernels compute as the executor
    does, onnxruntime on the variant lifted to opset 7, which shares no code with the executor.
    ``zoo-validate`` adds the reference evaluator at 7+."""
    return (ONNXRUNTIME,) if opset >= ORT_MIN_OPSET else (REFERENCE, ONNXRUNTIME_LIFTED)


def _relabel(value, old: str, new: str):  # noqa: ANN001, ANN202 - JSON-like data
    """Replace the temporary build path in a report with the artifact's name (reproducible JSON)."""
    if isinstance(value, str):
        return new + value[len(old):] if value.startswith(old) else value
    if isinstance(value, list):
        return [_relabel(item, old, new) for item in value]
    if isinstance(value, dict):
        return {key: _relabel(item, old, new) for key, item in value.items()}
    return value


def _ports(graph: onnx.ModelProto, large: Sequence[str], kind: str) -> list[tuple[str, list]]:
    """(name, shape) of the graph's real inputs or outputs, for the README."""
    return [(port["name"], port["shape"]) for port in io_ports(graph, large)[kind]]


def _parity_line(stem: str, report) -> str:  # noqa: ANN001
    sets = len({s.test_set for s in report.sets})
    per_runtime = []
    for runtime in sorted({s.runtime for s in report.sets}):
        worst = max((o.max_abs for s in report.sets if s.runtime == runtime for o in s.outputs), default=0.0)
        per_runtime.append(f"{runtime} {worst:.1e}")
    return f"`{stem}`: {sets} test sets, pass; max abs error on " + ", ".join(per_runtime)


def _notes(source: ReleaseSource, options: ReleaseOptions) -> list[str]:
    notes = [
        f"Test inputs are uniform in [{options.recipe.low:g}, {options.recipe.high:g}) from "
        f"numpy.random.default_rng({options.recipe.seed} + N); expected outputs come from the source model.",
        f"Tolerances: rtol {options.tolerance.rtol:g}, atol {options.tolerance.atol:g}.",
    ]
    used = dict.fromkeys(r for opset in options.opsets for r in parity_runtimes(opset))
    notes.append("Runtimes that checked the variants: " + "; ".join(
        f"`{runtime}`: {RUNTIME_DESCRIPTIONS[runtime]}" for runtime in sorted(used)) + ".")
    if options.optimize:
        notes.append(f"Built with --optimize: variants of opset {OPTIMIZE_MIN_OPSET} and newer went through "
                     "onnxoptimizer's exact passes (their lineage settings list them), then the same parity check.")
    if source.options.dynamic_batch:
        notes.append("Built with --dynamic-batch: the batch dimension is symbolic (`N`) in every variant; "
                     "the test sets hold batch 1.")
    if options.quantize:
        notes.append("Quantized variants' test sets hold the outputs of the CPU that built the release (its "
                     "int8 features are in `parity.json`, `cpu`); `zoo-validate` checks them within a few output "
                     "quantization steps and the same top-1 class, not by the fp32 tolerances.")
    if source.options.compat == "zoo":
        notes.append("Built with --compat zoo: the published zoo graph's pooling, which departs from Caffe "
                     "at some input sizes; test outputs come from that same graph's NetDef.")
    return notes



def _restore_swapped_out(out: Path) -> None:
    """A build killed between the two renames of its swap leaves no ``out``, the previous release
    in ``.NAME.old-*/NAME``: put it back before anything stale is removed."""
    if out.exists() or out.is_symlink():
        return
    for old in stale_entries(out.parent, f".{out.name}.old-"):
        if (old / out.name).is_dir():
            os.replace(old / out.name, out)
            warnings.warn(f"restored the previous release {out} from {old}, left by a build killed while it "
                          "swapped releases", StaleBuildWarning, stacklevel=3)
            return


def _swap_into_place(building: Path, out: Path) -> None:
    """Rename the finished release to ``out``; an old release there is removed only afterwards."""
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-{owner_tag()}-", dir=out.parent))
        os.replace(out, old / out.name)
        os.replace(building, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(building, out)
