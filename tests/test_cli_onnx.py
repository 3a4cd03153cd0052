"""``zoo-convert model.onnx --to-opset N``: moving published ONNX models between opsets from the
command line, and its refusals as one-line errors with exit status 2 and no output file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from click.testing import CliRunner
from onnx import helper

from conftest import light_input, run_onnx_file
from zooforge.converters.cli import main


def _run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_light_alexnet_up_to_13_and_down_to_7(light_random: Path, tmp_path: Path) -> None:
    """The light zoo AlexNet with seeded random weights (conftest): onnxruntime gives the same
    output for the file zoo-convert moved to 13 and back to 7 as for the original."""
    up, down = tmp_path / "up.onnx", tmp_path / "down.onnx"
    assert _run(light_random, "--to-opset", 13, "-o", up).exit_code == 0
    result = _run(up, "--to-opset", 7, "-o", down)
    assert result.exit_code == 0, result.output
    assert "opset 7, IR 3" in result.output
    x = light_input(2)
    (expected,) = run_onnx_file(light_random, {"data_0": x})
    for path in (up, down):
        (out,) = run_onnx_file(path, {"data_0": x})
        assert float(np.abs(out - expected).max()) <= 1e-6


def test_refusal_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    node = helper.make_node("Softmax", ["x"], ["y"], name="sm", axis=1)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", 1, [1, 3, 2, 2])],
                              [helper.make_tensor_value_info("y", 1, [1, 3, 2, 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    source, out = tmp_path / "softmax13.onnx", tmp_path / "out.onnx"
    onnx.save(model, str(source))
    result = _run(source, "--to-opset", 11, "-o", out)
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("error: node 'sm' (Softmax) cannot go from opset 13 to 12")
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["softmax13.onnx"]


def test_not_an_onnx_file(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.onnx"
    bogus.write_bytes(b"\x00\xffnot a model")
    result = _run(bogus, "--to-opset", 12, "-o", tmp_path / "o.onnx")
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {bogus} is not a readable ONNX model")
    assert "Traceback" not in result.output
