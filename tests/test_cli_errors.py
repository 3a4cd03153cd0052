"""``zoo-convert`` on bad input: one ``error:`` line naming the culprit, exit 2, nothing written."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from zooforge.converters.cli import main

LENET = ("caffe", "trained", "lenet_mnist_v2")
MTCNN = ("caffe", "trained", "mtcnn")


@pytest.fixture
def lenet(shared):
    folder = shared.joinpath(*LENET)
    return folder / "lenet.prototxt", folder / "lenet_iter_10000.caffemodel"


@pytest.fixture
def mtcnn(shared):
    return shared.joinpath(*MTCNN)


@pytest.fixture
def out_dir(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def convert(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_clean_failure(result, out_dir: Path, *mentions: str) -> str:
    """Exit 2, exactly one ``error:`` line on stderr naming ``mentions``, no files in ``out_dir``."""
    stderr = result.stderr
    assert result.exit_code == 2, f"exit {result.exit_code}; stderr: {stderr!r}; exc: {result.exception!r}"
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {lines}"
    assert lines[0].startswith("error: "), lines[0]
    for mention in mentions:
        assert mention in lines[0], f"{mention!r} not named in {lines[0]!r}"
    assert result.stdout == "", "nothing may be reported as written"
    assert sorted(p.name for p in out_dir.iterdir()) == [], "output or temp files were left behind"
    return lines[0]


def test_missing_prototxt(lenet, out_dir):
    missing = lenet[0].with_name("no_such_net.prototxt")
    result = convert(missing, lenet[1], "-o", out_dir / "m.onnx")
    assert_clean_failure(result, out_dir, str(missing), "does not exist")


def test_missing_weights(lenet, out_dir):
    missing = lenet[1].with_name("no_such_weights.caffemodel")
    result = convert(lenet[0], missing, "-o", out_dir / "m.onnx")
    assert_clean_failure(result, out_dir, str(missing), "does not exist")


def test_truncated_weights(lenet, tmp_path, out_dir):
    truncated = tmp_path / "truncated.caffemodel"
    truncated.write_bytes(lenet[1].read_bytes()[:1000])
    result = convert(lenet[0], truncated, "-o", out_dir / "m.onnx")
    assert_clean_failure(result, out_dir, str(truncated))


@pytest.mark.parametrize("kind", ["prototxt", "text"])
def test_weights_that_are_not_protobuf(kind, lenet, tmp_path, out_dir):
    if kind == "prototxt":
        weights = lenet[0]
    else:
        weights = tmp_path / "notes.caffemodel"
        weights.write_text("These are not the weights you are looking for.\n" * 20)
    result = convert(lenet[0], weights, "-o", out_dir / "m.onnx")
    assert_clean_failure(result, out_dir, str(weights))


def test_unknown_layer_type(lenet, tmp_path, out_dir):
    text = lenet[0].read_text()
    anchor = 'layer {\n  name: "pool1"'
    assert anchor in text
    foo = 'layer {\n  name: "mystery"\n  type: "Foo"\n  bottom: "conv1"\n  top: "conv1"\n}\n'
    prototxt = tmp_path / "lenet_foo.prototxt"
    prototxt.write_text(text.replace(anchor, foo + anchor, 1))
    result = convert(prototxt, lenet[1], "-o", out_dir / "m.onnx")
    line = assert_clean_failure(result, out_dir, "'mystery'", "'Foo'")
    assert "supported" in line
    for supported in ("Convolution", "Pooling", "InnerProduct", "ReLU", "Softmax"):
        assert supported in line, f"supported types should list {supported}: {line}"


def test_blob_shape_mismatch(lenet, tmp_path, out_dir):
    text = lenet[0].read_text()
    assert text.count("num_output: 20") == 1
    prototxt = tmp_path / "lenet_21.prototxt"
    prototxt.write_text(text.replace("num_output: 20", "num_output: 21"))
    result = convert(prototxt, lenet[1], "-o", out_dir / "m.onnx")
    # conv1 is 20 filters of 1x5x5 in the trained file; the edited prototxt asks for 21.
    assert_clean_failure(result, out_dir, "'conv1'", "[20, 1, 5, 5]", "[21, 1, 5, 5]")


def test_prototxt_syntax_error_names_line(lenet, tmp_path, out_dir):
    lines = lenet[0].read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if "kernel_size: 5" in line)
    lines[index] = lines[index].replace("kernel_size: 5", "kernel_size: = 5 }")
    prototxt = tmp_path / "broken.prototxt"
    prototxt.write_text("\n".join(lines) + "\n")
    line_number = index + 1
    result = convert(prototxt, lenet[1], "-o", out_dir / "m.onnx")
    assert_clean_failure(result, out_dir, str(prototxt), f"line {line_number}")


@pytest.mark.parametrize("opset", [2, 999])
def test_opset_out_of_range(opset, lenet, out_dir):
    result = convert(*lenet, "--to-opset", opset, "-o", out_dir / "m.onnx")
    assert_clean_failure(result, out_dir, f"opset {opset}")


def test_missing_output_folder(lenet, tmp_path, out_dir):
    target = tmp_path / "absent" / "m.onnx"
    result = convert(*lenet, "-o", target)
    assert_clean_failure(result, out_dir, str(target.parent))
    assert not target.parent.exists()


def test_layer_without_weights(mtcnn, out_dir):
    weights = mtcnn / "det1.caffemodel"
    result = convert(mtcnn / "det2.prototxt", weights, "-o", out_dir / "m.onnx")
    assert_clean_failure(result, out_dir, "layer '", str(weights))


def test_weights_without_layer_is_a_warning(mtcnn, out_dir):
    output = out_dir / "det2.onnx"
    result = convert(mtcnn / "det2.prototxt", mtcnn / "det2.caffemodel", "-o", output)
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "conv5-3" in warnings[0], result.stderr
    assert "Traceback" not in result.output
    assert output.is_file() and output.stat().st_size > 0
    assert sorted(p.name for p in out_dir.iterdir()) == ["det2.onnx"]


def _console_script() -> list[str]:
    script = Path(sys.executable).with_name("zoo-convert")
    found = str(script) if script.is_file() else shutil.which("zoo-convert")
    if found is None:
        pytest.fail("the zoo-convert console script is not installed (pip install -e .)")
    return [found]


def test_console_script_error_has_no_traceback(lenet, tmp_path, out_dir):
    truncated = tmp_path / "truncated.caffemodel"
    truncated.write_bytes(lenet[1].read_bytes()[:1000])
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    proc = subprocess.run(
        [*_console_script(), str(lenet[0]), str(truncated), "-o", str(out_dir / "m.onnx")],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(truncated) in lines[0], lines
    assert proc.stdout == ""
    assert list(out_dir.iterdir()) == []


def test_console_script_warning_line(mtcnn, out_dir):
    output = out_dir / "det2.onnx"
    proc = subprocess.run(
        [*_console_script(), str(mtcnn / "det2.prototxt"), str(mtcnn / "det2.caffemodel"), "-o", str(output)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "conv5-3" in warnings[0], proc.stderr
    assert output.is_file()


def test_output_that_is_a_folder(lenet, out_dir):
    result = convert(*lenet, "-o", out_dir)
    assert_clean_failure(result, out_dir, str(out_dir), "folder")


def test_emit_caffe2_onto_a_file(lenet, tmp_path, out_dir):
    blocker = tmp_path / "c2"
    blocker.write_text("in the way\n")
    result = convert(*lenet, "-o", out_dir / "m.onnx", "--emit-caffe2", blocker)
    assert_clean_failure(result, out_dir, str(blocker))
    assert blocker.read_text() == "in the way\n"


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_written_files_follow_umask(lenet, out_dir):
    """Outputs get the mode any new file gets (0644 under umask 022), not mkstemp's private 0600."""
    old = os.umask(0o022)
    try:
        result = convert(*lenet, "-o", out_dir / "m.onnx", "--emit-caffe2", out_dir / "c2")
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    written = [out_dir / "m.onnx", *sorted((out_dir / "c2").iterdir())]
    assert [p.name for p in written] == ["m.onnx", "init_net.pb", "predict_net.pb", "value_info.json"]
    for path in written:
        assert path.stat().st_mode & 0o777 == 0o644, f"{path.name}: {oct(path.stat().st_mode & 0o777)}"


# -- NetDef pairs that real Caffe2 refuses (see test_caffe2_conformance's read forms) -------------

def _netdef_pair(folder: Path, ops, weights: dict, init_ops=()):  # noqa: ANN001
    import numpy as np

    from zooforge.converters.caffe2 import schema
    from zooforge.converters.caffe2.netdef import build_init_net

    predict = schema.NetDef(name="hostile")
    predict.op.extend(ops)
    predict.external_input.extend(["data", *weights])
    predict.external_output.append(ops[-1].output[0])
    init = build_init_net({k: np.asarray(v, np.float32) for k, v in weights.items()}, "hostile")
    init.op.extend(init_ops)
    (folder / "predict_net.pb").write_bytes(predict.SerializeToString())
    (folder / "init_net.pb").write_bytes(init.SerializeToString())
    return folder / "predict_net.pb", folder / "init_net.pb"


def _hostile_netdefs():
    import numpy as np

    from zooforge.converters.caffe2.netdef import make_op

    w = np.zeros((3, 16), np.float32)
    return {
        "one-output-concat": ([make_op("Concat", ["data", "data"], ["y"], axis=1)], {}, (),
                              "has 1 outputs; Caffe2's schema expects 2"),
        "fc-without-bias": ([make_op("FC", ["data", "w"], ["y"])], {"w": w}, (), "has 2 inputs"),
        "slice-over-two-axes": ([make_op("Slice", ["data"], ["y"], starts=[0, 0, 1, 1], ends=[-1, -1, 3, 3])], {}, (),
                                "Caffe2's Slice cuts only one axis"),
        "named-pool-without-kernel": ([make_op("AveragePool", ["data"], ["y"], name="Pooling1", global_pooling=1)],
                                      {}, (), "has no kernel size"),
        "concat-axis-and-order": ([make_op("Concat", ["data", "data"], ["y", "info"], axis=1, order="NCHW")], {}, (),
                                  "both 'axis' and 'order'"),
        "training-init-net": ([make_op("Relu", ["data"], ["y"])], {},
                              (make_op("XavierFill", [], ["w"], shape=[3, 3]),), "XavierFill -> 'w' draws random values"),
    }


@pytest.mark.parametrize("case", list(_hostile_netdefs()), ids=list(_hostile_netdefs()))
def test_netdef_real_caffe2_refuses_is_one_error_line(case, tmp_path, out_dir):
    ops, weights, init_ops, mention = _hostile_netdefs()[case]
    predict, init = _netdef_pair(tmp_path, ops, weights, init_ops)
    result = convert(predict, "--init-net", init, "--input-shape", "1,1,4,4", "-o", out_dir / "m.onnx")
    assert_clean_failure(result, out_dir, mention)


def _zoo_commands() -> list:
    from importlib import metadata

    return sorted((e for e in metadata.entry_points(group="console_scripts") if e.name.startswith("zoo-")),
                  key=lambda e: e.name)


def test_every_command_says_its_version_and_exits_0():
    """The version comes from the installed distribution's metadata, not from zooforge's code."""
    from importlib import metadata

    commands = _zoo_commands()
    assert [e.name for e in commands] == ["zoo-convert", "zoo-eval", "zoo-lineage", "zoo-package", "zoo-quantize",
                                          "zoo-validate", "zoo-verify"]
    for entry in commands:
        result = CliRunner().invoke(entry.load(), ["--version"], prog_name=entry.name)
        assert result.exit_code == 0, (entry.name, result.output)
        assert result.output == f"{entry.name} (zooforge) {metadata.version('zooforge')}\n"


# --synthetic-weights / --weights-seed misuse: (arguments after the prototxt, or instead of it; mentions)
SYNTHETIC_MISUSE = {
    "seed-without-flag": (["{prototxt}", "--weights-seed", "3"], ["--weights-seed", "--synthetic-weights"]),
    "with-weights": (["{prototxt}", "{weights}", "--synthetic-weights"], ["give no WEIGHTS", "lenet_iter_10000"]),
    "with-builtin": (["--builtin", "alexnet", "--synthetic-weights"], ["--synthetic-weights", "built-in"]),
    "no-model": (["--synthetic-weights"], ["needs a .prototxt MODEL"]),
    "onnx-model": (["{onnx}", "--synthetic-weights"], ["not an ONNX model", "m.onnx"]),
    "netdef-pair": (["{onnx}", "--init-net", "{weights}", "--synthetic-weights"], ["not a NetDef pair"]),
    "negative-seed": (["{prototxt}", "--synthetic-weights", "--weights-seed", "-1"], ["--weights-seed"]),
    "word-seed": (["{prototxt}", "--synthetic-weights", "--weights-seed", "seven"], ["--weights-seed"]),
}


@pytest.mark.parametrize("case", list(SYNTHETIC_MISUSE))
def test_synthetic_weights_misuse_is_one_sentence(case, lenet, tmp_path, out_dir):
    template, mentions = SYNTHETIC_MISUSE[case]
    names = {"prototxt": lenet[0], "weights": lenet[1], "onnx": tmp_path / "m.onnx"}
    result = convert(*(arg.format(**names) for arg in template), "-o", out_dir / "m.onnx")
    assert_clean_failure(result, out_dir, *mentions)


def test_synthetic_weights_for_a_type_zooforge_cannot_synthesize(lenet, tmp_path, out_dir):
    text = lenet[0].read_text()
    anchor = 'layer {\n  name: "pool1"'
    foo = 'layer {\n  name: "mystery"\n  type: "Foo"\n  bottom: "conv1"\n  top: "conv1"\n}\n'
    prototxt = tmp_path / "lenet_foo.prototxt"
    prototxt.write_text(text.replace(anchor, foo + anchor, 1))
    result = convert(prototxt, "--synthetic-weights", "-o", out_dir / "m.onnx")
    assert_clean_failure(result, out_dir, "'mystery'", "'Foo'")


def test_synthetic_weights_beyond_what_a_caffemodel_holds(lenet, tmp_path, out_dir):
    """ip1 asked for 10^9 outputs of 800 inputs: refused by name before any value is drawn."""
    text = lenet[0].read_text()
    assert text.count("num_output: 500") == 1
    prototxt = tmp_path / "lenet_huge.prototxt"
    prototxt.write_text(text.replace("num_output: 500", "num_output: 1000000000"))
    result = convert(prototxt, "--synthetic-weights", "-o", out_dir / "m.onnx")
    assert_clean_failure(result, out_dir, "'ip1'", "InnerProduct", "1000000000x800", "2 GiB")
