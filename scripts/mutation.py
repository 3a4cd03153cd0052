"""Mutation testing of zooforge's core with mutmut, one group of modules at a time.

Each group pairs the modules it mutates with the tests that check them, chosen to be quick: mutmut
runs the group's tests once to learn which test reaches which function, then, for every mutant
(a small bug planted in one function), only the tests that reach it, stopping at the first failure.
A group runs in its own scratch copy of the committed tree (HEAD; ``--work``), so the checkout is never
touched and groups can be rerun alone (``--group``).

    python scripts/mutation.py                    # every group, the table on stdout
    python scripts/mutation.py --group validate   # one group
    python scripts/mutation.py --list             # the groups, their modules and tests

Needs ``pip install -e ".[mutation]"`` (mutmut) and, for the groups whose tests use them, the real
models and data (``../shared``) and the real Caffe2 toolchain (built on first use by the tests).

The score of a module is killed / (mutants - equivalent). A mutant counts as killed when a test
fails or times out; one that no selected test reaches counts as survived, as it would ship.
Survivors that cannot change behaviour are listed in ``scripts/mutation-equivalents.toml`` with the
reason; a listed mutant that no longer survives (or no longer exists) is reported, so the list
cannot rot silently. A markdown report with every survivor's diff is written beside the table
(``<work>/report.md``).

For tests, one rule follows: the work a test judges must run inside that test (or in a helper
that computes on first use and keeps the result), not in a module-scoped fixture; mutmut charges
everything a fixture runs to the first test that used it, and would try a mutant there alone.

Safety: mutants run as this user, against the tests' own temporary folders; the hostile archives in
the tarball tests name only unique paths under ``/tmp`` and the test's own folders, and no group
mutates the output-safety code (``converters/safety.py``), which guards the user's files.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]
EQUIVALENTS = Path(__file__).with_name("mutation-equivalents.toml")
DEFAULT_WORK = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "zooforge-mutation"
# The repository's folders that install as zooforge's subpackages (pyproject's package-dir). The
# scratch copy lays them out as zooforge/<folder>/, so that mutmut's mutant names (from file paths)
# are the module names the tests import, zooforge.converters...., and the copy, first on sys.path,
# shadows the editable install.
SUBPACKAGES = ("converters", "versioning", "artifacts")
IMPORT_PACKAGE = "zooforge"
# The share of each group's mutants a default run tries: every group within an hour on 2 cores
# today (survivors cost the most: each runs all the tests that reach it). 1 tries them all.
DEFAULT_SAMPLE = 0.15

# mutmut's exit codes per mutant (mutmut.stats.status_by_exit_code), folded into our columns.
KILLED_CODES = {1, 3, 36, -24, 24, 152, 255, -11, -9}  # a failing test, a timeout or a crash
SURVIVED_CODES = {0}
NO_TESTS_CODES = {5, 33}


@dataclass(frozen=True)
class Group:
    """Modules mutated together and the quick tests that are to catch their mutants."""

    name: str
    modules: tuple[str, ...]
    tests: tuple[str, ...]
    why: str


GROUPS: tuple[Group, ...] = (
    Group(
        "validate",
        ("artifacts/validation/*.py",),
        ("tests/test_validate.py", "tests/test_validate_edges.py", "tests/test_validate_layouts.py",
         "tests/test_int8_cross_cpu.py", "tests/test_hub_manifest.py", "tests/test_validate_mutants_3.py",
         "tests/test_quantized_rule_mutants.py", "tests/test_ssd_release.py"),
        "the parity verdict: tolerances, NaN/Inf, the cross-CPU rule of quantized variants, test-set "
        "reading, model-folder layouts, manifest paths",
    ),
    Group(
        "tarball",
        ("artifacts/release/tarball.py",),
        ("tests/test_tarball.py", "tests/test_tarball_edges.py"),
        "reproducible tarballs and refusal of hostile ones",
    ),
    Group(
        "manifest-provenance",
        ("artifacts/release/manifest.py", "artifacts/provenance/statements.py", "artifacts/provenance/verify.py",
         "artifacts/provenance/lineage.py", "converters/lineage.py"),
        ("tests/test_verify.py", "tests/test_provenance.py", "tests/test_verify_edges.py",
         "tests/test_provenance_edges.py", "tests/test_lineage_tree.py"),
        "hub manifest, SHA256SUMS, lineage and in-toto provenance, zoo-verify",
    ),
    Group(
        "caffe-reader",
        ("converters/caffe/*.py",),
        ("tests/test_upgrade.py", "tests/test_caffe_reader_edges.py", "tests/test_layers.py",
         "tests/test_cifar10_accuracy.py", "tests/test_lenet_accuracy.py", "tests/test_fork_refusals.py",
         "tests/test_fork_schema.py"),
        "prototxt/caffemodel/HDF5 reading and V0/V1 upgrade; Caffe's fixtures, OpenCV and real labels judge",
    ),
    Group(
        "caffe2-executor",
        ("converters/caffe2/executor/*.py",),
        ("tests/test_caffe2_conformance.py", "tests/test_layers.py", "tests/test_executor_refusals.py",
         "tests/test_executor_semantics.py", "tests/test_executor_mutants.py", "tests/test_executor_mutants_2.py",
         "tests/test_detection_output.py", "tests/test_ssd_layers.py"),
        "the NumPy executor of NetDefs, against real Caffe2 op by op and OpenCV layer by layer",
    ),
    Group(
        "onnx-handlers",
        ("converters/onnx/*.py", "converters/onnx/handlers/*.py"),
        ("tests/test_layers.py", "tests/test_handler_coverage.py", "tests/test_roundtrip.py",
         "tests/test_frontend_graph.py", "tests/test_handler_sweep.py", "tests/test_handler_mutants_nn.py",
         "tests/test_handler_mutants_elementwise.py", "tests/test_handler_mutants_2.py",
         "tests/test_handler_mutants_tensor.py", "tests/test_handler_mutants_3.py", "tests/test_optimize.py",
         "tests/test_optimize_mutants.py", "tests/test_detection_output.py", "tests/test_ssd_layers.py"),
        "NetDef -> ONNX handlers and naming, against onnxruntime, the reference evaluator and OpenCV",
    ),
    Group(
        "caffe2-netdef",
        ("converters/caffe2/translate.py", "converters/caffe2/netdef.py", "converters/caffe2/detection.py"),
        ("tests/test_caffe2_conformance.py", "tests/test_layers.py", "tests/test_roundtrip.py",
         "tests/test_netdef_files.py", "tests/test_translate_limits.py", "tests/test_netdef_mutants.py",
         "tests/test_translate_pool_and_blob_names.py", "tests/test_translate_conv_ip_flatten.py",
         "tests/test_translate_slice_global_pool.py", "tests/test_detection_output.py", "tests/test_ssd_layers.py",
         "tests/test_hostile.py::test_caffe_parameter_caffe_rejects"),
        "Caffe -> NetDef translation and the NetDef schema, against real Caffe2 and its frontend",
    ),
    Group(
        "caffe2-compat",
        ("converters/caffe2/compat.py",),
        ("tests/test_compat.py", "tests/test_netdef_mutants.py"),
        "--compat zoo, against the published zoo graph",
    ),
    Group(
        "synthetic",
        ("converters/builtin/*.py",),
        ("tests/test_synthetic_weights_cli.py", "tests/test_builtin.py", "tests/test_builtin_224.py"),
        "seeded synthetic weights (the built-in's and --synthetic-weights'), against OpenCV and their documented scale",
    ),
    Group(
        "versioning",
        ("versioning/*.py",),
        ("tests/test_legacy_kernels.py", "tests/test_handler_coverage.py", "tests/test_opsets.py",
         "tests/test_checker.py", "tests/test_adapter_sweep.py", "tests/test_versioning_survivors.py",
         "tests/test_versioning_mutants.py", "tests/test_versioning_mutants_adapters.py",
         "tests/test_versioning_mutants_legacy.py",
         "-k", "not alexnet227 and not alexnet224 and not published_output"),
        "opset table, adapters between opsets, legacy kernels; onnx's version table and onnxruntime",
    ),
)


@dataclass
class ModuleScore:
    """Counts for one mutated module."""

    path: str
    status: Counter = field(default_factory=Counter)
    survivors: list[str] = field(default_factory=list)
    equivalent: list[str] = field(default_factory=list)
    codes: dict[str, int | None] = field(default_factory=dict)  # mutmut's exit code per mutant

    @property
    def mutants(self) -> int:
        return sum(self.status.values())

    @property
    def judged(self) -> int:
        return self.mutants - self.status["equivalent"] - self.status["not checked"]

    @property
    def score(self) -> float:
        return self.status["killed"] / self.judged if self.judged else math.nan


def load_equivalents(path: Path = EQUIVALENTS) -> dict[str, str]:
    """Mutant name -> why it cannot change behaviour."""
    if not path.is_file():
        return {}
    table = tomllib.loads(path.read_text("utf-8"))
    return {name: entry["why"] for name, entry in table.get("mutant", {}).items()}


def committed_revision(repo: Path) -> str:
    """HEAD's full commit id; a run mutates this one commit in every group, whatever lands meanwhile."""
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True,
                          text=True).stdout.strip()


def prepare(group: Group, work: Path, repo: Path, revision: str = "HEAD") -> Path:
    """A fresh copy of the committed tree at ``revision`` with the group's mutmut settings; returns its folder.

    The committed tree, not the checkout: a score belongs to a commit, and a half-made edit in the
    checkout (a bug planted by hand to see a test fail, say) must never be what gets mutated.
    """
    folder = work / group.name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", "--format=tar", revision], cwd=repo, check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    for package in SUBPACKAGES:
        (folder / package).rename(folder / IMPORT_PACKAGE / package)
    settings = {
        "source_paths": [IMPORT_PACKAGE],
        "only_mutate": [f"{IMPORT_PACKAGE}/{module}" for module in group.modules],
        "pytest_add_cli_args": ["-p", "no:cacheprovider"],
        "pytest_add_cli_args_test_selection": list(group.tests),
        "also_copy": ["docs", "scripts", "README.md"],  # tests read the committed tables and docs
        "timeout_multiplier": 5.0,
        "timeout_constant": 5.0,
    }
    with open(folder / "pyproject.toml", "a", encoding="utf-8") as handle:
        handle.write("\n[tool.mutmut]\n")
        handle.writelines(f"{key} = {json.dumps(value)}\n" for key, value in settings.items())
    return folder


_GENERATE = """
import json, os, sys
from mutmut.__main__ import (copy_also_copy_files, copy_src_dir, create_mutants, setup_source_paths,
                             store_lines_covered_by_tests)
os.makedirs("mutants", exist_ok=True)
copy_src_dir(); copy_also_copy_files(); setup_source_paths(); store_lines_covered_by_tests()
create_mutants(int(sys.argv[1]))
"""


def mutant_names(folder: Path, max_children: int) -> list[str]:
    """Every mutant of the group, generated (not run) by mutmut, in a stable order."""
    subprocess.run([sys.executable, "-c", _GENERATE, str(max_children)], cwd=folder, check=True,
                   capture_output=True)
    names = []
    for meta in sorted((folder / "mutants").rglob("*.py.meta")):
        names += sorted(json.loads(meta.read_text("utf-8"))["exit_code_by_key"])
    return names


def sample(names: Sequence[str], fraction: float, seed: int) -> list[str]:
    """A seeded sample of ``fraction`` of ``names`` (all of them at 1)."""
    if fraction >= 1:
        return list(names)
    count = max(1, round(len(names) * fraction))
    return sorted(random.Random(seed).sample(list(names), count))


def run_group(group: Group, folder: Path, max_children: int, shared: Path, log: Path,
              names: Sequence[str] = ()) -> float:
    """Run mutmut in ``folder`` (only ``names`` if given); returns the wall seconds it took."""
    # Every forked mutant run makes its own pytest basetemp and none is ever pruned (thousands of
    # GB-sized releases filled /tmp once): they go to a scratch folder removed after the run.
    scratch = folder / "tmp"
    scratch.mkdir(exist_ok=True)
    env = {**os.environ, "ZOOFORGE_SHARED": str(shared), "PYTHONDONTWRITEBYTECODE": "1", "TMPDIR": str(scratch)}
    env.pop("CI", None)  # the copy has ../shared through ZOOFORGE_SHARED; never skip-to-pass here
    started = time.monotonic()
    try:
        with open(log, "w", encoding="utf-8") as handle:
            done = subprocess.run(["mutmut", "run", "--max-children", str(max_children), *names], cwd=folder,
                                  env=env, stdout=handle, stderr=subprocess.STDOUT, check=False)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    text = log.read_text("utf-8", "replace")
    # mutmut may exit 1 after a complete run of named mutants; only a run that never finished failed
    if done.returncode != 0 and "mutations/second" not in text:
        tail = text.replace("\r", "\n").splitlines()[-15:]
        raise SystemExit(f"mutmut failed in group {group.name} (exit {done.returncode}); "
                         f"log {log}:\n" + "\n".join(tail))
    return time.monotonic() - started


def read_scores(folder: Path, equivalents: dict[str, str]) -> list[ModuleScore]:
    """Per mutated module, mutmut's verdicts from its ``.meta`` files, with our equivalents applied."""
    scores = []
    for meta in sorted((folder / "mutants").rglob("*.py.meta")):
        relative = meta.relative_to(folder / "mutants").as_posix()[: -len(".meta")]
        module = ModuleScore(relative)
        module.codes = json.loads(meta.read_text("utf-8"))["exit_code_by_key"]
        for name, code in module.codes.items():
            if code in KILLED_CODES:
                module.status["killed"] += 1
            elif code in SURVIVED_CODES or code in NO_TESTS_CODES:
                if name in equivalents:
                    module.status["equivalent"] += 1
                    module.equivalent.append(name)
                else:
                    module.status["survived" if code in SURVIVED_CODES else "no tests"] += 1
                    module.survivors.append(name)
            elif code is None:
                module.status["not checked"] += 1
            else:
                module.status["suspicious"] += 1
                module.survivors.append(name)
        if module.mutants:
            scores.append(module)
    return scores


_DIFFS = """
import json, sys
from mutmut.mutation.diff_apply import get_diff_for_mutant
wanted = json.load(sys.stdin)
json.dump({name: get_diff_for_mutant(name, path=path) for name, path in wanted.items()}, sys.stdout)
"""


def diffs(folder: Path, scores: Sequence[ModuleScore]) -> dict[str, str]:
    """mutmut's diff of every survivor, read in one process (``mutmut show`` costs a second each)."""
    wanted = {name: score.path for score in scores for name in score.survivors}
    if not wanted:
        return {}
    done = subprocess.run([sys.executable, "-c", _DIFFS], cwd=folder, input=json.dumps(wanted),
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def table(rows: Iterable[tuple[str, ModuleScore]]) -> list[str]:
    lines = ["| group | module | tried / mutants | killed | survived | no tests | equivalent | score |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    total = ModuleScore("total")
    for group, score in rows:
        total.status.update(score.status)
        lines.append(f"| {group} | {score.path} | {score.mutants - score.status['not checked']} / {score.mutants} | "
                     f"{score.status['killed']} | "
                     f"{score.status['survived'] + score.status['suspicious']} | {score.status['no tests']} | "
                     f"{score.status['equivalent']} | {_percent(score.score)} |")
    lines.append(f"| **all** | | {total.mutants - total.status['not checked']} / {total.mutants} | "
                 f"{total.status['killed']} | "
                 f"{total.status['survived'] + total.status['suspicious']} | {total.status['no tests']} | "
                 f"{total.status['equivalent']} | **{_percent(total.score)}** |")
    judged = total.judged
    low, high = wilson(total.status["killed"], judged)
    lines.append(f"\n95% interval of the score (Wilson, {judged} mutants judged): {low:.1%} .. {high:.1%}")
    return lines


def _percent(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1%}"


def wilson(killed: int, judged: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a kill ratio; for a sampled run it bounds the whole population's."""
    if not judged:
        return 0.0, 1.0
    p = killed / judged
    centre = (p + z * z / (2 * judged)) / (1 + z * z / judged)
    half = z * math.sqrt(p * (1 - p) / judged + z * z / (4 * judged * judged)) / (1 + z * z / judged)
    return max(0.0, centre - half), min(1.0, centre + half)


def stale_equivalents(equivalents: dict[str, str], seen: dict[str, ModuleScore], groups: Sequence[Group]) -> list[str]:
    """Listed equivalents of the groups run that no longer exist, or were tried and killed."""
    codes = {name: code for score in seen.values() for name, code in score.codes.items()}
    prefixes = tuple(f"{IMPORT_PACKAGE}." + module.split("*")[0].replace("/", ".")
                     for group in groups for module in group.modules)
    return sorted(name for name in equivalents if name.startswith(prefixes)
                  and (name not in codes or codes[name] in KILLED_CODES))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--group", action="append", choices=[g.name for g in GROUPS],
                        help="run only this group (repeatable); default: every group")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help=f"scratch folder (default {DEFAULT_WORK})")
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2, help="mutants run at once")
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared", help="the real models and data")
    parser.add_argument("--sample", type=float, default=DEFAULT_SAMPLE, metavar="FRACTION",
                        help=f"run a seeded sample of each group's mutants (default {DEFAULT_SAMPLE}; 1 = all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample (default 0)")
    parser.add_argument("--report-only", action="store_true", help="re-read the last run's results")
    parser.add_argument("--list", action="store_true", help="print the groups and exit")
    args = parser.parse_args(argv)

    if args.list:
        for group in GROUPS:
            print(f"{group.name}: {group.why}\n  mutates {' '.join(group.modules)}\n  tests   {' '.join(group.tests)}")
        return 0
    if shutil.which("mutmut") is None:
        print('error: mutmut is not installed; pip install -e ".[mutation]"', file=sys.stderr)
        return 2
    if not args.shared.is_dir():
        print(f"error: the real models and data are missing: no folder {args.shared} (--shared)", file=sys.stderr)
        return 2

    groups = [g for g in GROUPS if not args.group or g.name in args.group]
    equivalents = load_equivalents()
    args.work.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, ModuleScore]] = []
    report = ["# Mutation testing report", ""]
    seen: dict[str, ModuleScore] = {}
    revision = committed_revision(REPO)
    if not args.report_only:
        print(f"mutating the committed tree at {revision[:7]} (uncommitted edits are not included)")
    for group in groups:
        folder = args.work / group.name
        if not args.report_only:
            print(f"[{group.name}] mutating {' '.join(group.modules)}", flush=True)
            folder = prepare(group, args.work, REPO, revision)
            every = mutant_names(folder, args.max_children)
            chosen = sample(every, args.sample, args.seed)
            print(f"[{group.name}] {len(chosen)} of {len(every)} mutants", flush=True)
            seconds = run_group(group, folder, args.max_children, args.shared, args.work / f"{group.name}.log",
                                chosen if len(chosen) < len(every) else ())
            print(f"[{group.name}] done in {seconds:.0f} s", flush=True)
        scores = read_scores(folder, equivalents)
        shown = diffs(folder, scores)
        for score in scores:
            rows.append((group.name, score))
            seen[score.path] = score
            for name in score.survivors:
                report += [f"## {name} ({group.name})", "", "```diff", shown[name].strip(), "```", ""]
    lines = table(rows)
    print("\n".join(lines))
    stale = stale_equivalents(equivalents, seen, groups)
    for name in stale:
        print(f"warning: {name} is listed in {EQUIVALENTS.name} but did not survive (or no longer exists)")
    survivors = [name for _, score in rows for name in score.survivors]
    print(f"{len(survivors)} survivor(s); diffs in {args.work / 'report.md'}")
    (args.work / "report.md").write_text("\n".join(lines + [""] + report) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
