"""``zoo-verify`` / ``zooforge.artifacts.provenance.verify`` and ``zooforge.artifacts.provenance.signing``: a release checked against its
SHA256SUMS, manifest.json, provenance statements and an offline EC signature (model-signing).

One LeNet release (opsets 9 and 12, one test set, no quantized variants) is built per module and
copied into each test's folder. When the build writes no ``provenance.intoto.jsonl`` yet, the
fixture adds one in the contract's form (docs/provenance-format.md) and re-writes SHA256SUMS.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from zooforge.artifacts.provenance import statements as provenance

from zooforge.artifacts.provenance import verify_cli
from zooforge.artifacts.release.manifest import Artifact, manifest_entry, write_manifest, write_sha256sums
from zooforge.artifacts.provenance.signing import SIGNATURE_NAME, SigningError, make_test_keypair, sign_release, verify_signature
from zooforge.artifacts.provenance.verify import PROVENANCE_NAME, verify_artifact, verify_release
from zooforge.converters.errors import InputFileError
from zooforge.converters.fileio import sha256_file

from conftest import build_lenet_release, shared_work_scope

MODEL = "lenet-9.onnx"
ARCHIVE = "lenet-12.tar.gz"


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def statement(release: Path, subject: str, parents: list[str]) -> dict:
    """A statement in the contract's shape (only what zoo-verify reads is filled in faithfully)."""
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": subject, "digest": {"sha256": sha256(release / subject)}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": "https://zooforge.invalid/buildtypes/release/v1",
                "externalParameters": {"name": "lenet"},
                "internalParameters": {"test_sets": 1},
                "resolvedDependencies": [
                    {"name": p, "digest": {"sha256": sha256(release / p)}, "annotations": {"role": "parent"}}
                    for p in parents
                ],
            },
            "runDetails": {"builder": {"id": "https://zooforge.invalid/builder/zoo-package"},
                           "metadata": {"invocationId": f"lenet-{subject}"}, "byproducts": []},
        },
    }


def write_statements(release: Path, statements: list[dict]) -> None:
    """Through the contract's writer (which checks each statement's shape), then re-index."""
    provenance.write_statements(release / PROVENANCE_NAME, statements)
    write_sha256sums(release, release / "SHA256SUMS")


def read_statements(release: Path) -> list[dict]:
    return [json.loads(line) for line in (release / PROVENANCE_NAME).read_text().splitlines() if line.strip()]


@pytest.fixture(scope=shared_work_scope)
def built(shared, tmp_path_factory) -> Path:
    out = build_lenet_release(shared, tmp_path_factory.mktemp("built") / "lenet")
    if not (out / PROVENANCE_NAME).exists():
        netdef = ["caffe2/init_net.pb", "caffe2/predict_net.pb"]
        subjects = sorted(p.name for p in out.iterdir() if p.name.endswith((".onnx", ".tar.gz")))
        write_statements(out, [statement(out, s, netdef) for s in subjects]
                         + [statement(out, f"caffe2/{n}", []) for n in ("init_net.pb", "predict_net.pb",
                                                                         "value_info.json")])
    return out


@pytest.fixture
def release(built, tmp_path) -> Path:
    copy = tmp_path / "release"
    shutil.copytree(built, copy)
    return copy


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> tuple[Path, Path]:
    return make_test_keypair(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def signed(release, keys) -> Path:
    if importlib.util.find_spec("model_signing") is None:
        pytest.skip("needs model-signing (pip install zooforge[sign])")
    assert sign_release(release, keys[0]) == release / SIGNATURE_NAME
    return release


def flip_byte(path: Path, offset: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def signed_payload(release: Path) -> dict:
    bundle = json.loads((release / SIGNATURE_NAME).read_text())
    return json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))


# ------------------------------------------------------------------------------- whole release


# The release the fixture builds, written out by hand from README "Releases": per opset (9, 12) an
# .onnx and a .tar.gz; caffe2/ with the NetDef pair and the value_info.json written beside it;
# README.md, manifest.json, parity.json; provenance.intoto.jsonl. Every file but SHA256SUMS: 11.
RELEASE_FILES = [
    "README.md", "caffe2/init_net.pb", "caffe2/predict_net.pb", "caffe2/value_info.json",
    "lenet-12.onnx", "lenet-12.tar.gz", "lenet-9.onnx", "lenet-9.tar.gz",
    "manifest.json", "parity.json", "provenance.intoto.jsonl",
]


def test_fresh_release_verifies(release):
    report = verify_release(release)
    assert report.verified, report.problems
    assert len(RELEASE_FILES) == 11
    assert report.checked["sha256sums"] == 11
    # SHA256SUMS itself, checked with hashlib against the hand list, in sha256sum's "<hex>  <name>" form
    assert (release / "SHA256SUMS").read_text().splitlines() == [f"{sha256(release / n)}  {n}" for n in RELEASE_FILES]
    assert report.checked["manifest"] == 2 and report.checked["provenance"] >= 4
    assert report.checked["signature"] == "absent"


def test_signed_release_verifies_with_its_key(signed, keys):
    report = verify_release(signed, keys[1])
    assert report.verified, report.problems
    assert report.checked["signature"] == "verified"
    # Per-file mode: the payload lists every file but the signature itself.
    names = {r["name"] for r in signed_payload(signed)["predicate"]["resources"]}
    expected = {p.relative_to(signed).as_posix() for p in signed.rglob("*") if p.is_file()} - {SIGNATURE_NAME}
    assert names == expected
    assert signed_payload(signed)["predicate"]["serialization"]["method"] == "files"


def test_signing_again_signs_the_same_payload(signed, keys):
    first = signed_payload(signed)
    sign_release(signed, keys[0])   # the old release.sig is ignored, then replaced
    assert signed_payload(signed) == first
    assert verify_signature(signed, keys[1]) == []


def test_signature_without_key_is_a_note(signed):
    report = verify_release(signed)
    assert report.verified
    assert "signature present, not checked: pass --public-key" in report.notes


def test_modified_byte_is_named(signed, keys):
    flip_byte(signed / MODEL)
    report = verify_release(signed, keys[1])
    assert not report.verified
    assert f"changed: {MODEL}" in report.problems
    assert f"signature: changed: {MODEL}" in report.problems
    assert any(p.startswith(f"manifest.json: {MODEL} has sha256") for p in report.problems)
    assert any(p.startswith("provenance:") and MODEL in p for p in report.problems)


def test_added_file_is_named(signed, keys):
    (signed / "caffe2" / "extra.txt").write_text("not part of the release\n")
    problems = verify_release(signed, keys[1]).problems
    assert problems == ["added: caffe2/extra.txt", "signature: added: caffe2/extra.txt"]


def test_removed_file_is_named(signed, keys):
    (signed / "parity.json").unlink()
    problems = verify_release(signed, keys[1]).problems
    assert problems == ["removed: parity.json", "signature: removed: parity.json"]


def test_renamed_file_names_both(signed, keys):
    (signed / ARCHIVE).rename(signed / "lenet-12-copy.tar.gz")
    problems = verify_release(signed, keys[1]).problems
    assert f"renamed? {ARCHIVE} -> lenet-12-copy.tar.gz" in problems
    assert f"signature: renamed? {ARCHIVE} -> lenet-12-copy.tar.gz" in problems
    assert f"manifest.json: {ARCHIVE} is missing" in problems


def test_wrong_public_key_is_not_verified(signed, tmp_path):
    _, other = make_test_keypair(tmp_path / "other")
    report = verify_release(signed, other)
    assert not report.verified
    assert report.problems == [f"{SIGNATURE_NAME} was made with another key than {other.name}"]


def test_altered_signature_is_not_verified(signed, keys):
    bundle = json.loads((signed / SIGNATURE_NAME).read_text())
    payload = signed_payload(signed)
    payload["predicate"]["resources"][0]["digest"] = "0" * 64
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    (signed / SIGNATURE_NAME).write_text(json.dumps(bundle))
    problems = verify_release(signed, keys[1]).problems
    assert len(problems) == 1 and "does not verify" in problems[0]


def test_signature_exempting_files_is_refused(release, keys):
    ms = pytest.importorskip("model_signing")
    hashing = ms.hashing.Config().use_file_serialization().set_ignored_paths(
        paths=[SIGNATURE_NAME, "README.md"], ignore_git_paths=False)
    ms.signing.Config().use_elliptic_key_signer(private_key=keys[0]).set_hashing_config(hashing).sign(
        release, release / SIGNATURE_NAME)
    assert verify_signature(release, keys[1]) == [f"{SIGNATURE_NAME} leaves files unsigned: README.md"]


def test_missing_signature_with_key(release, keys):
    pytest.importorskip("model_signing")
    problems = verify_release(release, keys[1]).problems
    assert problems == [f"{SIGNATURE_NAME} is missing"]


def test_statement_subject_digest_mismatch(release):
    statements = read_statements(release)
    statements[0]["subject"][0]["digest"]["sha256"] = "0" * 64
    name = statements[0]["subject"][0]["name"]
    write_statements(release, statements)
    problems = verify_release(release).problems
    assert len(problems) == 1 and problems[0].startswith("provenance:") and name in problems[0]


def test_statement_parent_digest_mismatch(release):
    statements = read_statements(release)
    target = next(s for s in statements if any(
        d.get("annotations", {}).get("role") == "parent"
        for d in s["predicate"]["buildDefinition"]["resolvedDependencies"]))
    parent = next(d for d in target["predicate"]["buildDefinition"]["resolvedDependencies"]
                  if d["annotations"]["role"] == "parent")
    parent["digest"]["sha256"] = "1" * 64
    write_statements(release, statements)
    problems = verify_release(release).problems
    assert problems == [f"provenance: {target['subject'][0]['name']}: parent {parent['name']} has sha256 "
                        f"{sha256(release / parent['name'])}, its statement records {'1' * 64}"]


def test_malformed_statements_are_a_problem(release):
    with (release / PROVENANCE_NAME).open("a") as stream:
        stream.write("{not json\n")
    write_sha256sums(release, release / "SHA256SUMS")
    problems = verify_release(release).problems
    assert len(problems) == 1 and problems[0].startswith("provenance:")


# ------------------------------------------------------------------------------------ signing


def test_sign_refuses_unusable_keys(release, keys, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    rsa_key = tmp_path / "rsa.pem"
    rsa_key.write_bytes(rsa.generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with pytest.raises(InputFileError, match="not an elliptic-curve key"):
        sign_release(release, rsa_key)
    with pytest.raises(InputFileError, match="does not exist"):
        sign_release(release, tmp_path / "missing.pem")
    with pytest.raises(InputFileError, match="not a PEM private key"):
        sign_release(release, keys[1])       # the public half
    with pytest.raises(InputFileError, match="give its public half"):
        verify_release(release, keys[0])     # the private half
    assert not (release / SIGNATURE_NAME).exists()


def test_missing_model_signing_names_the_extra(release, keys, monkeypatch):
    monkeypatch.setitem(sys.modules, "model_signing", None)
    with pytest.raises(SigningError, match=r"install zooforge\[sign\]"):
        sign_release(release, keys[0])


# --------------------------------------------------------------------------------- single file


def test_single_files_against_the_manifest(release, tmp_path):
    for name in (MODEL, ARCHIVE):
        report = verify_artifact(release / name, release / "manifest.json")
        assert report.verified, report.problems
    copy = tmp_path / MODEL
    shutil.copy(release / MODEL, copy)
    flip_byte(copy)
    report = verify_artifact(copy, release / "manifest.json")
    assert not report.verified and report.problems[0].startswith(f"changed: {MODEL} has sha256")
    # an archive renamed to another variant's name is caught by its digest
    swapped = tmp_path / "lenet-9.tar.gz"
    shutil.copy(release / ARCHIVE, swapped)
    assert not verify_artifact(swapped, release / "manifest.json").verified


# ------------------------------------------------------------------ files past every read buffer

BIG = 9 * 2**20 + 1  # past sha256_file's 4 MiB reads (twice), and a multiple of no buffer size


def big_file(path: Path, seed: int = 0) -> bytes:
    data = np.random.default_rng(seed).bytes(BIG)
    path.write_bytes(data)
    return data


def test_sha256_file_hashes_every_byte(tmp_path):
    """Against hashlib on the whole file, read at once."""
    data = big_file(tmp_path / "big.bin")
    assert sha256_file(tmp_path / "big.bin") == hashlib.sha256(data).hexdigest()


def test_sha256sums_and_verify_see_bytes_past_4_mib(release):
    """A release whose SHA256SUMS lists a 9 MiB file: its line holds hashlib's digest of all of it,
    and a byte flipped in its last MiB is named."""
    data = big_file(release / "caffe2" / "big.bin")
    write_sha256sums(release, release / "SHA256SUMS")
    assert f"{hashlib.sha256(data).hexdigest()}  caffe2/big.bin" in (release / "SHA256SUMS").read_text().splitlines()
    assert verify_release(release).verified
    flip_byte(release / "caffe2" / "big.bin", offset=BIG - 1)
    assert verify_release(release).problems == ["changed: caffe2/big.bin"]


def test_manifest_and_verify_artifact_see_bytes_past_4_mib(release, tmp_path):
    """manifest.json's model_sha / model_with_data_sha of 9 MiB files are hashlib's digests, and
    zoo-verify --manifest names a model changed 5 MiB in."""
    model, archive = tmp_path / "big.onnx", tmp_path / "big.tar.gz"
    model_bytes, archive_bytes = big_file(model, seed=1), big_file(archive, seed=2)
    graph = onnx.load(str(release / MODEL))
    entry = manifest_entry(Artifact("Big", model, archive, "1.7", 12), tmp_path, graph)
    assert entry["metadata"]["model_sha"] == hashlib.sha256(model_bytes).hexdigest()
    assert entry["metadata"]["model_with_data_sha"] == hashlib.sha256(archive_bytes).hexdigest()
    write_manifest(tmp_path / "manifest.json", [entry])
    assert verify_artifact(model, tmp_path / "manifest.json").verified
    flip_byte(model, offset=5 * 2**20)
    report = verify_artifact(model, tmp_path / "manifest.json")
    assert not report.verified and report.problems[0].startswith("changed: big.onnx has sha256")


# ----------------------------------------------------------------------------------------- CLI


def run(*args: str):  # noqa: ANN201
    return CliRunner().invoke(verify_cli.main, [str(a) for a in args])


def test_cli_exit_codes(signed, keys, tmp_path):
    ok = run(signed, "--public-key", keys[1])
    assert ok.exit_code == 0 and ok.stdout.strip() == "verified"
    assert run(signed / MODEL, "--manifest", signed / "manifest.json").exit_code == 0

    copy = tmp_path / MODEL
    shutil.copy(signed / MODEL, copy)
    flip_byte(copy)
    assert run(copy, "--manifest", signed / "manifest.json").exit_code == 1

    (signed / "README.md").write_text("edited\n")
    bad = run(signed, "--public-key", keys[1])
    assert bad.exit_code == 1
    assert bad.stdout.splitlines() == ["changed: README.md", "signature: changed: README.md"]

    missing = run(tmp_path / "no-such-release")
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key\n")
    unreadable = run(signed, "--public-key", garbage)
    assert unreadable.exit_code == 2 and "not a PEM public key" in unreadable.stderr
    assert run(copy, "--manifest", tmp_path / "no-manifest.json").exit_code == 2
