"""Every zoo-* command's --help: its examples survive a narrow terminal one command a line (click's
``\\b`` blocks) and parse as the command's own options; its "Exit status" lists exactly the codes the
command has; and each documented code is what the command exits with on an input that calls for it:
0 on real LeNet work, 1 where a check fails (zoo-validate, zoo-verify, zoo-lineage), 2 on a missing
input, 128 + N for SIGINT, SIGTERM and SIGHUP delivered to a real process."""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import click
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from conftest import build_lenet_release, shared_work_scope

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
SIGNALS = {128 + int(signal.SIGINT): "SIGINT", 128 + int(signal.SIGTERM): "SIGTERM",
           128 + int(signal.SIGHUP): "SIGHUP"}  # the shell's convention, 128 + the signal's number
CHECKS_FAIL_WITH_1 = {"zoo-validate", "zoo-verify", "zoo-lineage"}
LENET = Path("caffe") / "trained" / "lenet_mnist_v2"
BACKEND = Path("onnx") / "simple" / "test_single_relu_model"  # onnx's own test data, no zooforge lineage


def command(name: str) -> click.Command:
    module, _, attr = SCRIPTS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def narrow_help(name: str) -> str:
    result = CliRunner().invoke(command(name), ["--help"], prog_name=name, terminal_width=60)
    assert result.exit_code == 0, result.output
    return result.output


def declared_examples(cmd: click.Command) -> list[str]:
    """The lines of the epilog's first ``\\b`` block, as the command declares them (before click)."""
    block = cmd.epilog.split("\b\n", 1)[1].split("\n\n", 1)[0]
    return [line.strip() for line in block.splitlines()]


def test_the_commands_are_the_seven() -> None:
    assert sorted(SCRIPTS) == ["zoo-convert", "zoo-eval", "zoo-lineage", "zoo-package", "zoo-quantize",
                               "zoo-validate", "zoo-verify"]


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_examples_stay_whole_lines_at_60_columns(name: str) -> None:
    cmd = command(name)
    examples = declared_examples(cmd)
    assert len(examples) >= 2 and all(e.startswith(f"{name}") for e in examples), examples
    assert any(len(e) + 4 > 60 for e in examples)  # some would be re-wrapped if click were let to
    lines = [line.strip() for line in narrow_help(name).splitlines()]
    section = lines[lines.index("Examples:") + 1: lines.index("Exit status:")]
    assert [line for line in section if line] == examples


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_examples_use_only_the_commands_own_arguments(name: str) -> None:
    cmd = command(name)
    for example in declared_examples(cmd):
        words = shlex.split(example, comments=True)
        assert words[0] == name
        cmd.make_context(name, words[1:], resilient_parsing=False).close()  # a UsageError fails here


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_exit_status_lists_exactly_the_commands_codes(name: str) -> None:
    lines = narrow_help(name).splitlines()
    start = [line.strip() for line in lines].index("Exit status:")
    documented = {}
    for line in lines[start + 1:]:
        if match := re.fullmatch(r"\s+(\d+)\s{2,}(\S.*)", line):
            documented[int(match.group(1))] = match.group(2)
    expected = {0, 2, *SIGNALS} | ({1} if name in CHECKS_FAIL_WITH_1 else set())
    assert set(documented) == expected, documented
    for code, signame in SIGNALS.items():
        assert signame in documented[code] and f"128 + {code - 128}" in documented[code]


# ------------------------------------------------------------------ each documented code is produced


@pytest.fixture(scope=shared_work_scope)
def lenet_release(shared: Path, tmp_path_factory) -> Path:
    return build_lenet_release(shared, tmp_path_factory.mktemp("codes") / "release")


def _cases(shared: Path, release: Path, tmp: Path) -> dict[str, dict[int, list[str]]]:
    """Per command, per exit code, the arguments that should produce it."""
    folder = shared / LENET
    prototxt, weights = str(folder / "lenet.prototxt"), str(folder / "lenet_iter_10000.caffemodel")
    model = str(release / "lenet-12.onnx")
    mnist = str(shared / "data" / "mnist_t10k")
    missing = str(tmp / "missing.onnx")
    changed = tmp / "changed"
    shutil.copytree(release, changed)
    (changed / "README.md").write_text("edited after the build\n")
    failing = tmp / "failing"
    shutil.copytree(shared / BACKEND, failing)
    for path in [failing, *failing.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    output = failing / "test_data_set_0" / "output_0.pb"
    tensor = onnx.load_tensor_from_string(output.read_bytes())
    wrong = numpy_helper.to_array(tensor) + 1.0
    output.write_bytes(numpy_helper.from_array(wrong, tensor.name).SerializeToString())
    return {
        "zoo-convert": {0: [prototxt, weights, "-o", str(tmp / "lenet.onnx")],
                        2: [str(tmp / "missing.prototxt"), weights, "-o", str(tmp / "x.onnx")]},
        "zoo-package": {0: [prototxt, weights, "--name", "lenet", "--opsets", "12", "--quantize", "none",
                            "--test-sets", "1", "--out", str(tmp / "built"), "-q"],
                        2: [str(tmp / "missing.prototxt"), weights, "--out", str(tmp / "never")]},
        "zoo-validate": {0: [str(release)], 1: [str(failing)], 2: [missing]},
        "zoo-verify": {0: [str(release)], 1: [str(changed)], 2: [missing]},
        "zoo-quantize": {0: [model, "--format", "int8", "--samples", "4", "--preprocess", "mnist",
                             "-o", str(tmp / "int8.onnx")],
                         2: [missing, "--format", "int8", "-o", str(tmp / "y.onnx")]},
        "zoo-eval": {0: [model, "--dataset", mnist, "--preprocess", "mnist", "--limit", "8", "-q"],
                     2: [missing, "--dataset", mnist, "--preprocess", "mnist"]},
        "zoo-lineage": {0: [model], 1: [str(shared / BACKEND / "model.onnx")], 2: [missing]},
    }


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_each_documented_code_below_128_is_produced(name: str, shared: Path, lenet_release: Path,
                                                    tmp_path: Path) -> None:
    cases = _cases(shared, lenet_release, tmp_path)[name]
    assert set(cases) == {0, 2} | ({1} if name in CHECKS_FAIL_WITH_1 else set())
    for code, args in cases.items():
        result = CliRunner().invoke(command(name), args, prog_name=name)
        assert result.exit_code == code, (name, code, result.output)
        assert "Traceback" not in result.output
        if code == 2:
            assert result.output.strip().splitlines()[-1].startswith("error: "), result.output
    assert not (tmp_path / "never").exists()


def test_usage_errors_exit_2_for_every_command() -> None:
    for name in sorted(SCRIPTS):
        result = CliRunner().invoke(command(name), ["--no-such-option"], prog_name=name)
        assert result.exit_code == 2, (name, result.output)
        assert result.output.startswith("error: "), result.output


# The step each command hands its work to, replaced in a real process by one that signals that process.
WORK = {
    "zoo-convert": ("zooforge.converters.cli", "api", "convert_source"),
    "zoo-package": ("zooforge.artifacts.release.package_cli", None, "build_release"),
    "zoo-validate": ("zooforge.artifacts.validation.validate_cli", None, "validate_path"),
    "zoo-verify": ("zooforge.artifacts.provenance.verify_cli", None, "verify_release"),
    "zoo-quantize": ("zooforge.artifacts.quantization.quantize_cli", None, "quantize_model"),
    "zoo-eval": ("zooforge.artifacts.quantization.eval_cli", None, "evaluate"),
    "zoo-lineage": ("zooforge.artifacts.provenance.lineage_cli", None, "trace"),
}

SIGNAL_RUNNER = r"""
import importlib, json, os, signal, sys, time
module_name, holder, attr, prog, *args = sys.argv[1:]
module = importlib.import_module(module_name)
target = getattr(module, holder) if holder else module
codes = []
for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    # A user's process: Ctrl-C raises KeyboardInterrupt, SIGTERM and SIGHUP have their default action.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    def work(*a, _signum=signum, **k):
        os.kill(os.getpid(), _signum)
        time.sleep(10)
        raise AssertionError("the signal did not interrupt the work")
    setattr(target, attr, work)
    try:
        module.main(list(args), prog_name=prog)
        codes.append(0)
    except SystemExit as exc:
        codes.append(exc.code)
print(json.dumps(codes))
"""


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_signals_exit_128_plus_their_number(name: str, shared: Path, lenet_release: Path,
                                            tmp_path: Path) -> None:
    module, holder, attr = WORK[name]
    args = _cases(shared, lenet_release, tmp_path)[name][0]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO.parent), str(REPO),
                                                                      os.environ.get("PYTHONPATH")]))}
    run = subprocess.run([sys.executable, "-c", SIGNAL_RUNNER, module, holder or "", attr, name, *args],
                         capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.strip().splitlines()[-1]) == [130, 143, 129], run.stderr
    for signame in ("SIGINT", "SIGTERM", "SIGHUP"):
        assert f"error: interrupted ({signame})" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt(), "SIGTERM"])
def test_a_signal_while_options_are_parsed_exits_128_plus_n(monkeypatch, interrupt) -> None:
    """Before the command's code runs, click turns the interrupt into Abort; it still exits 128 + N."""
    from zooforge.converters import cli
    from zooforge.converters.interrupts import Interrupted

    raised = interrupt if isinstance(interrupt, BaseException) else Interrupted(signal.SIGTERM)

    def convert(self, value, param, ctx):  # noqa: ANN001, ANN202
        raise raised

    monkeypatch.setattr(cli.FiniteFloat, "convert", convert)
    result = CliRunner().invoke(command("zoo-validate"), ["x", "--rtol", "1"], prog_name="zoo-validate")
    expected = 130 if isinstance(interrupt, BaseException) else 143
    assert result.exit_code == expected, result.output
    assert "error: interrupted" in result.output
