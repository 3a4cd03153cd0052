"""Model stamps (zooforge.converters.lineage), release statements (zooforge.artifacts.provenance.statements) and zoo-lineage."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from zooforge.converters.lineage import (
    Lineage, LineageError, ParentRef, SourceFile, calibration_digest, quantization_settings, read_lineage,
    settings_dict, stamp,
)
from zooforge.artifacts.provenance.lineage_cli import main as lineage_main
from zooforge.artifacts.release.tarball import write_tarball
from zooforge.artifacts.provenance.statements import (
    STATEMENTS_FILE, ProvenanceError, builder_versions, check_subjects, read_statements, rfc3339, statement,
    write_statements,
)
from zooforge.converters import __version__

HEX64 = re.compile(r"^[0-9a-f]{64}$")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha(path: Path) -> str:
    return sha(path.read_bytes())


def tiny_model(extra: dict[str, str] | None = None) -> onnx.ModelProto:
    weight = numpy_helper.from_array(np.ones((2, 2), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "tiny",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)], producer_name="someone")
    model.ir_version = 7
    for key, value in (extra or {}).items():
        model.metadata_props.add(key=key, value=value)
    return model


# The settings object docs/provenance-format.md describes, written by hand: the expected value.
FP32_SETTINGS = {"target_opset": 12, "compat": "zoo", "names": "zoo", "input_shape": [1, 2], "dynamic_batch": False}
# ... and its canonical JSON (sorted keys, no spaces), as stamped in zooforge.settings
FP32_SETTINGS_JSON = '{"compat":"zoo","dynamic_batch":false,"input_shape":[1,2],"names":"zoo","target_opset":12}'


def fp32_settings() -> dict:
    """The same settings made the way the packager makes them: through the project's normaliser."""
    return settings_dict(target_opset=12, compat="zoo", names="zoo", input_shape=[1, 2], dynamic_batch=False)


def fp32_lineage(prototxt: str = sha(b"p"), weights: str = sha(b"w"), predict: str = sha(b"pn"),
                 init: str = sha(b"in"), synthetic: bool = False) -> Lineage:
    return Lineage(
        "Caffe Mini ==> Caffe2 Mini ==> ONNX Mini",
        (SourceFile("deploy.prototxt", "prototxt", prototxt), SourceFile("mini.caffemodel", "weights", weights)),
        (ParentRef("caffe2/predict_net.pb", predict), ParentRef("caffe2/init_net.pb", init)),
        fp32_settings(), synthetic,
    )


# --- stamps --------------------------------------------------------------------------------------


def test_stamp_round_trip_and_contract_fields():
    model = tiny_model({"zooforge.synthetic_weights": "true", "author": "me", "zooforge.quantization": "x"})
    lineage = fp32_lineage()
    stamp(model, lineage)
    assert model.producer_name == "zooforge" and model.producer_version == __version__
    assert model.doc_string == lineage.line
    keys = [p.key for p in model.metadata_props]
    assert keys == sorted(keys)
    props = {p.key: p.value for p in model.metadata_props}
    assert props["author"] == "me" and props["zooforge.quantization"] == "x"  # other keys kept
    assert props["zooforge.synthetic_weights"] == "false"                        # stamp replaced
    assert props["zooforge.lineage"] == lineage.line
    assert json.loads(props["zooforge.sources"]) == [
        {"name": "deploy.prototxt", "role": "prototxt", "sha256": sha(b"p")},
        {"name": "mini.caffemodel", "role": "weights", "sha256": sha(b"w")},
    ]
    assert json.loads(props["zooforge.parents"])[0] == {"name": "caffe2/predict_net.pb", "sha256": sha(b"pn")}
    for key in ("zooforge.sources", "zooforge.parents", "zooforge.settings"):
        value = json.loads(props[key])
        assert props[key] == json.dumps(value, sort_keys=True, separators=(",", ":"))
    assert set(json.loads(props["zooforge.settings"])) == {"target_opset", "compat", "names", "input_shape",
                                                          "dynamic_batch"}
    back = read_lineage(onnx.load_from_string(model.SerializeToString()))
    assert back == lineage
    assert props["zooforge.settings"] == FP32_SETTINGS_JSON
    assert back.settings == FP32_SETTINGS and back.settings["input_shape"] == (1, 2)
    assert hash(back) == hash(lineage)


def test_stamp_is_deterministic_and_idempotent():
    lineage = fp32_lineage(synthetic=True)
    first, second = tiny_model({"b": "1", "a": "2"}), tiny_model({"b": "1", "a": "2"})
    stamp(first, lineage)
    stamp(second, lineage)
    assert first.SerializeToString() == second.SerializeToString()
    stamp(first, lineage)  # stamping again replaces, never duplicates
    assert first.SerializeToString() == second.SerializeToString()
    assert first.doc_string.startswith(lineage.line) and "SYNTHETIC" in first.doc_string
    assert read_lineage(first).synthetic is True


def test_read_lineage_of_unstamped_and_malformed(tmp_path):
    model = tiny_model()
    assert read_lineage(model) is None
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    assert read_lineage(path) is None
    model.metadata_props.add(key="zooforge.lineage", value="X")
    model.metadata_props.add(key="zooforge.sources", value="[not json")
    with pytest.raises(LineageError, match="zooforge.sources"):
        read_lineage(model)


def test_quantization_settings_round_trip():
    digest = calibration_digest(file_digests=[sha(b"b"), sha(b"a")])
    assert digest == calibration_digest(file_digests=[sha(b"a"), sha(b"b")])
    # The docstring's formula: SHA-256 of the hex digests, sorted, each line ending in "\n" ...
    # sorted: sha(b"b") = "3e23e816..." comes before sha(b"a") = "ca978112..."
    assert digest == hashlib.sha256(f"{sha(b'b')}\n{sha(b'a')}\n".encode()).hexdigest()
    # ... or of the seeded recipe's canonical JSON (sorted keys, no spaces), written out by hand
    recipe_digest = calibration_digest(recipe={"seed": 0, "low": 0.0, "high": 1.0})
    assert recipe_digest == hashlib.sha256(b'{"high":1.0,"low":0.0,"seed":0}').hexdigest()
    q = quantization_settings("int8", 100, 0, "seeded uniform [0, 1)", digest)
    settings = settings_dict(target_opset=12, names="zoo", quantization=q)
    model = tiny_model()
    lineage = Lineage("L", (), (ParentRef("mini-12.onnx", sha(b"m")),), settings)
    stamp(model, lineage)
    assert read_lineage(model).settings["quantization"]["samples"] == 100


def test_stamp_a_converted_lenet(shared, tmp_path):
    from zooforge.converters import api

    folder = shared / "caffe" / "trained" / "lenet_mnist_v2"
    prototxt, weights = folder / "lenet.prototxt", folder / "lenet_iter_10000.caffemodel"
    result = api.convert_caffe(prototxt, weights, api.ConvertOptions(12))
    lineage = Lineage("Caffe LeNet ==> Caffe2 LeNet ==> ONNX LeNet",
                      (SourceFile(prototxt.name, "prototxt", file_sha(prototxt)),
                       SourceFile(weights.name, "weights", file_sha(weights))),
                      (), settings_dict(target_opset=12))
    stamp(result.model.skeleton, lineage)
    out = tmp_path / "lenet.onnx"
    result.model.save(out)
    assert read_lineage(out) == lineage
    onnx.checker.check_model(onnx.load(str(out)))


# --- statements ----------------------------------------------------------------------------------


def check_statement_shape(entry: dict) -> None:
    """The in-toto Statement v1 / SLSA provenance v1 shape, written independently of the module."""
    assert entry["_type"] == "https://in-toto.io/Statement/v1"
    assert entry["predicateType"] == "https://slsa.dev/provenance/v1"
    assert isinstance(entry["subject"], list) and entry["subject"]
    for subject in entry["subject"]:
        assert isinstance(subject["name"], str) and subject["name"]
        assert HEX64.match(subject["digest"]["sha256"])
    build = entry["predicate"]["buildDefinition"]
    assert build["buildType"] == "https://zooforge.invalid/buildtypes/release/v1"
    assert isinstance(build["externalParameters"], dict) and isinstance(build["internalParameters"], dict)
    for dependency in build["resolvedDependencies"]:
        assert isinstance(dependency["name"], str) and HEX64.match(dependency["digest"]["sha256"])
        assert dependency["annotations"]["role"] in ("source", "parent")
    run = entry["predicate"]["runDetails"]
    assert run["builder"]["id"] == "https://zooforge.invalid/builder/zoo-package"
    assert all(isinstance(v, str) for v in run["builder"]["version"].values())
    for key in ("startedOn", "finishedOn"):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", run["metadata"][key])
    assert isinstance(run["metadata"]["invocationId"], str)
    for byproduct in run["byproducts"]:
        assert HEX64.match(byproduct["digest"]["sha256"])


def test_rfc3339():
    assert rfc3339(0) == "1970-01-01T00:00:00Z"
    assert rfc3339(1700000000) == "2023-11-14T22:13:20Z"


def test_builder_versions():
    versions = builder_versions()
    assert versions["zooforge"] == __version__
    assert {"onnx", "numpy", "protobuf"} <= set(versions)


def test_statement_shape_and_write_read(tmp_path):
    lineage = fp32_lineage()
    entry = statement("mini-12.onnx", sha(b"model"), lineage, release_name="mini",
                      internal={"test_sets": 3, "tolerance": {"rtol": 1e-3}},
                      byproducts=[("parity.json", sha(b"parity"))], epoch=0)
    check_statement_shape(entry)
    build = entry["predicate"]["buildDefinition"]
    assert build["externalParameters"] == {**FP32_SETTINGS, "name": "mini"}
    assert [d["annotations"]["role"] for d in build["resolvedDependencies"]] == ["source"] * 2 + ["parent"] * 2
    meta = entry["predicate"]["runDetails"]["metadata"]
    assert meta == {"invocationId": "mini-mini-12", "startedOn": "1970-01-01T00:00:00Z",
                    "finishedOn": "1970-01-01T00:00:00Z"}
    other = statement("caffe2/init_net.pb", sha(b"init"), Lineage("L", lineage.sources, (), fp32_settings()),
                      release_name="mini", internal={}, byproducts=(), epoch=0)
    path = tmp_path / STATEMENTS_FILE
    write_statements(path, [entry, other])
    first = path.read_bytes()
    write_statements(path, [other, entry])
    assert path.read_bytes() == first  # sorted by subject name, byte-reproducible
    lines = first.decode().splitlines()
    assert [json.loads(line)["subject"][0]["name"] for line in lines] == ["caffe2/init_net.pb", "mini-12.onnx"]
    assert lines[1] == json.dumps(entry, sort_keys=True, separators=(",", ":"))
    back = read_statements(path)
    assert back == [other, entry]
    for item in back:
        check_statement_shape(item)


@pytest.mark.parametrize("mutate, message", [
    (lambda e: e.update(_type="https://in-toto.io/Statement/v0.1"), "_type"),
    (lambda e: e.update(predicateType="https://slsa.dev/provenance/v0.2"), "predicateType"),
    (lambda e: e.update(subject=[]), "subject"),
    (lambda e: e["subject"][0]["digest"].update(sha256="abc"), "sha256"),
    (lambda e: e["subject"][0].pop("name"), "name"),
    (lambda e: e["predicate"].pop("buildDefinition"), "buildDefinition"),
    (lambda e: e["predicate"].pop("runDetails"), "runDetails"),
])
def test_read_statements_rejects_malformed_lines(tmp_path, mutate, message):
    good = statement("a.onnx", sha(b"a"), fp32_lineage(), release_name="r", internal={}, epoch=0)
    bad = json.loads(json.dumps(good))
    bad["subject"][0]["name"] = "b.onnx"
    mutate(bad)
    path = tmp_path / STATEMENTS_FILE
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(ProvenanceError, match=rf"line 2: .*{message}"):
        read_statements(path)


def test_read_statements_rejects_non_json_and_missing_file(tmp_path):
    path = tmp_path / STATEMENTS_FILE
    path.write_text("{not json\n")
    with pytest.raises(ProvenanceError, match="line 1: not JSON"):
        read_statements(path)
    with pytest.raises(ProvenanceError, match="does not exist"):
        read_statements(tmp_path / "nothing.jsonl")


def test_check_subjects(tmp_path):
    (tmp_path / "a.onnx").write_bytes(b"a")
    (tmp_path / "b.onnx").write_bytes(b"changed")
    statements = [statement(name, sha(data), fp32_lineage(), release_name="r", internal={}, epoch=0)
                  for name, data in (("a.onnx", b"a"), ("b.onnx", b"b"), ("c.tar.gz", b"c"))]
    problems = check_subjects(tmp_path, statements)
    assert problems == [
        f"provenance: subject b.onnx has sha256 {sha(b'b')} but the file has {sha(b'changed')}",
        "provenance: subject c.tar.gz is missing",
    ]
    (tmp_path / "d.onnx").write_bytes(b"d")
    assert check_subjects(tmp_path, statements)[-1] == "provenance: d.onnx has no statement"
    assert check_subjects(tmp_path, statements[:1], expect=["a.onnx"]) == []


# --- zoo-lineage ---------------------------------------------------------------------------------


@pytest.fixture()
def mini_release(tmp_path) -> Path:
    """A hand-assembled release: Caffe2 pair, fp32 and int8 models, all with statements."""
    release = tmp_path / "mini"
    (release / "caffe2").mkdir(parents=True)
    prototxt, weights = b"name: 'Mini'", b"weights"
    (release / "caffe2" / "predict_net.pb").write_bytes(b"predict")
    (release / "caffe2" / "init_net.pb").write_bytes(b"init")
    sources = (SourceFile("deploy.prototxt", "prototxt", sha(prototxt)),
               SourceFile("mini.caffemodel", "weights", sha(weights)))
    fp32 = fp32_lineage(sha(prototxt), sha(weights), file_sha(release / "caffe2" / "predict_net.pb"),
                        file_sha(release / "caffe2" / "init_net.pb"))
    model = tiny_model()
    stamp(model, fp32)
    onnx.save(model, str(release / "mini-12.onnx"))
    q = quantization_settings("int8", 100, 0, "seeded uniform [0, 1)", calibration_digest(recipe={"seed": 0}))
    int8 = Lineage(fp32.line + " ==> ONNX Mini int8", sources,
                   (ParentRef("mini-12.onnx", file_sha(release / "mini-12.onnx")),),
                   settings_dict(target_opset=12, compat="zoo", names="zoo", input_shape=[1, 2],
                                 quantization=q))
    model = tiny_model()
    stamp(model, int8)
    onnx.save(model, str(release / "mini-12-int8.onnx"))
    write_tarball(release / "mini-12.tar.gz", "mini", [("model.onnx", release / "mini-12.onnx")], mtime=0)
    tar_lineage = Lineage(fp32.line, sources, (ParentRef("mini-12.onnx", file_sha(release / "mini-12.onnx")),),
                          fp32_settings())
    caffe2_lineage = Lineage(fp32.line, sources, (), {"names": "zoo", "compat": "zoo"})
    statements = [
        statement(name, file_sha(release / name), lineage, release_name="mini", internal={"test_sets": 1},
                  epoch=0)
        for name, lineage in (("caffe2/predict_net.pb", caffe2_lineage), ("caffe2/init_net.pb", caffe2_lineage),
                              ("mini-12.onnx", fp32), ("mini-12-int8.onnx", int8),
                              ("mini-12.tar.gz", tar_lineage))
    ]
    write_statements(release / STATEMENTS_FILE, statements)
    assert check_subjects(release, read_statements(release / STATEMENTS_FILE)) == []
    return release


def run_lineage(*args):
    return CliRunner().invoke(lineage_main, [str(a) for a in args])


def test_zoo_lineage_prints_the_tree(mini_release):
    result = run_lineage(mini_release / "mini-12-int8.onnx")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("mini-12-int8.onnx  sha256 ")
    assert lines[1].startswith("└─ quantized from mini-12.onnx sha256 ")
    assert "format int8" in lines[1] and "100 calibration samples" in lines[1]
    assert lines[2].startswith("   └─ converted from caffe2/predict_net.pb sha256 ")
    assert "caffe2/init_net.pb" in lines[2] and "opset 12" in lines[2] and "names zoo" in lines[2]
    assert lines[3].startswith("      └─ translated from deploy.prototxt sha256 ")
    assert "(prototxt)" in lines[3] and "mini.caffemodel" in lines[3] and "(weights)" in lines[3]
    assert "…" in lines[1]
    full = run_lineage(mini_release / "mini-12-int8.onnx", "--full")
    assert file_sha(mini_release / "mini-12.onnx") in full.stdout


def test_zoo_lineage_for_a_caffe2_file_and_explicit_release(mini_release, tmp_path):
    result = run_lineage(mini_release / "caffe2" / "init_net.pb")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].startswith("caffe2/init_net.pb  sha256 ")
    assert "translated from deploy.prototxt" in result.stdout and "(prototxt)" in result.stdout
    result = run_lineage(mini_release / "mini-12.tar.gz")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[1].startswith("└─ packaged from mini-12.onnx sha256 ")
    assert lines[2].startswith("   └─ converted from caffe2/predict_net.pb")
    assert lines[3].startswith("      └─ translated from deploy.prototxt")
    copy = tmp_path / "elsewhere.onnx"
    copy.write_bytes((mini_release / "mini-12-int8.onnx").read_bytes())
    result = run_lineage(copy, "--release", mini_release)
    assert result.exit_code == 0, result.output
    assert "translated from deploy.prototxt" in result.stdout


def test_zoo_lineage_reads_a_tarball_without_statement(mini_release, tmp_path):
    archive = tmp_path / "loose.tar.gz"
    write_tarball(archive, "mini", [("model.onnx", mini_release / "mini-12.onnx")], mtime=0)
    result = run_lineage(archive, "--release", mini_release)
    assert result.exit_code == 0, result.output
    assert "packaged from mini/model.onnx" in result.stdout
    assert "translated from deploy.prototxt" in result.stdout


def test_zoo_lineage_warns_when_a_parent_changed(mini_release):
    (mini_release / "caffe2" / "init_net.pb").write_bytes(b"tampered")
    result = run_lineage(mini_release / "mini-12.onnx")
    assert result.exit_code == 0, result.output
    assert "warning: caffe2/init_net.pb is recorded with sha256" in result.stderr


def test_zoo_lineage_exit_codes(tmp_path):
    unstamped = tmp_path / "plain.onnx"
    onnx.save(tiny_model(), str(unstamped))
    result = run_lineage(unstamped)
    assert result.exit_code == 1
    assert "carries no zooforge lineage" in result.stderr
    missing = run_lineage(tmp_path / "nothing.onnx")
    assert missing.exit_code == 2
    assert "error:" in missing.stderr and "nothing.onnx" in missing.stderr
    (tmp_path / "junk.onnx").write_bytes(b"\xff\xff not a model")
    assert run_lineage(tmp_path / "junk.onnx").exit_code == 2


def test_zoo_convert_records_its_sources(shared, tmp_path):
    """A model written by zoo-convert, outside any release, still says what it was made from."""
    import hashlib

    from zooforge.converters.cli import main as convert_main

    folder = shared / "caffe" / "trained" / "lenet_mnist_v2"
    prototxt, weights = folder / "lenet.prototxt", folder / "lenet_iter_10000.caffemodel"
    out = tmp_path / "lenet.onnx"
    result = CliRunner().invoke(convert_main, [str(prototxt), str(weights), "--to-opset", "9", "-o", str(out)])
    assert result.exit_code == 0, result.output
    lineage = read_lineage(out)
    assert lineage.line == "Caffe LeNet ==> Caffe2 LeNet ==> ONNX LeNet"
    assert {(s.name, s.role, s.sha256) for s in lineage.sources} == {
        (p.name, role, hashlib.sha256(p.read_bytes()).hexdigest())
        for p, role in ((prototxt, "prototxt"), (weights, "weights"))}
    assert lineage.settings["target_opset"] == 9 and not lineage.synthetic
    tree = CliRunner().invoke(lineage_main, [str(out)])
    assert tree.exit_code == 0 and "lenet_iter_10000.caffemodel" in tree.output, tree.output
