"""zoo-lineage's tree, line by line, for hand-built releases (zooforge.artifacts.provenance.lineage).

Stamps and statements are written here by hand from docs/provenance-format.md (metadata_props JSON,
one in-toto statement per line) and every expected tree is written out in full, so each test pins the
verbs, roles, digests, settings and warnings the command prints.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from zooforge.artifacts.provenance.lineage import Input, Step, guess_role, render, trace
from zooforge.artifacts.provenance.lineage_cli import main as lineage_main
from zooforge.artifacts.release.tarball import write_tarball

JSONL = "provenance.intoto.jsonl"
PROTOTXT, WEIGHTS = b"name: 'Mini'", b"mini weights"
PREDICT, INIT = b"caffe2 predict net", b"caffe2 init net"
CALIBRATION = hashlib.sha256(b"seeded recipe").hexdigest()
LINE = "Caffe Mini ==> Caffe2 Mini ==> ONNX Mini"
FP32 = {"compat": "zoo", "dynamic_batch": False, "input_shape": [1, 2], "names": "zoo", "target_opset": 12}
QUANTIZATION = {"format": "int8", "samples": 100, "seed": 0, "calibration": "seeded uniform [0, 1)",
                "calibration_sha256": CALIBRATION}
# How those settings read in the tree (quantization first, then opset, names, compat, input shape).
FP32_WORDS = "opset 12, names zoo, compat zoo, input 1x2"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def short(digest: str) -> str:
    return digest[:12] + "…"


def int8_words(full: bool = False) -> str:
    calibration = CALIBRATION if full else short(CALIBRATION)
    return (f"format int8, 100 calibration samples, seed 0, calibration seeded uniform [0, 1), "
            f"calibration sha256 {calibration}, {FP32_WORDS}")


def model_bytes(stamp: dict | None, tag: str) -> bytes:
    """A tiny ONNX model; ``stamp``: the zooforge metadata_props, written by hand per the format."""
    weight = numpy_helper.from_array(np.ones((2, 2), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], tag,
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)], producer_name="zooforge")
    model.ir_version = 7
    for key, value in sorted((stamp or {}).items()):
        model.metadata_props.add(key=key, value=value)
    return model.SerializeToString()


def dump(value: object) -> str:
    """JSON as the format writes it: sorted keys, no spaces."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def stamp(line: str, sources: list[tuple[str, str, str]], parents: list[tuple[str, str]], settings: dict) -> dict:
    return {"zooforge.lineage": line,
            "zooforge.sources": dump([{"name": n, "role": r, "sha256": d} for n, r, d in sources]),
            "zooforge.parents": dump([{"name": n, "sha256": d} for n, d in parents]),
            "zooforge.settings": dump(settings),
            "zooforge.synthetic_weights": "false"}


def statement(name: str, digest: str, sources: list[tuple[str, str]], parents: list[tuple[str, str]],
              settings: dict, *, dependencies: bool = True) -> dict:
    """docs/provenance-format.md's statement, by hand; ``dependencies=False`` leaves out the optional
    resolvedDependencies."""
    build = {"buildType": "https://zooforge.invalid/buildtypes/release/v1",
             "externalParameters": {**settings, "name": "mini"},
             "internalParameters": {"test_sets": 1}}
    if dependencies:
        build["resolvedDependencies"] = (
            [{"name": n, "digest": {"sha256": d}, "annotations": {"role": "source"}} for n, d in sources]
            + [{"name": n, "digest": {"sha256": d}, "annotations": {"role": "parent"}} for n, d in parents])
    return {"_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": name, "digest": {"sha256": digest}}],
            "predicateType": "https://slsa.dev/provenance/v1",
            "predicate": {"buildDefinition": build,
                          "runDetails": {"builder": {"id": "https://zooforge.invalid/builder/zoo-package",
                                                     "version": {"zooforge": "0"}},
                                         "metadata": {"invocationId": f"mini-{name}",
                                                      "startedOn": "1970-01-01T00:00:00Z",
                                                      "finishedOn": "1970-01-01T00:00:00Z"},
                                         "byproducts": []}}}


def write_jsonl(folder: Path, statements: list[dict]) -> None:
    statements = sorted(statements, key=lambda s: s["subject"][0]["name"])
    (folder / JSONL).write_text("".join(dump(s) + "\n" for s in statements))


CAFFE_SOURCES = [("deploy.prototxt", "prototxt", sha(PROTOTXT)), ("mini.caffemodel", "weights", sha(WEIGHTS))]
CAFFE_DEPS = [(n, d) for n, _, d in CAFFE_SOURCES]
CAFFE2_PARENTS = [("caffe2/predict_net.pb", sha(PREDICT)), ("caffe2/init_net.pb", sha(INIT))]
FP32_MODEL = model_bytes(stamp(LINE, CAFFE_SOURCES, CAFFE2_PARENTS, FP32), "fp32")
INT8_LINE = LINE + " ==> ONNX Mini-int8"
INT8_MODEL = model_bytes(stamp(INT8_LINE, CAFFE_SOURCES, [("mini-12.onnx", sha(FP32_MODEL))],
                               {**FP32, "quantization": QUANTIZATION}), "int8")
TRANSLATED = (f"translated from deploy.prototxt sha256 {short(sha(PROTOTXT))} (prototxt), "
              f"mini.caffemodel sha256 {short(sha(WEIGHTS))} (weights)")
CONVERTED = (f"converted from caffe2/predict_net.pb sha256 {short(sha(PREDICT))}, "
             f"caffe2/init_net.pb sha256 {short(sha(INIT))}  ({FP32_WORDS})")
QUANTIZED = f"quantized from mini-12.onnx sha256 {short(sha(FP32_MODEL))}  ({int8_words()})"


def write_models(folder: Path) -> None:
    (folder / "caffe2").mkdir(parents=True)
    (folder / "caffe2" / "predict_net.pb").write_bytes(PREDICT)
    (folder / "caffe2" / "init_net.pb").write_bytes(INIT)
    (folder / "mini-12.onnx").write_bytes(FP32_MODEL)
    (folder / "mini-12-int8.onnx").write_bytes(INT8_MODEL)


def release_statements(folder: Path) -> list[dict]:
    """A statement per artifact; a tarball's parent is the model it packages."""
    tarball = sha((folder / "mini-12-int8.tar.gz").read_bytes())
    int8 = {**FP32, "quantization": QUANTIZATION}
    return [
        statement("caffe2/predict_net.pb", sha(PREDICT), CAFFE_DEPS, [], {}),
        statement("caffe2/init_net.pb", sha(INIT), CAFFE_DEPS, [], {}),
        statement("mini-12.onnx", sha(FP32_MODEL), CAFFE_DEPS, CAFFE2_PARENTS, FP32),
        statement("mini-12-int8.onnx", sha(INT8_MODEL), CAFFE_DEPS, [("mini-12.onnx", sha(FP32_MODEL))], int8),
        statement("mini-12-int8.tar.gz", tarball, CAFFE_DEPS, [("mini-12-int8.onnx", sha(INT8_MODEL))], int8),
    ]


@pytest.fixture()
def release(tmp_path) -> Path:
    """Caffe2 pair, fp32 and int8 models and the int8 tarball, all with statements."""
    folder = tmp_path / "mini"
    write_models(folder)
    write_tarball(folder / "mini-12-int8.tar.gz", "mini", [("model.onnx", folder / "mini-12-int8.onnx")], mtime=0)
    write_jsonl(folder, release_statements(folder))
    return folder


def run(*args):
    return CliRunner().invoke(lineage_main, [str(a) for a in args])


def lines_of(result) -> list[str]:
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


INT8_TREE = [
    f"mini-12-int8.onnx  sha256 {short(sha(INT8_MODEL))}",
    f"└─ {QUANTIZED}",
    f"   └─ {CONVERTED}",
    f"      └─ {TRANSLATED}",
    f"lineage: {INT8_LINE}",
]


def test_the_int8_tree_line_by_line_without_warnings(release):
    result = run(release / "mini-12-int8.onnx")
    assert lines_of(result) == INT8_TREE
    assert result.stderr == ""  # every recorded digest matches its file
    found = trace(release / "mini-12-int8.onnx")
    assert found.name == "mini-12-int8.onnx" and found.sha256 == sha(INT8_MODEL) and found.warnings == []


def test_full_digests_reach_the_settings_too(release):
    lines = lines_of(run(release / "mini-12-int8.onnx", "--full"))
    assert lines[:2] == [
        f"mini-12-int8.onnx  sha256 {sha(INT8_MODEL)}",
        f"└─ quantized from mini-12.onnx sha256 {sha(FP32_MODEL)}  ({int8_words(full=True)})",
    ]
    assert lines[3] == (f"      └─ translated from deploy.prototxt sha256 {sha(PROTOTXT)} (prototxt), "
                        f"mini.caffemodel sha256 {sha(WEIGHTS)} (weights)")


def test_changed_files_are_named_with_both_digests(release):
    tampered = model_bytes(stamp(INT8_LINE, CAFFE_SOURCES, [("mini-12.onnx", sha(FP32_MODEL))],
                                 {**FP32, "quantization": QUANTIZATION}), "int8 changed")
    (release / "mini-12-int8.onnx").write_bytes(tampered)
    (release / "caffe2" / "init_net.pb").write_bytes(b"tampered")
    result = run(release / "mini-12-int8.onnx")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        f"warning: {JSONL} records sha256 {sha(INT8_MODEL)} for mini-12-int8.onnx, but the file has {sha(tampered)}",
        (f"warning: caffe2/init_net.pb is recorded with sha256 {sha(INIT)} but the file in {release} "
         f"has {sha(b'tampered')}"),
    ]


TARBALL_TREE = [
    f"└─ packaged from mini-12-int8.onnx sha256 {short(sha(INT8_MODEL))}  ({int8_words()})",
    f"   └─ {QUANTIZED}",
    f"      └─ {CONVERTED}",
    f"         └─ {TRANSLATED}",
]


def test_a_tarball_through_its_statement(release):
    """The tarball's statement gives its parent and settings; no stamp of its own, so no lineage line."""
    header = f"mini-12-int8.tar.gz  sha256 {short(sha((release / 'mini-12-int8.tar.gz').read_bytes()))}"
    assert lines_of(run(release / "mini-12-int8.tar.gz")) == [header, *TARBALL_TREE]


def test_a_tarball_only_download_is_traced_through_the_statements(release, tmp_path):
    """No model on disk: every step comes from provenance.intoto.jsonl, roles guessed from file names."""
    only = tmp_path / "download"
    only.mkdir()
    for name in ("mini-12-int8.tar.gz", JSONL):
        shutil.copy(release / name, only / name)
    header = f"mini-12-int8.tar.gz  sha256 {short(sha((only / 'mini-12-int8.tar.gz').read_bytes()))}"
    result = run(only / "mini-12-int8.tar.gz")
    assert lines_of(result) == [header, *TARBALL_TREE]
    assert result.stderr == ""


def test_a_caffe2_file_through_its_statement(release):
    result = run(release / "caffe2" / "init_net.pb")
    assert lines_of(result) == [f"caffe2/init_net.pb  sha256 {short(sha(INIT))}", f"└─ {TRANSLATED}"]


def test_an_explicit_release_folder_supplies_the_statements(release, tmp_path):
    assert lines_of(run(release / "caffe2" / "init_net.pb", "--release", release)) == [
        f"caffe2/init_net.pb  sha256 {short(sha(INIT))}", f"└─ {TRANSLATED}"]
    header = f"mini-12-int8.tar.gz  sha256 {short(sha((release / 'mini-12-int8.tar.gz').read_bytes()))}"
    assert lines_of(run(release / "mini-12-int8.tar.gz", "--release", release)) == [header, *TARBALL_TREE]


def test_a_statement_without_dependencies(tmp_path):
    """resolvedDependencies is optional in a SLSA v1 build definition."""
    (tmp_path / "caffe2").mkdir()
    (tmp_path / "caffe2" / "init_net.pb").write_bytes(INIT)
    write_jsonl(tmp_path, [statement("caffe2/init_net.pb", sha(INIT), [], [], {}, dependencies=False)])
    assert lines_of(run(tmp_path / "caffe2" / "init_net.pb")) == [
        f"caffe2/init_net.pb  sha256 {short(sha(INIT))}", "└─ translated from (nothing recorded)"]


def test_netdef_files_outside_a_caffe2_folder_are_translated(tmp_path):
    for name, data in (("predict_net.pb", PREDICT), ("init_net.pb", INIT)):
        (tmp_path / name).write_bytes(data)
    write_jsonl(tmp_path, [statement("predict_net.pb", sha(PREDICT), CAFFE_DEPS, [], {}),
                           statement("init_net.pb", sha(INIT), CAFFE_DEPS, [], {})])
    for name, data in (("predict_net.pb", PREDICT), ("init_net.pb", INIT)):
        assert lines_of(run(tmp_path / name)) == [f"{name}  sha256 {short(sha(data))}", f"└─ {TRANSLATED}"]


def test_statement_sources_get_roles_from_their_names(tmp_path):
    """A Caffe2 file normalised from a Caffe2 model, and a tarball converted from an ONNX file."""
    value_info, original = b'{"data": [1, 2]}', b"an onnx model"
    (tmp_path / "caffe2").mkdir()
    (tmp_path / "caffe2" / "value_info.json").write_bytes(value_info)
    (tmp_path / "orig.tar.gz").write_bytes(b"not read")
    netdef = [("predict_net.pb", sha(PREDICT)), ("init_net.pb", sha(INIT)), ("value_info.json", sha(value_info))]
    write_jsonl(tmp_path, [statement("caffe2/value_info.json", sha(value_info), netdef, [], {}),
                           statement("orig.tar.gz", sha(b"not read"), [("models/orig.onnx", sha(original))], [],
                                     {"target_opset": 12})])
    assert lines_of(run(tmp_path / "caffe2" / "value_info.json"))[1] == (
        f"└─ translated from predict_net.pb sha256 {short(sha(PREDICT))} (predict_net), "
        f"init_net.pb sha256 {short(sha(INIT))} (init_net), "
        f"value_info.json sha256 {short(sha(value_info))} (value_info)")
    assert lines_of(run(tmp_path / "orig.tar.gz"))[1] == (
        f"└─ converted from models/orig.onnx sha256 {short(sha(original))} (onnx)  (opset 12)")


@pytest.mark.parametrize("name, role", [
    ("deploy.prototxt", "prototxt"), ("a/b/net.caffemodel", "weights"), ("net.caffemodel.h5", "weights"),
    ("predict_net.pb", "predict_net"), ("caffe2/init_net.pb", "init_net"), ("value_info.json", "value_info"),
    ("models/orig.onnx", "onnx"), ("parity.json", None), ("orig.onnx.txt", None),
])
def test_guess_role(name, role):
    assert guess_role(name) == role


def test_without_statements_the_stamps_and_the_caffe2_pair_give_the_tree(tmp_path):
    """zoo-quantize's output beside its fp32 model, no provenance.intoto.jsonl: each .onnx parent's own
    stamp, and the Caffe2 parents fall back to the child's source files."""
    write_models(tmp_path)
    result = run(tmp_path / "mini-12-int8.onnx")
    assert lines_of(result) == INT8_TREE
    assert result.stderr == ""


def test_a_model_from_its_source_files_alone(tmp_path):
    """zoo-convert's output: sources, no parents; the sources keep their roles."""
    model = model_bytes(stamp(LINE, CAFFE_SOURCES, [], {"target_opset": 9, "names": "caffe2"}), "convert")
    (tmp_path / "lenet.onnx").write_bytes(model)
    assert lines_of(run(tmp_path / "lenet.onnx")) == [
        f"lenet.onnx  sha256 {short(sha(model))}",
        (f"└─ converted from deploy.prototxt sha256 {short(sha(PROTOTXT))} (prototxt), "
         f"mini.caffemodel sha256 {short(sha(WEIGHTS))} (weights)  (opset 9, names caffe2)"),
        f"lineage: {LINE}",
    ]


def test_parents_that_are_source_files_show_their_roles(tmp_path):
    """A release from a Caffe2 model: the fp32 model's parents are its source files (the format)."""
    value_info = b'{"data": [1, 2]}'
    files = [("predict_net.pb", "predict_net", sha(PREDICT)), ("init_net.pb", "init_net", sha(INIT)),
             ("value_info.json", "value_info", sha(value_info))]
    model = model_bytes(stamp("Caffe2 Mini ==> ONNX Mini", files, [(n, d) for n, _, d in files],
                              {"target_opset": 12}), "caffe2 source")
    (tmp_path / "mini-12.onnx").write_bytes(model)
    assert lines_of(run(tmp_path / "mini-12.onnx"))[1] == (
        f"└─ converted from predict_net.pb sha256 {short(sha(PREDICT))} (predict_net), "
        f"init_net.pb sha256 {short(sha(INIT))} (init_net), "
        f"value_info.json sha256 {short(sha(value_info))} (value_info)  (opset 12)")


@pytest.mark.parametrize("name", ["loose.tar.gz", "loose.tgz"])
def test_a_tarball_without_statement_is_read_inside(release, tmp_path, name):
    """The first model.onnx inside, even with other files sorting before it."""
    labels = tmp_path / "labels.txt"
    labels.write_text("zero\none\n")
    archive = tmp_path / name
    write_tarball(archive, "mini", [("labels.txt", labels), ("model.onnx", release / "mini-12-int8.onnx")], mtime=0)
    assert lines_of(run(archive, "--release", release)) == [
        f"{name}  sha256 {short(sha(archive.read_bytes()))}",
        f"└─ packaged from mini/model.onnx sha256 {short(sha(INT8_MODEL))}",
        f"   └─ {QUANTIZED}",
        f"      └─ {CONVERTED}",
        f"         └─ {TRANSLATED}",
        f"lineage: {INT8_LINE}",
    ]


def test_a_tarball_without_a_model(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("zero\none\n")
    archive = tmp_path / "loose.tar.gz"
    write_tarball(archive, "mini", [("labels.txt", labels)], mtime=0)
    result = run(archive)
    assert result.exit_code == 2
    assert result.stderr == f"error: {archive} holds no model.onnx\n"


def test_render_draws_the_branches_of_labelled_children():
    a, b, c, d, e = (ch * 64 for ch in "abcde")
    left = Step("converted from", [Input("left/predict_net.pb", c)], {},
                [(None, Step("translated from", [Input("l.prototxt", d, "prototxt")], {}))])
    right = Step("converted from", [Input("r.prototxt", e, "prototxt")], {"target_opset": 9})
    top = Step("converted from", [Input("left.onnx", a), Input("right.onnx", b)], {},
               [("left.onnx", left), ("right.onnx", right)])
    assert render("top.onnx", "f" * 64, top) == [
        "top.onnx  sha256 ffffffffffff…",
        "└─ converted from left.onnx sha256 aaaaaaaaaaaa…, right.onnx sha256 bbbbbbbbbbbb…",
        "   ├─ left.onnx: converted from left/predict_net.pb sha256 cccccccccccc…",
        "   │  └─ translated from l.prototxt sha256 dddddddddddd… (prototxt)",
        "   └─ right.onnx: converted from r.prototxt sha256 eeeeeeeeeeee… (prototxt)  (opset 9)",
    ]
