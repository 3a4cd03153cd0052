"""int8 test data that other CPUs can check: the cross-CPU rule of ``zoo-validate`` for quantized
variants, and the CPU record in ``parity.json`` and the provenance (issue 12, item 11).

Oracles: hand-built Q/DQ models whose output grid is known by construction; the LeNet release's
own int8/QDQ models, with the logits' step read from the model's initializers and probabilities
recomputed with NumPy's softmax; ``/proc/cpuinfo`` read here with a regular expression.
"""

from __future__ import annotations

import json
import platform
import re
import shutil
import tarfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import helper, numpy_helper

import zooforge.artifacts.release.build as release_module
from zooforge.artifacts.quantization.cpu import cpu_record
from zooforge.artifacts.release.build import ReleaseOptions, build_release
from zooforge.artifacts.release.source import builtin_source, caffe_source
from zooforge.artifacts.release.testdata import InputRecipe
from zooforge.artifacts.validation import validate_cli
from zooforge.artifacts.validation.parity import QuantizedRule, Tolerance, validate_path
from zooforge.converters.api import ConvertOptions

STEPS = 3
SCALE = 0.1


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def lenet_release(shared: Path, out: Path, quantize=("int8", "qdq"), test_sets: int = 2) -> Path:  # noqa: ANN001
    folder = shared / "caffe" / "trained" / "lenet_mnist_v2"
    source = caffe_source(folder / "lenet.prototxt", folder / "lenet_iter_10000.caffemodel", ConvertOptions(names="zoo"))
    build_release(source, ReleaseOptions(name="lenet", opsets=(12,), quantize=tuple(quantize), test_sets=test_sets,
                                         recipe=InputRecipe(0, 0.0, 1.0), source_date_epoch=7), out)
    return out


@pytest.fixture(scope="module")
def release(shared, tmp_path_factory) -> Path:
    return lenet_release(shared, tmp_path_factory.mktemp("int8") / "lenet")


def unpack(archive: Path, dest: Path) -> Path:
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    (top,) = [p for p in dest.iterdir() if p.is_dir()]
    return top


def set_output(folder: Path, index: int, value: np.ndarray) -> None:
    path = folder / f"test_data_set_{index}" / "output_0.pb"
    old = onnx.load_tensor(str(path))
    onnx.save_tensor(numpy_helper.from_array(np.asarray(value, dtype=np.float32), old.name), str(path))


# ------------------------------------------------------------------ a hand-built dequantized output


def qdq_folder(root: Path, expected: np.ndarray, x: np.ndarray) -> Path:
    """y = DequantizeLinear(QuantizeLinear(x, 0.1, 0), 0.1, 0): y lies on the 0.1 grid."""
    scale = numpy_helper.from_array(np.array(SCALE, np.float32), "s")
    zero = numpy_helper.from_array(np.array(0, np.uint8), "z")
    graph = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
         helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])],
        "qdq", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, list(x.shape))], [scale, zero])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    folder = root / "model"
    (folder / "test_data_set_0").mkdir(parents=True)
    onnx.save(model, str(folder / "model.onnx"))
    onnx.save_tensor(numpy_helper.from_array(x.astype(np.float32), "x"), str(folder / "test_data_set_0" / "input_0.pb"))
    onnx.save_tensor(numpy_helper.from_array(expected.astype(np.float32), "y"),
                     str(folder / "test_data_set_0" / "output_0.pb"))
    return folder


# A "feature map" output (no single class axis), so only the step bound judges it.
GRID = np.array([[[[0.0, 1.0], [2.0, 5.0]], [[3.0, 4.0], [1.0, 2.0]]]], np.float32)  # on the 0.1 grid


@pytest.mark.parametrize("steps, passes", [(0, True), (1, True), (STEPS, True), (STEPS + 1, False), (10, False)])
def test_dequantized_output_passes_within_the_steps_and_fails_beyond(tmp_path, steps, passes):
    expected = GRID + np.float32(steps * SCALE) * np.array([1, -1, 1, -1, 1, -1, 1, -1]).reshape(GRID.shape)
    report = validate_path(qdq_folder(tmp_path, expected, GRID), quantized=QuantizedRule(STEPS))
    (out,) = report.sets[0].outputs
    assert out.rule.startswith("quantized (dequantized: 3 steps of 0.1")
    assert report.passed is passes, out.reason
    assert out.needed_steps == pytest.approx(steps, abs=0.02)
    if not passes:
        assert "beyond the quantized rule" in out.reason


def test_a_top1_flip_fails_even_within_the_steps(tmp_path):
    x = np.array([[0.5, 0.4, 0.1]], np.float32)           # the model reproduces x (it lies on the grid)
    flipped = np.array([[0.4, 0.5, 0.1]], np.float32)     # one step away per element, top class swapped
    report = validate_path(qdq_folder(tmp_path, flipped, x), quantized=QuantizedRule(STEPS))
    (out,) = report.sets[0].outputs
    assert not report.passed
    assert out.reason.startswith("top-1 class differs in row 0: got class 0 where the test data's top class is 1")
    tied = np.array([[0.5, 0.5, 0.1]], np.float32)         # a tie in the data allows either class
    assert validate_path(qdq_folder(tmp_path / "tie", tied, x), quantized=QuantizedRule(STEPS)).passed


def test_strict_rule_applies_to_that_model_when_asked(tmp_path):
    expected = GRID + np.float32(SCALE)
    folder = qdq_folder(tmp_path, expected, GRID)
    assert validate_path(folder).passed
    report = validate_path(folder, quantized=None)
    assert not report.passed and report.sets[0].outputs[0].rule == "strict"


# ------------------------------------------------------------------ the LeNet release's int8 and QDQ


def logits_and_scale(model_path: Path, feed: np.ndarray) -> tuple[np.ndarray, float]:
    """The dequantized logits (onnxruntime, the last DequantizeLinear's output exposed) and their scale."""
    import onnxruntime as ort

    model = onnx.load(str(model_path))
    (softmax,) = [n for n in model.graph.node if n.op_type == "Softmax"]
    (dq,) = [n for n in model.graph.node if softmax.input[0] in n.output]
    assert dq.op_type == "DequantizeLinear"
    scale = float(next(numpy_helper.to_array(t) for t in model.graph.initializer if t.name == dq.input[1]))
    model.graph.output.append(onnx.ValueInfoProto(name=softmax.input[0]))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (logits,) = session.run([softmax.input[0]], {model.graph.input[0].name: feed})
    return logits.astype(np.float64), scale


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("fmt", ["int8", "qdq"])
def test_lenet_softmax_output_within_logit_steps(release, tmp_path, fmt):
    top = unpack(release / f"lenet-12-{fmt}.tar.gz", tmp_path)
    feed = numpy_helper.to_array(onnx.load_tensor(str(top / "test_data_set_0" / "input_0.pb")))
    logits, scale = logits_and_scale(top / "model.onnx", feed)
    winner = int(np.argmax(logits))
    runner_up = np.sort(logits[0])[-2]
    assert logits[0, winner] - runner_up > 2 * (STEPS + 1) * scale, "the test needs a clear top-1 margin"
    loser = int(np.argmin(logits))  # the smallest probability moves by the largest factor

    def drifted(k: int) -> np.ndarray:  # the worst case of k steps: one logit down, all others up,
        delta = np.full_like(logits, k * scale)  # so the model's probability is exp(2 k scale) times the data's
        delta[0, loser] = -k * scale
        return softmax(logits + delta)

    set_output(top, 0, drifted(STEPS))
    report = validate_path(top)
    assert report.passed, report.failures()
    assert report.sets[0].outputs[0].needed_steps <= STEPS
    set_output(top, 0, drifted(STEPS + 1))
    report = validate_path(top)
    assert not report.passed
    assert "beyond the quantized rule, softmax of dequantized logits: 3 logit steps" in report.failures()[0]


def test_fp32_variant_keeps_the_strict_rule(release, tmp_path):
    fp32 = unpack(release / "lenet-12.tar.gz", tmp_path / "fp32")
    int8 = unpack(release / "lenet-12-int8.tar.gz", tmp_path / "int8")
    for top in (fp32, int8):
        out = numpy_helper.to_array(onnx.load_tensor(str(top / "test_data_set_0" / "output_0.pb")))
        set_output(top, 0, out * 1.01)  # 1% off: far beyond rtol 1e-3, well within 3 logit steps
    fp32_report, int8_report = validate_path(fp32), validate_path(int8)
    assert not fp32_report.passed and fp32_report.sets[0].outputs[0].rule == "strict"
    assert "beyond rtol=0.001" in fp32_report.failures()[0]
    assert int8_report.passed and int8_report.sets[0].outputs[0].rule.startswith("quantized (softmax")
    result = CliRunner().invoke(validate_cli.main, [str(int8), "--strict-quantized"])
    assert result.exit_code == 1, result.output


def test_cli_states_the_rule_in_help_and_json(release, tmp_path):
    help_text = CliRunner().invoke(validate_cli.main, ["--help"]).output
    assert "--quantized-steps" in help_text and "top-1" in help_text
    report_path = tmp_path / "report.json"
    result = CliRunner().invoke(validate_cli.main, [str(release), "--json", str(report_path)])
    assert result.exit_code == 0, result.output
    data = json.loads(report_path.read_text())
    assert data["quantized_rule"]["steps"] == 3.0 and data["quantized_rule"]["top1"] is True
    rules = {s["model"].rsplit("/", 1)[-1]: s["outputs"][0].get("rule", "strict") for s in data["sets"]}
    assert rules["lenet-12.tar.gz"] == "strict"
    assert rules["lenet-12-int8.tar.gz"].startswith("quantized") and rules["lenet-12-qdq.tar.gz"].startswith("quantized")


# ------------------------------------------------------------------ the CPU record


def proc_cpuinfo() -> dict[str, str]:
    text = Path("/proc/cpuinfo").read_text()
    first = text.split("\n\n")[0]
    return {m.group(1).strip(): m.group(2).strip() for m in re.finditer(r"^([^:\n]+):(.*)$", first, re.M)}


@pytest.mark.skipif(platform.system() != "Linux" or not Path("/proc/cpuinfo").is_file(), reason="needs /proc/cpuinfo")
def test_cpu_record_in_parity_and_provenance_matches_proc_cpuinfo(release):
    info = proc_cpuinfo()
    flags = set((info.get("flags") or info.get("Features", "")).split())
    parity = {entry["variant"]: entry for entry in json.loads((release / "parity.json").read_text())}
    assert "cpu" not in parity["lenet-12"]
    statements = {json.loads(line)["subject"][0]["name"]: json.loads(line)
                  for line in (release / "provenance.intoto.jsonl").read_text().splitlines()}
    assert "cpu" not in statements["lenet-12.onnx"]["predicate"]["buildDefinition"]["internalParameters"]
    for fmt in ("int8", "qdq"):
        cpu = parity[f"lenet-12-{fmt}"]["cpu"]
        if "vendor_id" in info:
            assert cpu["vendor"] == info["vendor_id"] and cpu["model_name"] == info["model name"]
        for flag in ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8", "amx_tile"):
            assert cpu["int8_flags"][flag] is (flag in flags), flag
        vnni = bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})
        assert (cpu["u8s8_accumulation"] == "int32") is vnni or "avx2" not in flags
        import onnxruntime

        assert cpu["onnxruntime"] == onnxruntime.__version__
        for name in (f"lenet-12-{fmt}.onnx", f"lenet-12-{fmt}.tar.gz"):
            assert statements[name]["predicate"]["buildDefinition"]["internalParameters"]["cpu"] == cpu


def test_cpu_record_says_unknown_without_cpuinfo(tmp_path):
    record = cpu_record(tmp_path / "no-cpuinfo")
    assert {record[k] for k in ("source", "vendor", "model_name", "int8_flags", "best_int8_extension")} == {"unknown"}
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Xeon\n"
                                      "flags\t\t: sse4_1 avx2 avx512f avx512bw avx512_vnni amx_tile amx_int8\n\n"
                                      "processor\t: 1\nflags\t\t: sse2\n")
    record = cpu_record(tmp_path / "cpuinfo")
    assert record["best_int8_extension"] == "amx_int8" and record["u8s8_accumulation"] == "int32"
    assert record["int8_flags"]["avx512_vnni"] and not record["int8_flags"]["avx_vnni"]


# ------------------------------------------------------------------ reproducibility stays meaningful


def test_quantized_releases_differ_across_cpus_only_in_the_records(shared, release, tmp_path, monkeypatch):
    again = lenet_release(shared, tmp_path / "again")
    assert tree(again) == tree(release)  # same machine: byte-identical, CPU record included
    other = dict(cpu_record(), model_name="Another CPU", best_int8_extension="avx512_vnni")
    monkeypatch.setattr(release_module, "cpu_record", lambda: other)
    moved = lenet_release(shared, tmp_path / "moved")
    first, second = tree(release), tree(moved)
    assert {name for name in first if first[name] != second[name]} == {
        "parity.json", "provenance.intoto.jsonl", "SHA256SUMS"}


def test_a_release_without_quantized_variants_records_no_machine(shared, tmp_path, monkeypatch):
    plain = lenet_release(shared, tmp_path / "plain", quantize=(), test_sets=1)
    monkeypatch.setattr(release_module, "cpu_record", lambda: {"model_name": "elsewhere"})
    assert tree(lenet_release(shared, tmp_path / "plain2", quantize=(), test_sets=1)) == tree(plain)
    assert '"cpu"' not in (plain / "parity.json").read_text()
    assert '"cpu"' not in (plain / "provenance.intoto.jsonl").read_text()


# ------------------------------------------------------------------ the default release


@pytest.mark.slow
def test_default_alexnet_quantized_release_validates(tmp_path):
    out = tmp_path / "alexnet"
    build_release(builtin_source("alexnet", ConvertOptions(names="zoo")),
                  ReleaseOptions(opsets=(12,), test_sets=1), out)
    report = validate_path(out, Tolerance())
    assert report.passed, report.failures()
    assert {s.outputs[0].rule.split(" ")[0] for s in report.sets} == {"strict", "quantized"}
    shutil.rmtree(out)
