"""Edges of ``zoo-verify`` (``zooforge.artifacts.provenance.verify``) and of the indexes it reads (``zooforge.artifacts.release.manifest``).

Every expected problem is a sentence written out here by hand (the wording of the module docstring
and README "Provenance": ``changed: X``, ``added: Y``, ``removed: Z``, ``renamed? X -> Y``, or a line
beginning with the index that disagrees); every digest is hashlib's. A LeNet release (opsets 9 and
12, one test set, no quantized variants) is built once per module and copied into each test that
changes it. The tests edit the release's indexes by hand (sha256sum lines, the manifest's JSON, the
statements' JSON lines), never through the project's writers, so a bug there cannot hide one here.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from zooforge.artifacts.release.manifest import (
    Artifact,
    io_ports,
    manifest_entry,
    write_manifest,
    write_sha256sums,
)
from zooforge.artifacts.provenance.signing import make_test_keypair, sign_release
from zooforge.artifacts.provenance.verify import verify_artifact, verify_release
from zooforge.converters.errors import InputFileError

from conftest import build_lenet_release, shared_work_scope

SUMS = "SHA256SUMS"
MANIFEST = "manifest.json"
STATEMENTS = "provenance.intoto.jsonl"
SIG = "release.sig"
MODEL9, ARCHIVE9, MODEL12, ARCHIVE12 = "lenet-9.onnx", "lenet-9.tar.gz", "lenet-12.onnx", "lenet-12.tar.gz"
INIT, PREDICT, VALUE_INFO = "caffe2/init_net.pb", "caffe2/predict_net.pb", "caffe2/value_info.json"

# README "Releases": per opset an .onnx and a .tar.gz, caffe2/ with the NetDef pair and value_info.json,
# README.md, manifest.json, parity.json and provenance.intoto.jsonl; SHA256SUMS lists all of them.
LISTED = ["README.md", INIT, PREDICT, VALUE_INFO, MODEL12, ARCHIVE12, MODEL9, ARCHIVE9,
          MANIFEST, "parity.json", STATEMENTS]
# docs/provenance-format.md: a statement for every .onnx and .tar.gz and for each Caffe2 file.
SUBJECTS = [INIT, PREDICT, VALUE_INFO, MODEL12, ARCHIVE12, MODEL9, ARCHIVE9]
UNSIGNED_NOTE = "no release.sig: the release is unsigned"
Z64, O64, T64 = "0" * 64, "1" * 64, "2" * 64


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --------------------------------------------------------------------- hand-made index editing


def sums_lines(release: Path) -> list[str]:
    return (release / SUMS).read_text().splitlines()


def write_sums_lines(release: Path, lines: list[str]) -> None:
    (release / SUMS).write_text("".join(f"{line}\n" for line in lines))


def reindex(release: Path, *names: str) -> None:
    """Give ``names`` their true digest on their SHA256SUMS line (``<hex>  <name>``), in place."""
    lines = []
    for line in sums_lines(release):
        name = line[66:]
        lines.append(f"{sha256(release / name)}  {name}" if name in names else line)
    write_sums_lines(release, lines)


def set_sums_digest(release: Path, name: str, digest: str) -> None:
    write_sums_lines(release, [f"{digest}  {name}" if line[66:] == name else line for line in sums_lines(release)])


def drop_sums_line(release: Path, name: str) -> None:
    write_sums_lines(release, [line for line in sums_lines(release) if line[66:] != name])


def load_manifest(release: Path) -> list[dict]:
    return json.loads((release / MANIFEST).read_text())


def store_manifest(release: Path, entries: object) -> None:
    (release / MANIFEST).write_text(json.dumps(entries, indent=2) + "\n")
    reindex(release, MANIFEST)


def entry_for(entries: list[dict], model_path: str) -> dict:
    return next(e for e in entries if e["model_path"] == model_path)


def load_statements(release: Path) -> list[dict]:
    return [json.loads(line) for line in (release / STATEMENTS).read_text().splitlines()]


def store_statements(release: Path, statements: list[dict]) -> None:
    (release / STATEMENTS).write_text("".join(json.dumps(s, sort_keys=True, separators=(",", ":")) + "\n"
                                              for s in statements))
    reindex(release, STATEMENTS)


def statement_of(statements: list[dict], name: str) -> dict:
    return next(s for s in statements if s["subject"][0]["name"] == name)


def dependencies(statement: dict) -> list[dict]:
    return statement["predicate"]["buildDefinition"]["resolvedDependencies"]


# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope=shared_work_scope)
def built(shared, tmp_path_factory) -> Path:
    return build_lenet_release(shared, tmp_path_factory.mktemp("edges") / "lenet")


@pytest.fixture
def release(built, tmp_path) -> Path:
    copy = tmp_path / "release"
    shutil.copytree(built, copy, symlinks=True)
    return copy


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> tuple[Path, Path]:
    return make_test_keypair(tmp_path_factory.mktemp("edge-keys"))


# ---------------------------------------------------------------------------- a whole release


def test_built_release_is_what_the_readme_lists(built):
    files = sorted(p.relative_to(built).as_posix() for p in built.rglob("*") if p.is_file())
    assert files == sorted([*LISTED, SUMS])
    # sha256sum's format, one line per file but SHA256SUMS itself, sorted by name, digests from hashlib
    assert (built / SUMS).read_text() == "".join(f"{sha256(built / n)}  {n}\n" for n in LISTED)
    names = [json.loads(line)["subject"][0]["name"] for line in (built / STATEMENTS).read_text().splitlines()]
    assert names == SUBJECTS


def test_fresh_release_report_in_full(built):
    report = verify_release(built)
    assert report.verified and report.problems == []
    assert report.notes == [UNSIGNED_NOTE]
    assert report.checked == {"sha256sums": 11, "manifest": 2, "provenance": 7, "signature": "absent"}


def test_manifest_holds_the_hub_fields(built):
    """README "Releases": manifest.json in the ONNX hub's form, one entry per fp32 variant."""
    io = {"inputs": [{"name": "data_0", "shape": [1, 1, 28, 28], "type": "tensor(float)"}],
          "outputs": [{"name": "prob_1", "shape": [1, 10], "type": "tensor(float)"}]}
    expected = [
        {"model": "LeNet", "model_path": model, "onnx_version": onnx_version, "opset_version": opset,
         "metadata": {"model_sha": sha256(built / model), "model_bytes": (built / model).stat().st_size,
                      "tags": ["vision", "classification", "lenet"], "io_ports": io,
                      "model_with_data_path": archive, "model_with_data_sha": sha256(built / archive),
                      "model_with_data_bytes": (built / archive).stat().st_size}}
        for model, archive, onnx_version, opset in ((MODEL9, ARCHIVE9, "1.4.1", 9), (MODEL12, ARCHIVE12, "1.7", 12))
    ]
    assert load_manifest(built) == expected
    assert [list(entry["metadata"]) for entry in load_manifest(built)] == [list(e["metadata"]) for e in expected]


def test_not_a_release_folder_is_an_input_error(release, tmp_path):
    with pytest.raises(InputFileError) as missing:
        verify_release(tmp_path / "nowhere")
    assert str(missing.value) == f"release folder {tmp_path / 'nowhere'} does not exist"
    with pytest.raises(InputFileError) as file:
        verify_release(release / MODEL9)
    assert str(file.value) == f"{release / MODEL9} is not a folder; to check one file give --manifest"


# --------------------------------------------------------------------------------- SHA256SUMS


def test_missing_sums_file(release):
    (release / SUMS).unlink()
    report = verify_release(release)
    assert report.problems == ["SHA256SUMS is missing"]
    assert report.checked == {"sha256sums": 0, "manifest": 2, "provenance": 7, "signature": "absent"}


def test_malformed_sums_lines_are_numbered_from_one(release):
    lines = sums_lines(release)
    # line 2 is blank (skipped, but counted), line 3 is garbage, line 5 has one space only,
    # line 7 has an upper-case digest; the 11 good lines list every file
    write_sums_lines(release, [lines[0], "", "not a checksum line", lines[1], f"{Z64} extra.txt", lines[2],
                               f"{'A' * 64}  extra.txt", *lines[3:]])
    report = verify_release(release)
    assert report.problems == [
        "SHA256SUMS line 3 is not '<sha256>  <file>'",
        "SHA256SUMS line 5 is not '<sha256>  <file>'",
        "SHA256SUMS line 7 is not '<sha256>  <file>'",
    ]
    assert report.checked["sha256sums"] == 11


def test_binary_mode_sums_lines_are_accepted(release):
    write_sums_lines(release, [f"{line[:64]} *{line[66:]}" for line in sums_lines(release)])
    report = verify_release(release)
    assert report.verified, report.problems
    assert report.checked["sha256sums"] == 11


@pytest.mark.parametrize("name", [MODEL9, ARCHIVE9, MODEL12, ARCHIVE12, INIT, PREDICT, VALUE_INFO])
def test_a_wrong_sums_line_is_blamed_when_the_other_indexes_agree_with_the_file(release, name):
    """The manifest (for models and tarballs) and the statements (for every subject) record the
    file's true digest, so the SHA256SUMS line is what changed."""
    set_sums_digest(release, name, Z64)
    report = verify_release(release)
    assert report.problems == [
        (f"changed: SHA256SUMS (its line for {name} records {Z64}, but {name} has the sha256 that "
        "manifest.json and the provenance statements record)")
    ]


@pytest.mark.parametrize("name", ["README.md", "parity.json"])
def test_a_wrong_sums_line_for_an_unrecorded_file_blames_the_file(release, name):
    set_sums_digest(release, name, Z64)
    assert verify_release(release).problems == [f"changed: {name}"]


@pytest.mark.parametrize("name", [MODEL9, ARCHIVE9, MODEL12, ARCHIVE12])
def test_the_manifest_alone_can_vouch_for_a_file(release, name):
    """Without statements, the manifest's digest alone shows the SHA256SUMS line is wrong."""
    (release / STATEMENTS).unlink()
    drop_sums_line(release, STATEMENTS)
    set_sums_digest(release, name, Z64)
    report = verify_release(release)
    assert report.problems == [
        (f"changed: SHA256SUMS (its line for {name} records {Z64}, but {name} has the sha256 that "
        "manifest.json and the provenance statements record)")
    ]
    assert report.notes == ["no provenance.intoto.jsonl: provenance not checked", UNSIGNED_NOTE]
    assert report.checked == {"sha256sums": 10, "manifest": 2, "provenance": None, "signature": "absent"}


def test_a_manifest_entry_without_a_digest_does_not_vouch_against_the_statements(release):
    """The manifest names lenet-9.onnx but records no digest for it: only the statements speak,
    and they agree with the file, so the SHA256SUMS line is blamed."""
    entries = load_manifest(release)
    del entry_for(entries, MODEL9)["metadata"]["model_sha"]
    entry_for(entries, MODEL12)["metadata"]["model_with_data_sha"] = ""
    store_manifest(release, entries)
    set_sums_digest(release, MODEL9, Z64)
    set_sums_digest(release, ARCHIVE12, Z64)
    assert verify_release(release).problems == [  # in SHA256SUMS order, then the manifest's
        (f"changed: SHA256SUMS (its line for {ARCHIVE12} records {Z64}, but {ARCHIVE12} has the sha256 that "
        "manifest.json and the provenance statements record)"),
        (f"changed: SHA256SUMS (its line for {MODEL9} records {Z64}, but {MODEL9} has the sha256 that "
        "manifest.json and the provenance statements record)"),
        f"manifest.json: {MODEL9} has sha256 {sha256(release / MODEL9)}, the manifest records None",
        f"manifest.json: {ARCHIVE12} has sha256 {sha256(release / ARCHIVE12)}, the manifest records ",
    ]


def test_a_name_listed_twice_in_sha256sums_is_a_problem(release):
    """A wrong line followed by the right one for the same file (it once verified cleanly)."""
    lines = sums_lines(release)
    write_sums_lines(release, [f"{Z64}  {MODEL9}", *lines])
    report = verify_release(release)
    assert not report.verified
    number = 1 + next(i for i, line in enumerate(lines, 1) if line.endswith(f"  {MODEL9}"))
    assert f"SHA256SUMS line {number} lists {MODEL9} again (first on line 1)" in report.problems


def test_without_statements_a_caffe2_file_is_vouched_for_by_nobody(release):
    (release / STATEMENTS).unlink()
    drop_sums_line(release, STATEMENTS)
    set_sums_digest(release, INIT, Z64)
    assert verify_release(release).problems == [f"changed: {INIT}"]


def test_indexes_that_disagree_with_each_other_vouch_for_nothing(release):
    """The statements record the file's digest but the manifest another one: the file is blamed."""
    entries = load_manifest(release)
    entry_for(entries, MODEL9)["metadata"]["model_sha"] = O64
    store_manifest(release, entries)
    set_sums_digest(release, MODEL9, Z64)
    assert verify_release(release).problems == [
        f"changed: {MODEL9}",
        f"manifest.json: {MODEL9} has sha256 {sha256(release / MODEL9)}, the manifest records {O64}",
    ]


def test_malformed_statements_vouch_for_nothing(release):
    with (release / STATEMENTS).open("a") as stream:
        stream.write("[]\n")
    reindex(release, STATEMENTS)
    set_sums_digest(release, INIT, Z64)
    assert verify_release(release).problems == [
        f"changed: {INIT}",
        "provenance: provenance.intoto.jsonl line 8: not a JSON object",
    ]


def test_a_changed_file_with_a_true_sums_line(release):
    """A file whose bytes changed after every index was written: named as changed, by each index."""
    recorded = sha256(release / INIT)
    data = bytearray((release / INIT).read_bytes())
    data[10] ^= 0xFF
    (release / INIT).write_bytes(bytes(data))
    new = sha256(release / INIT)
    problems = verify_release(release).problems
    assert problems == [
        f"changed: {INIT}",
        f"provenance: subject {INIT} has sha256 {recorded} but the file has {new}",
        f"provenance: {MODEL12}: parent {INIT} has sha256 {new}, its statement records {recorded}",
        f"provenance: {ARCHIVE12}: parent {INIT} has sha256 {new}, its statement records {recorded}",
        f"provenance: {MODEL9}: parent {INIT} has sha256 {new}, its statement records {recorded}",
        f"provenance: {ARCHIVE9}: parent {INIT} has sha256 {new}, its statement records {recorded}",
    ]


def test_added_removed_renamed_and_odd_entries_in_order(release):
    (release / "README.md").unlink()
    (release / "parity.json").rename(release / "parity-old.json")
    (release / "caffe2" / "zz.txt").write_text("z\n")
    (release / "aa.txt").write_text("a\n")
    (release / "empty" / "deeper").mkdir(parents=True)
    os.symlink("lenet-9.tar.gz", release / "link.txt")
    os.mkfifo(release / "pipe")
    report = verify_release(release)
    assert report.problems == [
        "added: aa.txt",
        "added: caffe2/zz.txt",
        "removed: README.md",
        "renamed? parity.json -> parity-old.json",
        "added: empty/ (a folder with no files)",
        "added: empty/deeper/ (a folder with no files)",
        "added: link.txt (a symbolic link)",
        "added: pipe (not a regular file)",
    ]
    assert report.checked["sha256sums"] == 11


def test_two_renames_are_paired_by_digest(release):
    (release / "README.md").rename(release / "b-readme.md")
    (release / "parity.json").rename(release / "a-parity.json")
    assert verify_release(release).problems == ["renamed? README.md -> b-readme.md",
                                               "renamed? parity.json -> a-parity.json"]


# ------------------------------------------------------------------------------- manifest.json


def test_missing_manifest(release):
    (release / MANIFEST).unlink()
    drop_sums_line(release, MANIFEST)
    report = verify_release(release)
    assert report.problems == ["manifest.json is missing"]
    assert "manifest" not in report.checked


def test_manifest_that_is_not_json(release):
    (release / MANIFEST).write_text("{")
    reindex(release, MANIFEST)
    assert verify_release(release).problems == [
        ("manifest.json is not readable JSON (Expecting property name enclosed in double quotes: "
        "line 1 column 2 (char 1))")
    ]


@pytest.mark.parametrize("entries", [{"model": "LeNet"}, [{"model": "LeNet"}], [{"metadata": []}], ["x"]])
def test_manifest_that_is_not_a_list_of_entries(release, entries):
    store_manifest(release, entries)
    assert verify_release(release).problems == ["manifest.json is not a list of entries with metadata"]


def test_entry_without_a_model_path_still_has_its_archive_checked(release):
    entries = load_manifest(release)
    entry = entry_for(entries, MODEL9)
    del entry["model_path"]
    entry["metadata"]["model_with_data_sha"] = T64
    store_manifest(release, entries)
    report = verify_release(release)
    assert report.problems == [
        "manifest.json: an entry (LeNet) has no model_path",
        f"manifest.json: {ARCHIVE9} has sha256 {sha256(release / ARCHIVE9)}, the manifest records {T64}",
    ]
    assert report.checked["manifest"] == 2


def test_entry_without_an_archive_path_still_has_the_next_entry_checked(release):
    entries = load_manifest(release)
    entry_for(entries, MODEL9)["metadata"]["model_with_data_path"] = ""
    entry_for(entries, MODEL12)["metadata"]["model_sha"] = T64
    store_manifest(release, entries)
    assert verify_release(release).problems == [
        "manifest.json: an entry (LeNet) has no model_with_data_path",
        f"manifest.json: {MODEL12} has sha256 {sha256(release / MODEL12)}, the manifest records {T64}",
    ]


def test_manifest_sizes_are_checked(release):
    entries = load_manifest(release)
    size = (release / ARCHIVE12).stat().st_size
    entry_for(entries, MODEL9)["metadata"]["model_bytes"] = 12345
    entry_for(entries, MODEL12)["metadata"]["model_with_data_bytes"] = str(size)  # a size is a number
    store_manifest(release, entries)
    assert verify_release(release).problems == [
        f"manifest.json: {MODEL9} is {(release / MODEL9).stat().st_size} bytes, the manifest records 12345",
        f"manifest.json: {ARCHIVE12} is {size} bytes, the manifest records {size}",
    ]


def test_manifest_naming_files_that_are_not_in_the_release(release, tmp_path):
    (tmp_path / "outside.onnx").write_bytes((release / MODEL9).read_bytes())
    entries = load_manifest(release)
    entry_for(entries, MODEL9)["model_path"] = "lenet-7.onnx"
    entry_for(entries, MODEL12)["model_path"] = "../outside.onnx"
    store_manifest(release, entries)
    assert verify_release(release).problems == [
        "manifest.json: lenet-7.onnx is missing",
        "manifest.json: ../outside.onnx is missing",
    ]


def test_manifest_with_both_digest_and_size_wrong(release):
    entries = load_manifest(release)
    meta = entry_for(entries, MODEL12)["metadata"]
    meta["model_with_data_sha"], meta["model_with_data_bytes"] = O64, 7
    store_manifest(release, entries)
    size = (release / ARCHIVE12).stat().st_size
    assert verify_release(release).problems == [
        f"manifest.json: {ARCHIVE12} has sha256 {sha256(release / ARCHIVE12)}, the manifest records {O64}",
        f"manifest.json: {ARCHIVE12} is {size} bytes, the manifest records 7",
    ]


# ----------------------------------------------------------------------------- the statements


def test_statements_malformed_line_names_the_file_not_the_path(release):
    with (release / STATEMENTS).open("a") as stream:
        stream.write("{not json\n")
    reindex(release, STATEMENTS)
    report = verify_release(release)
    assert report.problems == [("provenance: provenance.intoto.jsonl line 8: not JSON "
                               "(Expecting property name enclosed in double quotes)")]
    assert report.checked["provenance"] is None


def test_statement_subject_digest_mismatch_in_full(release):
    statements = load_statements(release)
    statement_of(statements, MODEL9)["subject"][0]["digest"]["sha256"] = Z64
    store_statements(release, statements)
    assert verify_release(release).problems == [
        f"provenance: subject {MODEL9} has sha256 {Z64} but the file has {sha256(release / MODEL9)}"
    ]


@pytest.mark.parametrize("name", [ARCHIVE9, VALUE_INFO])
def test_artifact_without_a_statement(release, name):
    store_statements(release, [s for s in load_statements(release) if s["subject"][0]["name"] != name])
    report = verify_release(release)
    assert report.problems == [f"provenance: {name} has no statement"]
    assert report.checked["provenance"] == 6


def test_parent_not_in_the_release(release, tmp_path):
    (tmp_path / "outside.pb").write_bytes((release / INIT).read_bytes())
    statements = load_statements(release)
    for name, parent in ((MODEL9, "caffe2/gone.pb"), (ARCHIVE12, "../outside.pb")):
        for dependency in dependencies(statement_of(statements, name)):
            if dependency["name"] == INIT:
                dependency["name"] = parent
    store_statements(release, statements)
    assert verify_release(release).problems == [
        f"provenance: {ARCHIVE12}: parent ../outside.pb is not in the release",
        f"provenance: {MODEL9}: parent caffe2/gone.pb is not in the release",
    ]


def test_only_parents_are_checked_against_the_release(release):
    """Sources (role "source") are files outside the release; a dependency without a role is not a
    parent either; neither is looked for in the release."""
    statements = load_statements(release)
    target = dependencies(statement_of(statements, MODEL9))
    target[0]["digest"]["sha256"] = Z64                    # lenet.prototxt, a source
    target.append({"name": "somewhere/else.bin", "digest": {"sha256": O64}})
    target.append({"name": "other.bin", "digest": {"sha256": O64}, "annotations": {"role": "tool"}})
    store_statements(release, statements)
    report = verify_release(release)
    assert report.verified, report.problems


def test_parent_digest_mismatch_for_several_statements(release):
    statements = load_statements(release)
    for name in (MODEL12, MODEL9):
        for dependency in dependencies(statement_of(statements, name)):
            if dependency["name"] == PREDICT:
                dependency["digest"]["sha256"] = T64
    store_statements(release, statements)
    actual = sha256(release / PREDICT)
    assert verify_release(release).problems == [
        f"provenance: {MODEL12}: parent {PREDICT} has sha256 {actual}, its statement records {T64}",
        f"provenance: {MODEL9}: parent {PREDICT} has sha256 {actual}, its statement records {T64}",
    ]


def test_statement_without_dependencies_is_fine(release):
    statements = load_statements(release)
    del statement_of(statements, MODEL9)["predicate"]["buildDefinition"]["resolvedDependencies"]
    store_statements(release, statements)
    report = verify_release(release)
    assert report.verified, report.problems
    assert report.checked["provenance"] == 7


# --------------------------------------------------------------------------------- release.sig


def test_present_signature_without_a_key_is_only_noted(release):
    (release / SIG).write_text("{}\n")  # not even a bundle: without a key it is not read
    report = verify_release(release)
    assert report.verified and report.problems == []
    assert report.notes == ["signature present, not checked: pass --public-key"]
    assert report.checked["signature"] == "not checked"


def test_a_key_without_a_signature_fails(release, keys):
    report = verify_release(release, keys[1])
    assert report.problems == ["release.sig is missing"]
    assert report.checked["signature"] == "failed"
    assert report.notes == []


def test_a_good_signature_is_verified_and_a_bad_one_failed(release, keys):
    if importlib.util.find_spec("model_signing") is None:
        pytest.skip("needs model-signing (pip install zooforge[sign])")
    sign_release(release, keys[0])
    report = verify_release(release, keys[1])
    assert report.problems == [] and report.notes == []
    assert report.checked["signature"] == "verified"
    (release / "README.md").write_text("edited\n")
    report = verify_release(release, keys[1])
    assert report.problems == ["changed: README.md", "signature: changed: README.md"]
    assert report.checked["signature"] == "failed"


# ---------------------------------------------------------------------------- one downloaded file


def test_each_listed_file_verifies_and_names_its_entry(built):
    for name, entry in ((MODEL9, MODEL9), (ARCHIVE9, MODEL9), (MODEL12, MODEL12), (ARCHIVE12, MODEL12)):
        report = verify_artifact(built / name, built / MANIFEST)
        assert report.problems == [] and report.notes == []
        assert report.checked == {"sha256": sha256(built / name), "entry": entry}


@pytest.mark.parametrize("name, key", [("lenet-7.onnx", "model_path"), ("lenet-7.tar.gz", "model_with_data_path")])
def test_a_file_the_manifest_does_not_list(built, tmp_path, name, key):
    copy = tmp_path / name
    shutil.copy(built / (ARCHIVE9 if name.endswith(".tar.gz") else MODEL9), copy)
    report = verify_artifact(copy, built / MANIFEST)
    assert report.problems == [f"{name} is not listed in manifest.json (as a {key})"]
    assert report.checked == {}


def test_a_file_of_another_kind_is_refused(built, tmp_path):
    copy = tmp_path / "lenet-9.onnx.gz"
    shutil.copy(built / MODEL9, copy)
    with pytest.raises(InputFileError) as raised:
        verify_artifact(copy, built / MANIFEST)
    assert str(raised.value) == "lenet-9.onnx.gz is neither an .onnx model nor a .tar.gz archive of the release"


def test_a_grown_model_is_named_for_digest_and_size(built, tmp_path):
    copy = tmp_path / MODEL9
    copy.write_bytes((built / MODEL9).read_bytes() + b"\0")
    entry = entry_for(load_manifest(built), MODEL9)["metadata"]
    report = verify_artifact(copy, built / MANIFEST)
    assert report.problems == [
        f"changed: {MODEL9} has sha256 {sha256(copy)}, manifest.json records {entry['model_sha']}",
        f"changed: {MODEL9} is {entry['model_bytes'] + 1} bytes, manifest.json records {entry['model_bytes']}",
    ]
    assert report.checked == {"sha256": sha256(copy), "entry": MODEL9}


def test_a_manifest_with_a_wrong_size_only(built, tmp_path):
    entries = load_manifest(built)
    entry_for(entries, MODEL12)["metadata"]["model_with_data_bytes"] = 99
    manifest = tmp_path / MANIFEST
    manifest.write_text(json.dumps(entries))
    size = (built / ARCHIVE12).stat().st_size
    report = verify_artifact(built / ARCHIVE12, manifest)
    assert report.problems == [f"changed: {ARCHIVE12} is {size} bytes, manifest.json records 99"]
    assert report.checked == {"sha256": sha256(built / ARCHIVE12), "entry": MODEL12}


def test_a_tarball_holding_another_model(built, tmp_path):
    swapped = tmp_path / ARCHIVE12
    shutil.copy(built / ARCHIVE9, swapped)
    entry = entry_for(load_manifest(built), MODEL12)["metadata"]
    expected = [(f"changed: {ARCHIVE12} has sha256 {sha256(swapped)}, manifest.json records "
                f"{entry['model_with_data_sha']}")]
    if swapped.stat().st_size != entry["model_with_data_bytes"]:
        expected.append(f"changed: {ARCHIVE12} is {swapped.stat().st_size} bytes, manifest.json records "
                        f"{entry['model_with_data_bytes']}")
    expected.append(f"{ARCHIVE12}: its model.onnx is not the manifest's {MODEL12}")
    report = verify_artifact(swapped, built / MANIFEST)
    assert report.problems == expected
    assert report.checked["entry"] == MODEL12


def tar_gz(path: Path, members: dict[str, bytes | None]) -> None:
    """A .tar.gz written with the stdlib: ``None`` makes a folder entry."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def hand_manifest(folder: Path, model: Path, archive: Path) -> Path:
    """A one-entry manifest in the hub's form, digests from hashlib."""
    entry = {"model": "Mini", "model_path": model.name, "onnx_version": "1.7", "opset_version": 12,
             "metadata": {"model_sha": sha256(model), "model_bytes": model.stat().st_size, "tags": [],
                          "io_ports": {"inputs": [], "outputs": []},
                          "model_with_data_path": archive.name, "model_with_data_sha": sha256(archive),
                          "model_with_data_bytes": archive.stat().st_size}}
    (folder / MANIFEST).write_text(json.dumps([entry]))
    return folder / MANIFEST


@pytest.mark.parametrize("members", [
    {"mini/": None, "mini/model.onnx": "MODEL"},                                  # the release layout
    {"model.onnx": "MODEL"},                                                       # no top folder
    {"mini/": None, "mini/sub/": None, "mini/sub/model.onnx": "MODEL"},            # deeper
    {"mini/": None, "mini/model.onnx/": None, "mini/a/model.onnx": "MODEL"},       # a folder of that name first
    {"mini/": None, "mini/notes.txt": b"x", "mini/model.onnx": "MODEL", "mini/z/model.onnx": b"other"},
])
def test_a_tarballs_model_is_found_wherever_it_is(built, tmp_path, members):
    model = tmp_path / "mini-12.onnx"
    model.write_bytes((built / MODEL12).read_bytes())
    archive = tmp_path / "mini-12.tar.gz"
    tar_gz(archive, {k: model.read_bytes() if v == "MODEL" else v for k, v in members.items()})
    manifest = hand_manifest(tmp_path, model, archive)
    report = verify_artifact(archive, manifest)
    assert report.problems == []
    assert report.checked == {"sha256": sha256(archive), "entry": "mini-12.onnx"}


@pytest.mark.parametrize("content", ["no model", "not a tarball", "empty"])
def test_a_tarball_without_a_readable_model(built, tmp_path, content):
    model = tmp_path / "mini-12.onnx"
    model.write_bytes((built / MODEL12).read_bytes())
    archive = tmp_path / "mini-12.tar.gz"
    if content == "no model":
        tar_gz(archive, {"mini/": None, "mini/model.onnx.bak": model.read_bytes(), "mini/model.onnx/": None})
    elif content == "not a tarball":
        archive.write_bytes(b"\x1f\x8b this is not gzip at all")
    else:
        archive.write_bytes(b"")
    report = verify_artifact(archive, hand_manifest(tmp_path, model, archive))
    assert report.problems == ["mini-12.tar.gz holds no readable model.onnx"]
    assert report.checked == {"sha256": sha256(archive), "entry": "mini-12.onnx"}


def test_single_file_input_errors(built, tmp_path):
    with pytest.raises(InputFileError) as raised:
        verify_artifact(tmp_path / MODEL9, built / MANIFEST)
    assert str(raised.value) == f"{tmp_path / MODEL9} does not exist or is not a file"
    with pytest.raises(InputFileError) as raised:
        verify_artifact(built / "caffe2", built / MANIFEST)
    assert str(raised.value) == f"{built / 'caffe2'} does not exist or is not a file"
    with pytest.raises(InputFileError) as raised:
        verify_artifact(built / "parity.json", built / MANIFEST)
    assert str(raised.value) == "parity.json is neither an .onnx model nor a .tar.gz archive of the release"
    with pytest.raises(InputFileError) as raised:
        verify_artifact(built / MODEL9, tmp_path / MANIFEST)
    assert str(raised.value) == f"manifest {tmp_path / MANIFEST} does not exist"
    bad = tmp_path / "bad.json"
    bad.write_text('{"entries": []}')
    with pytest.raises(InputFileError) as raised:
        verify_artifact(built / MODEL9, bad)
    assert str(raised.value) == f"manifest {bad} is not a list of entries with metadata"
    bad.write_text("[1,")
    with pytest.raises(InputFileError) as raised:
        verify_artifact(built / MODEL9, bad)
    assert str(raised.value) == f"manifest {bad} is not readable JSON (Expecting value: line 1 column 4 (char 3))"


# ------------------------------------------------------------------- manifest.py, SHA256SUMS writer


def port_model() -> onnx.ModelProto:
    """An IR 3 style graph: the initializer ``w`` and the external ``big`` are listed among the inputs,
    before and between the real ones."""
    w = numpy_helper.from_array(np.ones((2, 2), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("Add", ["y", "big"], ["z"])], "ports",
        [helper.make_tensor_value_info("w", TensorProto.FLOAT, [2, 2]),
         helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2]),
         helper.make_tensor_value_info("big", TensorProto.FLOAT, [2]),
         helper.make_tensor_value_info("ids", TensorProto.INT64, [3]),
         helper.make_tensor_value_info("mask", TensorProto.UINT8, [])],
        [helper.make_tensor_value_info("w", TensorProto.FLOAT, [2, 2]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 2]),
         helper.make_tensor_value_info("half", TensorProto.FLOAT16, [1, 4])],
        [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)])


PORTS = {
    "inputs": [{"name": "x", "shape": ["N", 2], "type": "tensor(float)"},
               {"name": "ids", "shape": [3], "type": "tensor(int64)"},
               {"name": "mask", "shape": [], "type": "tensor(uint8)"}],
    "outputs": [{"name": "z", "shape": ["N", 2], "type": "tensor(float)"},
                {"name": "half", "shape": [1, 4], "type": "tensor(float16)"}],
}


def test_io_ports_skip_every_initializer_and_external_weight():
    assert io_ports(port_model(), external=["big"]) == PORTS


def test_io_ports_without_externals_keep_unknown_inputs():
    ports = io_ports(port_model())
    assert ports["inputs"] == [PORTS["inputs"][0], {"name": "big", "shape": [2], "type": "tensor(float)"},
                               *PORTS["inputs"][1:]]
    assert ports["outputs"] == PORTS["outputs"]


def test_manifest_entry_in_full(tmp_path):
    folder = tmp_path / "rel" / "sub"
    folder.mkdir(parents=True)
    model, archive = folder / "mini-12.onnx", folder / "mini-12.tar.gz"
    model.write_bytes(b"model bytes")
    archive.write_bytes(b"archive bytes, longer")
    entry = manifest_entry(Artifact("Mini", model, archive, "1.7", 12, ("vision", "int8")), tmp_path / "rel",
                           port_model(), external=("big",))
    assert entry == {
        "model": "Mini",
        "model_path": "sub/mini-12.onnx",
        "onnx_version": "1.7",
        "opset_version": 12,
        "metadata": {
            "model_sha": hashlib.sha256(b"model bytes").hexdigest(),
            "model_bytes": 11,
            "tags": ["vision", "int8"],
            "io_ports": PORTS,
            "model_with_data_path": "sub/mini-12.tar.gz",
            "model_with_data_sha": hashlib.sha256(b"archive bytes, longer").hexdigest(),
            "model_with_data_bytes": 21,
        },
    }
    plain = manifest_entry(Artifact("M", model, archive, "1.7", 12), tmp_path / "rel", port_model())
    assert plain["metadata"]["tags"] == []


def test_write_manifest_bytes(tmp_path):
    path = tmp_path / MANIFEST
    write_manifest(path, [{"model_path": "a.onnx", "metadata": {"tags": ["x"], "model_bytes": 3}, "model": "A"}])
    assert path.read_text() == (  # the keys as given (the hub's order), indented by four as the hub's file
        '[\n'
        '    {\n'
        '        "model_path": "a.onnx",\n'
        '        "metadata": {\n'
        '            "tags": [\n'
        '                "x"\n'
        '            ],\n'
        '            "model_bytes": 3\n'
        '        },\n'
        '        "model": "A"\n'
        '    }\n'
        ']\n'
    )
    write_manifest(path, [])
    assert path.read_bytes() == b"[]\n"


def test_write_sha256sums_lists_every_file_but_itself(tmp_path):
    root = tmp_path / "rel"
    (root / "b" / "c").mkdir(parents=True)
    (root / "empty").mkdir()
    files = {"z.txt": b"z", "b/c/d.bin": b"\x00\x01", "a.onnx": b"", "b/a.txt": b"hello\n"}
    for name, data in files.items():
        (root / name).write_bytes(data)
    (root / SUMS).write_text("stale\n")
    write_sha256sums(root, root / SUMS)
    assert (root / SUMS).read_text() == "".join(
        f"{hashlib.sha256(files[name]).hexdigest()}  {name}\n" for name in ("a.onnx", "b/a.txt", "b/c/d.bin", "z.txt"))
    # written elsewhere, the sums file of the folder is an ordinary file of it (and sorts first)
    elsewhere = tmp_path / "sums.txt"
    write_sha256sums(root, elsewhere)
    assert elsewhere.read_text().splitlines() == [f"{sha256(root / SUMS)}  {SUMS}",
                                                  *(root / SUMS).read_text().splitlines()]


def test_a_sums_line_that_is_not_utf8_is_a_malformed_line(release):
    """Bytes that are no UTF-8 make that line malformed (read with replacement), not a crash."""
    lines = sums_lines(release)
    (release / SUMS).write_bytes(f"{lines[0]}\n".encode() + b"\xff\xfe  caf\xe9.onnx\n"
                                 + "".join(f"{line}\n" for line in lines[1:]).encode())
    report = verify_release(release)
    assert report.problems == ["SHA256SUMS line 2 is not '<sha256>  <file>'"]
    assert report.checked["sha256sums"] == 11



@pytest.mark.parametrize("subject, problem", [([], "subject is not a non-empty list"),
                                              ([{"digest": {"sha256": Z64}}], "a subject has no name")])
def test_a_statement_without_a_named_subject_is_refused_before_its_parents_are_read(release, subject, problem):
    statements = load_statements(release)
    statement = statement_of(statements, MODEL9)
    statement["subject"] = subject
    store_statements(release, statements)
    line = statements.index(statement) + 1
    assert verify_release(release).problems == [f"provenance: {STATEMENTS} line {line}: {problem}"]
