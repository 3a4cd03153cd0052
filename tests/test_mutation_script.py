"""scripts/mutation.py's bookkeeping: verdicts per module, equivalents, the sample and its interval."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "mutation.py"


@pytest.fixture(scope="module")
def mutation():
    spec = importlib.util.spec_from_file_location("mutation_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it runs
    spec.loader.exec_module(module)
    return module


def test_wilson_interval_of_90_in_100(mutation):
    low, high = mutation.wilson(90, 100)  # textbook value: 0.8256 .. 0.9448
    assert low == pytest.approx(0.8256, abs=1e-4) and high == pytest.approx(0.9448, abs=1e-4)
    assert mutation.wilson(0, 0) == (0.0, 1.0)


def test_sample_is_seeded_and_sized(mutation):
    names = [f"m{i}" for i in range(200)]
    first = mutation.sample(names, 0.15, 0)
    assert len(first) == 30 and first == mutation.sample(names, 0.15, 0) and set(first) <= set(names)
    assert first != mutation.sample(names, 0.15, 1)
    assert mutation.sample(names, 1, 0) == names


def test_verdicts_are_counted_per_module(mutation, tmp_path):
    meta = tmp_path / "mutants" / "pkg" / "mod.py.meta"
    meta.parent.mkdir(parents=True)
    codes = {"pkg.mod.x_f__mutmut_1": 1, "pkg.mod.x_f__mutmut_2": 0, "pkg.mod.x_f__mutmut_3": 0,
             "pkg.mod.x_f__mutmut_4": 33, "pkg.mod.x_f__mutmut_5": None, "pkg.mod.x_f__mutmut_6": -24}
    meta.write_text(json.dumps({"exit_code_by_key": codes}))
    (score,) = mutation.read_scores(tmp_path, {"pkg.mod.x_f__mutmut_3": "cannot differ"})
    assert score.path == "pkg/mod.py"
    assert dict(score.status) == {"killed": 2, "survived": 1, "equivalent": 1, "no tests": 1, "not checked": 1}
    assert score.survivors == ["pkg.mod.x_f__mutmut_2", "pkg.mod.x_f__mutmut_4"]
    assert score.score == pytest.approx(2 / 4)  # killed / (tried - equivalent)
    group = mutation.Group("g", ("pkg/*.py",), (), "")  # a repository path; the copy's module is zooforge.pkg.mod
    codes = {f"zooforge.{name}": code for name, code in score.codes.items()}
    score.codes = codes
    stale = mutation.stale_equivalents({"zooforge.pkg.mod.x_f__mutmut_1": "wrong", "zooforge.pkg.mod.x_f__mutmut_3": "ok",
                                        "zooforge.pkg.mod.x_gone__mutmut_1": "gone", "zooforge.other.x__mutmut_1": "not run",
                                        "pkg.mod.x_gone__mutmut_1": "not zooforge's"},
                                       {score.path: score}, [group])
    assert stale == ["zooforge.pkg.mod.x_f__mutmut_1", "zooforge.pkg.mod.x_gone__mutmut_1"]


def test_every_listed_equivalent_has_a_reason(mutation):
    listed = mutation.load_equivalents()
    assert listed and all(len(why) > 20 for why in listed.values())


def test_mutmut_temporary_files_stay_in_the_scratch_copy(mutation, tmp_path, monkeypatch):
    """Forked mutant runs never prune their pytest basetemps: they must not pile up in the system's /tmp."""
    bin_dir, folder = tmp_path / "bin", tmp_path / "group"
    bin_dir.mkdir(), folder.mkdir()
    fake = bin_dir / "mutmut"  # stands in for mutmut: leaves a basetemp where TMPDIR says, records where
    fake.write_text('#!/bin/sh\nmkdir -p "$TMPDIR/pytest-of-x/pytest-1"\necho "$TMPDIR" > "$PWD/seen"\n'
                    'echo "1.0 mutations/second"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path('/usr/bin')}:{Path('/bin')}")
    mutation.run_group(mutation.Group("g", (), (), ""), folder, 1, tmp_path, tmp_path / "log")
    seen = Path((folder / "seen").read_text().strip())
    assert seen.parent == folder and not seen.exists()


def test_the_committed_tree_is_mutated_not_the_checkout(mutation, tmp_path):
    """An uncommitted edit (a bug planted by hand, say) never reaches the scratch copy."""
    repo = tmp_path / "repo"
    for package in ("zooforge", "converters", "versioning", "artifacts"):
        (repo / package).mkdir(parents=True)
        (repo / package / "__init__.py").write_text("")
    (repo / "converters" / "mod.py").write_text("X = 1\n")
    (repo / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo)]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "c"], check=True)
    (repo / "converters" / "mod.py").write_text("X = 2  # planted\n")
    (repo / "untracked.py").write_text("")
    group = mutation.Group("g", ("converters/*.py",), ("tests/t.py",), "")
    folder = mutation.prepare(group, tmp_path / "work", repo)
    # laid out as installed, so that mutant names are the module names tests import
    assert (folder / "zooforge" / "converters" / "mod.py").read_text() == "X = 1\n"
    assert not (folder / "converters").exists() and (folder / "zooforge" / "versioning" / "__init__.py").is_file()
    assert not (folder / "untracked.py").exists()
    settings = (folder / "pyproject.toml").read_text()
    assert settings.startswith("[project]") and 'only_mutate = ["zooforge/converters/*.py"]' in settings
    assert 'source_paths = ["zooforge"]' in settings
    # a run fixes its commit at the start: a commit landing while it runs reaches no later group
    first = mutation.committed_revision(repo)
    (repo / "converters" / "mod.py").write_text("X = 3\n")
    subprocess.run([*git, "commit", "-qam", "later"], check=True)
    later = mutation.prepare(mutation.Group("h", ("converters/*.py",), ("tests/t.py",), ""), tmp_path / "work",
                             repo, first)
    assert (later / "zooforge" / "converters" / "mod.py").read_text() == "X = 1\n"
