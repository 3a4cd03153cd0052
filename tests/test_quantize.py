"""Static quantization (int8 = QOperator, qdq = QDQ) of the trained LeNet, and the evaluation report.

Oracles: the MNIST t10k labels (fp32 LeNet is published at ~99.1%), the quantized graphs' operator
and tensor types, and byte equality of two runs.
"""

from __future__ import annotations

import json
import os
import tempfile

import onnx
import pytest
from click.testing import CliRunner

from zooforge.artifacts.quantization.datasets import load_dataset
from zooforge.artifacts.quantization.eval_cli import main as eval_main
from zooforge.artifacts.quantization.evaluate import evaluate
from zooforge.artifacts.quantization.preprocess import get_preset
from zooforge.artifacts.quantization.quantize import QuantizeSettings, calibration_reader, quantize_model, value_range
from zooforge.artifacts.quantization.quantize_cli import main as quantize_main
from zooforge.converters.api import ConvertOptions, convert_caffe

EVAL_IMAGES = 2000
MIN_FP32_TOP1 = 0.985
MAX_DROP_POINTS = 0.5


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("quantize")


@pytest.fixture(scope="module")
def mnist(shared):
    return load_dataset(shared / "data" / "mnist_t10k")


@pytest.fixture(scope="module")
def lenet(shared, work):
    folder = shared / "caffe" / "trained" / "lenet_mnist_v2"
    path = work / "lenet.onnx"
    convert_caffe(folder / "lenet.prototxt", folder / "lenet_iter_10000.caffemodel",
                  ConvertOptions(opset=12)).save(path)
    return path


@pytest.fixture(scope="module")
def preprocess():
    return get_preset("mnist", (1, 1, 28, 28))


def _quantize(lenet, mnist, preprocess, fmt, output):
    settings = QuantizeSettings(fmt, samples=100, seed=0)
    reader, _ = calibration_reader(lenet, settings, preprocess, mnist)
    return quantize_model(lenet, output, settings, reader)


@pytest.fixture(scope="module")
def quantized(lenet, mnist, preprocess, work):
    return {fmt: _quantize(lenet, mnist, preprocess, fmt, work / f"lenet-{fmt}.onnx") for fmt in ("int8", "qdq")}


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    types.update({t.name: t.data_type for t in model.graph.initializer})
    return types


def test_int8_is_qoperator_with_uint8_activations(quantized):
    result = quantized["int8"]
    model = onnx.load(str(result.output))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QLinearConv") == 2
    assert ops.count("QGemm") == 2, "ORT writes Gemm as com.microsoft.QGemm in the QOperator format"
    assert "Conv" not in ops and "Gemm" not in ops
    assert "Softmax" in ops and "QLinearSoftmax" not in ops, "Softmax stays in float"
    types = _elem_types(model)
    conv = next(n for n in model.graph.node if n.op_type == "QLinearConv")
    # QLinearConv(x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, B)
    assert types[conv.input[2]] == onnx.TensorProto.UINT8, "activations are uint8"
    assert types[conv.input[3]] == onnx.TensorProto.INT8, "weights are int8"
    assert types[conv.output[0]] == onnx.TensorProto.UINT8
    assert result.opset == result.source_opset == 12
    assert {(o.domain or "", o.version) for o in model.opset_import} == {("", 12), ("com.microsoft", 1)}
    assert result.calibration_samples == 100


def test_qdq_has_quantize_dequantize_pairs(quantized):
    result = quantized["qdq"]
    model = onnx.load(str(result.output))
    ops = [n.op_type for n in model.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    assert ops.count("Conv") == 2 and ops.count("Gemm") == 2
    types = _elem_types(model)
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear":
            assert types[node.input[2]] == onnx.TensorProto.UINT8, node.name
    dq_by_output = {n.output[0]: n for n in model.graph.node if n.op_type == "DequantizeLinear"}
    for node in model.graph.node:
        if node.op_type in ("Conv", "Gemm"):
            weight, bias = dq_by_output[node.input[1]], dq_by_output[node.input[2]]
            assert types[weight.input[0]] == onnx.TensorProto.INT8, f"{node.name} weights are int8"
            assert types[bias.input[0]] == onnx.TensorProto.INT32, f"{node.name} bias is int32"
    assert result.opset == 12
    assert [o.domain or "" for o in model.opset_import] == [""]


def test_quantization_is_byte_identical_and_leaves_no_temp_files(lenet, mnist, preprocess, quantized, work):
    before = set(os.listdir(tempfile.gettempdir()))
    for fmt in ("int8", "qdq"):
        again = _quantize(lenet, mnist, preprocess, fmt, work / f"again-{fmt}.onnx")
        assert again.output.read_bytes() == quantized[fmt].output.read_bytes(), fmt
    assert not {n for n in set(os.listdir(tempfile.gettempdir())) - before if "quant" in n}
    assert sorted(p.name for p in work.iterdir() if p.name.startswith(".")) == []


def test_quantized_lenet_keeps_its_accuracy(lenet, mnist, preprocess, quantized):
    report = evaluate([lenet, quantized["int8"].output, quantized["qdq"].output], mnist, preprocess,
                      limit=EVAL_IMAGES, names=["fp32", "int8", "qdq"], timed_runs=20)
    fp32, int8, qdq = report.models
    print("\n" + "\n".join(f"{m.name}: top-1 {m.top1:.4f} top-5 {m.top5:.4f} "
                           f"{m.latency_1thread_ms:.3f} ms" for m in report.models))
    assert fp32.samples == EVAL_IMAGES
    assert fp32.top1 >= MIN_FP32_TOP1
    for model in (int8, qdq):
        assert abs(fp32.top1 - model.top1) * 100 <= MAX_DROP_POINTS, model.name
        assert abs(fp32.top5 - model.top5) * 100 <= MAX_DROP_POINTS, model.name
    sentences = report.sentences()
    assert len(sentences) == 2 and sentences[0].startswith("int8's top-1 accuracy drop ratio is ")
    assert "top-5 accuracy drop ratio is" in sentences[1] and "performance improvement is" in sentences[1]
    data = report.to_dict()
    assert data["comparisons"][0]["top1_drop_percent"] == pytest.approx((fp32.top1 - int8.top1) / fp32.top1 * 100)


def test_value_range_of_presets():
    assert value_range(get_preset("mnist", (1, 1, 28, 28))) == (0.0, pytest.approx(255 / 256))
    low, high = value_range(get_preset("inc-alexnet", (1, 3, 224, 224)))
    assert low == pytest.approx(-123.68) and high == pytest.approx(255 - 103.939)


def test_zoo_eval_prints_table_and_sentence(lenet, quantized, shared, work):
    report = work / "eval.json"
    result = CliRunner().invoke(eval_main, [str(lenet), str(quantized["int8"].output),
                                            "--dataset", str(shared / "data" / "mnist_t10k"),
                                            "--preprocess", "mnist", "--limit", "200", "--quiet",
                                            "--json", str(report)])
    assert result.exit_code == 0, result.output
    assert "top-1 %" in result.output and "lenet-int8" in result.output
    assert "lenet-int8's top-1 accuracy drop ratio is" in result.output
    assert json.loads(report.read_text())["samples"] == 200


def test_zoo_quantize_without_calibration_uses_seeded_inputs(lenet, work):
    out = work / "seeded.onnx"
    result = CliRunner().invoke(quantize_main, [str(lenet), "--format", "qdq", "--preprocess", "mnist",
                                                "--samples", "8", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "no calibration data: using 8 seeded inputs in [0, 0.996094)" in result.stderr
    assert out.is_file()


def test_bad_dataset_path_exits_2(lenet, work):
    for command, args in (
        (quantize_main, [str(lenet), "--format", "int8", "--calibration", str(work / "missing"),
                         "--preprocess", "mnist", "-o", str(work / "x.onnx")]),
        (eval_main, [str(lenet), "--dataset", str(work / "missing"), "--preprocess", "mnist"]),
    ):
        result = CliRunner().invoke(command, args)
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "missing" in lines[0]
    assert not (work / "x.onnx").exists()


def test_a_reference_that_scores_0_gives_no_drop_ratio_and_the_report_stays_json():
    """(0 - x) / 0 has no value: the sentence says so and the JSON holds null, never NaN."""
    from zooforge.artifacts.quantization.evaluate import EvalReport, ModelScore

    def score(name: str, top1: int, top5: int, latency: float) -> ModelScore:
        return ModelScore(name, f"{name}.onnx", 10, top1, top5, latency, latency)

    report = EvalReport([score("fp32", 0, 4, 2.0), score("int8", 1, 2, 0.0)], "d", "p", 10, None)
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    (comparison,) = data["comparisons"]
    assert (comparison["top1_drop_percent"], comparison["top5_drop_percent"], comparison["speedup"]) == (None, 50.0, None)
    assert comparison["sentence"] == ("int8's top-1 accuracy drop ratio is undefined (the reference scores 0), top-5 "
                                      "accuracy drop ratio is 50.00% and performance improvement is unmeasured")
