"""``zoo-validate``: a thin command over :func:`zooforge.artifacts.validation.parity.validate_path`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from zooforge.artifacts.validation.detections import DETECTION_ATOL
from zooforge.artifacts.validation.parity import SetReport, Tolerance, ValidationReport, validate_path
from zooforge.artifacts.validation.quantized import DEFAULT_FALLBACK, DEFAULT_STEPS, QuantizedRule
from zooforge.converters.cli import FiniteFloat, run_reporting_errors, zoo_command
from zooforge.converters.errors import InputFileError
from zooforge.converters.fileio import atomic_write_bytes
from zooforge.versioning.runtime import RUNTIMES


def _line(s: SetReport) -> str:
    status = "PASS" if s.passed else "FAIL"
    head = f"{status}  {s.model} / {s.test_set}  {s.runtime} (opset {s.opset})"
    if s.error is not None:
        return f"{head}  error"
    worst = s.worst()
    if worst is None:
        return head
    return (f"{head}  worst {worst.name!r}: max abs {worst.max_abs:.3g}, max rel {worst.max_rel:.3g}, "
            f"mean abs {worst.mean_abs:.3g}")


def _print_report(report: ValidationReport, quiet: bool) -> None:
    if not quiet:
        for s in report.sets:
            click.echo(_line(s))
    for warning in report.warnings:
        if not quiet:
            click.echo(f"warning: {warning}", err=True)
    failures = report.failures()
    if failures:
        click.echo(f"FAILED: {len(failures)} failure(s):")
        for failure in failures:
            click.echo(f"  {failure}")
    elif not quiet:
        tol = report.tolerance
        rule = "" if report.quantized is None else f"; {report.quantized.describe()}"
        detections = sorted({o.name for s in report.sets for o in s.outputs  # strict reports whose atol was raised
                             if o.rule == "strict" and o.atol > tol.for_output(o.name).atol})
        if detections:
            rule += (f"; detection rows ({', '.join(detections)}) matched row by row at atol="
                     f"{max(tol.atol, DETECTION_ATOL):g}")
        click.echo(f"passed: {len(report.sets)} model/test set/runtime run(s) at rtol={tol.rtol:g}, atol={tol.atol:g}"
                   f"{rule}")


@zoo_command(
    examples=[
        "zoo-validate release/",
        "zoo-validate bvlc_alexnet-7.tar.gz --runtime onnxruntime --json report.json",
        "zoo-validate test_bvlc_alexnet/ --rtol 1e-3 --atol 1e-3",
    ],
    exit_codes={0: "passed: every output of every test set, on every runtime",
                1: "failed: each failure named as MODEL / TEST SET / OUTPUT: reason",
                2: "PATH or an option cannot be used: one \"error:\" line on stderr"},
)
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--rtol", type=FiniteFloat(), default=1e-3, show_default=True,
              help="Relative tolerance: an element passes when |got - expected| <= atol + rtol * |expected|.")
@click.option("--atol", type=FiniteFloat(), default=1e-7, show_default=True,
              help="Absolute tolerance (see --rtol). NaN and infinities never match, expected or produced.")
@click.option("--quantized-steps", type=FiniteFloat(), default=DEFAULT_STEPS, show_default=True,
              help="Quantized variants (int8 QOperator and QDQ, known by their lineage or operators) pass "
                   "when each output is within this many output quantization steps of the test data "
                   "(|got - expected| <= (steps + 1/64) x scale for a dequantized output; for a Softmax of "
                   "dequantized logits each probability within a factor exp(2 x steps x scale)) and every "
                   "classifier output keeps its top-1 class: a rule that holds across CPUs, whose int8 "
                   "kernels differ. fp32 variants keep --rtol/--atol.")
@click.option("--quantized-fallback", type=FiniteFloat(), default=DEFAULT_FALLBACK, show_default=True,
              help="For a quantized output whose scale cannot be found: |got - expected| <= this x max|expected|.")
@click.option("--strict-quantized", is_flag=True,
              help="Judge quantized variants by --rtol/--atol too (a check on the CPU that made the data).")
@click.option("--runtime", "runtimes", multiple=True, type=click.Choice(RUNTIMES),
              help="Run only this runtime (repeatable). Default: every runtime the model's opset allows: "
                   "onnxruntime and the reference evaluator from opset 7; below it the reference evaluator "
                   "with zooforge's legacy kernels and onnxruntime-lifted (onnxruntime on the model lifted "
                   "in memory to opset 7 by zooforge's converter).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Also write the full report (per-output max abs/rel and mean abs error, worst element "
                   "index, and the figures needed to re-threshold it later) as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="Print only failures.")
@run_reporting_errors
def main(path: Path, rtol: float, atol: float, quantized_steps: float, quantized_fallback: float,
         strict_quantized: bool, runtimes: tuple[str, ...], json_path: Path | None, quiet: bool) -> None:
    """Run released ONNX models on their test data and compare every output.

    PATH is a model folder (model.onnx, or any single NAME.onnx, beside test_data_set_N/ folders
    of input_K.pb and output_K.pb; two .onnx files there are refused), a .tar.gz/.tgz holding one
    such folder (extracted safely into a temporary folder), or a release folder: every tarball
    and model sub-folder in it is validated, a standalone NAME.onnx must equal the model in
    NAME.tar.gz, and a manifest.json's sha256
    sums must match. Output names, dtypes and shapes must match exactly; values within the
    tolerances. Test sets whose tensors have no names (pre-2019 data) are mapped to the graph
    by position, with a warning. Quantized variants are judged by the cross-CPU rule of
    --quantized-steps, fp32 ones by --rtol/--atol.
    """
    rule = None if strict_quantized else QuantizedRule(quantized_steps, quantized_fallback)
    report = validate_path(path, Tolerance(rtol, atol), runtimes or None, rule)
    if json_path is not None:
        try:
            atomic_write_bytes(json_path, report.to_json().encode())
        except OSError as exc:
            raise InputFileError(f"cannot write the report {json_path}: {exc.strerror or exc}") from None
    _print_report(report, quiet)
    sys.exit(0 if report.passed else 1)


if __name__ == "__main__":
    main()
