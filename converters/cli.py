"""``zoo-convert``: a thin command over ``zooforge.converters.api``."""

from __future__ import annotations

import math
import signal
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import click

from zooforge.converters import __version__, api, sources
from zooforge.converters.errors import ZooforgeError
from zooforge.converters.onnx.optimize import OptimizeError, check_opset
from zooforge.converters.sources import SourceSpec
from zooforge.converters.interrupts import TERMINATING, Interrupted, exit_status, raise_on_termination
from zooforge.versioning import latest_opset, opset_info
from zooforge.versioning.opsets import MIN_OPSET


MAX_INPUT_ELEMENTS = 2**31 - 1  # Caffe's and ONNX Runtime's element counts are 32-bit here


class ZooCommand(click.Command):
    """A click command whose usage errors (a bad option value, a missing argument) are one
    ``error:`` line on stderr with exit status 2, like every other refusal; ``--help`` lists the
    options as usual."""

    def main(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        kwargs["standalone_mode"] = False
        try:
            return super().main(*args, **kwargs)
        except click.ClickException as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.exceptions.Abort as exc:
            # click turns a KeyboardInterrupt (or Interrupted) raised outside the command's own code,
            # e.g. while options are parsed, into Abort: it exits as the signal's status too.
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, KeyboardInterrupt):
                click.echo(f"error: interrupted ({cause.args[0] if isinstance(cause, Interrupted) else 'SIGINT'})",
                           err=True)
                sys.exit(exit_status(cause))
            click.echo("error: aborted", err=True)
            sys.exit(2)


USAGE_ERROR = 2
EXIT_BAD_INPUT = 'bad input or usage: one "error:" line on stderr, no output changed'
SIGNAL_EXITS: dict[int, str] = {
    128 + int(signum): f"interrupted by {signal.Signals(signum).name} (128 + {int(signum)}); temporary files removed"
    for signum in sorted(TERMINATING)
}


def help_epilog(examples: Sequence[str], exit_codes: Mapping[int, str]) -> str:
    """The end of every zoo-* command's ``--help``: its examples, then its exit status.

    Both go in click ``\\b`` blocks, which click prints line by line as written instead of re-wrapping
    them to the terminal: an example stays one command on one line, ready to copy. ``exit_codes`` are
    the command's own codes (0, and 1 where a check can fail); 2 for bad input or usage (what
    :func:`run_reporting_errors` and :class:`ZooCommand` exit with) and 128 + N for SIGINT, SIGTERM
    and SIGHUP are added, as every command has them (a command may reword 2 for itself).
    """
    codes = {USAGE_ERROR: EXIT_BAD_INPUT, **SIGNAL_EXITS, **exit_codes}
    width = max(len(str(code)) for code in codes)
    lines = ["Examples:", "", "\b", *(f"  {example}" for example in examples), "",
             "Exit status:", "", "\b", *(f"  {code:<{width}}  {codes[code]}" for code in sorted(codes))]
    return "\n".join(lines)


def zoo_command(*, examples: Sequence[str], exit_codes: Mapping[int, str],
                **settings):  # noqa: ANN003, ANN201 - click.command with zooforge's defaults
    """``click.command`` as every zoo-* command is made: ZooCommand, ``-h``/``--help``, ``--version``,
    and an epilog (:func:`help_epilog`) of ``examples`` and ``exit_codes``."""
    if not examples or 0 not in exit_codes:
        raise ValueError("a zoo-* command's help gives examples and says what exit status 0 means")
    settings.setdefault("context_settings", {"help_option_names": ["-h", "--help"]})
    settings["epilog"] = help_epilog(examples, exit_codes)
    version = click.version_option(__version__, "--version", message="%(prog)s (zooforge) %(version)s",
                                   help="Show zooforge's version and exit.")
    return lambda function: click.command(cls=ZooCommand, **settings)(version(function))


class FiniteFloat(click.ParamType):
    """A finite float, at least ``low``."""

    name = "number"

    def __init__(self, low: float = 0.0) -> None:
        self.low = low

    def convert(self, value, param, ctx):  # noqa: ANN001, ANN201
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number) or number < self.low:
            self.fail(f"{value!r} must be a finite number of at least {self.low:g}", param, ctx)
        return number


optimize_option = click.option(
    "--optimize", is_flag=True,
    help="Run onnxoptimizer's inference-exact passes (BatchNorm and Caffe's Scale folded into Conv, no-op "
         "Identity/Dropout/Transpose/Pad removed, ...; opset 7 or newer) and keep the result only if it matches "
         "the unoptimized model; the lineage records the passes.")

allow_non_finite_option = click.option(
    "--allow-non-finite", is_flag=True,
    help="Convert weights that hold NaN or infinities (refused by default, naming the layer and blob).")


def parse_input_shapes(values: tuple[str, ...]) -> tuple[int, ...] | dict[str, tuple[int, ...]] | None:
    """``1,3,224,224`` (the only input) or ``data=1,3,224,224`` (repeatable)."""
    if not values:
        return None
    named: dict[str, tuple[int, ...]] = {}
    for value in values:
        name, _, dims = value.rpartition("=")
        try:
            shape = tuple(int(d) for d in dims.replace("x", ",").split(","))
        except ValueError:
            raise click.BadParameter(f"{value!r} is not a shape like 1,3,224,224") from None
        if any(d < 1 for d in shape):
            raise click.BadParameter(f"{value!r}: every dimension must be at least 1")
        if math.prod(shape) > MAX_INPUT_ELEMENTS:
            raise click.BadParameter(f"{value!r} has {math.prod(shape)} elements; at most {MAX_INPUT_ELEMENTS} are "
                                     "supported")
        if not name:
            if len(values) > 1:
                raise click.BadParameter("with several --input-shape, name each: data=1,3,224,224")
            return shape
        named[name] = shape
    return named


def source_options(builtin_help: str):  # noqa: ANN201 - a decorator for click commands
    """MODEL [WEIGHTS], --builtin, --init-net, --value-info: the source arguments every command shares."""
    options = [
        click.argument("model", required=False, type=click.Path(path_type=Path)),
        click.argument("weights", required=False, type=click.Path(path_type=Path)),
        click.option("--builtin", metavar="NAME", help=builtin_help),
        click.option("--init-net", type=click.Path(path_type=Path), help="Caffe2 init_net.pb (MODEL is then predict_net.pb)."),
        click.option("--value-info", type=click.Path(path_type=Path), help="Caffe2 value_info.json with the input shapes."),
    ]

    def decorate(command):  # noqa: ANN001, ANN202
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def synthetic_options(scaled_for: str):  # noqa: ANN201 - a decorator for click commands
    """--synthetic-weights and --weights-seed; ``scaled_for`` says which inputs the weights suit."""
    options = [
        click.option("--synthetic-weights", is_flag=True,
                     help="Give MODEL (a .prototxt) seeded SYNTHETIC weights instead of a WEIGHTS file: not "
                          f"trained, labelled synthetic in the model and its lineage; {scaled_for}."),
        click.option("--weights-seed", type=click.IntRange(0, 2**63 - 1), default=None, metavar="N",
                     help=f"Seed of --synthetic-weights (default {sources.DEFAULT_WEIGHTS_SEED}); the same "
                          "prototxt and seed give bit-identical weights."),
    ]

    def decorate(command):  # noqa: ANN001, ANN202
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def source_spec(model: Path | None, weights: Path | None, builtin: str | None, init_net: Path | None,
                value_info: Path | None, default_builtin: str | None = None, **synthetic) -> SourceSpec:  # noqa: ANN003
    """:func:`zooforge.converters.sources.source_spec`, its refusals as click usage errors."""
    try:
        return sources.source_spec(model, weights, builtin, init_net, value_info, default_builtin, **synthetic)
    except sources.SourceArgumentsError as exc:
        raise click.UsageError(str(exc)) from None


def run_reporting_errors(action):  # noqa: ANN001, ANN201 - a decorator for click commands
    """Turn every expected failure into one line on stderr: zooforge's input errors and the
    operating system's (a missing file, a full disk, a read-only folder, no memory) exit 2;
    SIGINT, SIGTERM and SIGHUP, after every clean-up has run, exit 128 + the signal's number."""

    def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        warnings.showwarning = _show_warning
        raise_on_termination()
        try:
            return action(*args, **kwargs)
        except ZooforgeError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            click.echo(f"error: {where}{exc.strerror or exc}", err=True)
            sys.exit(2)
        except MemoryError:
            click.echo("error: out of memory (is an input shape or a dataset far larger than intended?)", err=True)
            sys.exit(2)
        except KeyboardInterrupt as exc:
            click.echo(f"error: interrupted ({exc.args[0] if isinstance(exc, Interrupted) else 'SIGINT'}); "
                       "temporary files were removed and no output was changed", err=True)
            sys.exit(exit_status(exc))

    wrapper.__name__ = action.__name__
    wrapper.__doc__ = action.__doc__
    return wrapper


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    click.echo(f"warning: {message}", err=True)


@zoo_command(
    examples=[
        "zoo-convert deploy.prototxt bvlc_alexnet.caffemodel --to-opset 12 -o alexnet.onnx",
        "zoo-convert predict_net.pb --init-net init_net.pb --value-info value_info.json -o m.onnx",
        "zoo-convert bvlcalexnet-9.onnx --to-opset 17 -o bvlcalexnet-17.onnx",
        "zoo-convert --builtin alexnet --input-shape 1,3,224,224 -o alexnet-synthetic.onnx",
        "zoo-convert lenet.prototxt --synthetic-weights --weights-seed 7 -o lenet-synthetic.onnx",
    ],
    exit_codes={0: "converted: the model was checked and written"},
)
@source_options("Convert a model shipped with zooforge (alexnet: BVLC AlexNet architecture with seeded "
                "SYNTHETIC weights) instead of files.")
@click.option("--to-opset", "opset", type=int, default=api.DEFAULT_OPSET, show_default=True,
              help=f"ONNX opset to write, {MIN_OPSET}..{latest_opset()} with the installed onnx.")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="ONNX file to write.")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="[NAME=]N,C,H,W",
              help="Input shape; default: the prototxt's shape with batch 1. Needed for data layers.")
@click.option("--names", type=click.Choice(["zoo", "caffe"]), default="zoo", show_default=True,
              help="zoo: Caffe2 SSA names as the ONNX zoo (data_0, conv1_w_0, prob_1); caffe: plain blob names.")
@click.option("--dynamic-batch", is_flag=True, help="Make the batch dimension symbolic (N).")
@click.option("--compat", type=click.Choice(["zoo"]), default=None,
              help="zoo: reproduce the ONNX model zoo's published graph (Reshape before Gemm, Dropout masks, "
                   "and its pooling, which at 224x224 DEVIATES from Caffe: pool1/pool2 round down and pool5 is "
                   "end-padded). Default: faithful to Caffe.")
@click.option("--emit-caffe2", type=click.Path(path_type=Path), metavar="DIR",
              help="Also write the intermediate predict_net.pb, init_net.pb and value_info.json.")
@synthetic_options("scaled for inputs uniform in [-1, 1], their softmax neither uniform nor saturated")
@allow_non_finite_option
@optimize_option
@run_reporting_errors
def main(model, weights, builtin, init_net, value_info, opset, output, input_shapes, names,
         dynamic_batch, compat, emit_caffe2, synthetic_weights, weights_seed, allow_non_finite,
         optimize) -> None:  # noqa: ANN001
    """Convert a Caffe model, a Caffe2 NetDef pair, an ONNX model or a built-in model to ONNX.

    MODEL is a Caffe deploy .prototxt (then WEIGHTS is its .caffemodel or .caffemodel.h5, or
    --synthetic-weights makes seeded ones), a
    Caffe2 predict_net.pb (with --init-net), or an .onnx model to move to another opset (up or
    down, for the classic CNN operators; a node whose meaning a step cannot keep is refused by
    name). Caffe models pass through a Caffe2 NetDef. Every model is checked by onnx.checker with
    full shape inference and stamped with its opset's IR version before anything is written.
    """
    options = api.ConvertOptions(opset, names, parse_input_shapes(input_shapes), dynamic_batch, compat,
                                 allow_non_finite, optimize)
    opset_info(opset)  # reject an unknown opset before any work
    if optimize:
        check_opset(opset, str(output))
    spec = source_spec(model, weights, builtin, init_net, value_info, synthetic_weights=synthetic_weights,
                       weights_seed=weights_seed)
    try:
        result = api.convert_source(spec, options)
    except OptimizeError as exc:
        raise OptimizeError(f"{exc}; {output} was not written") from None
    result.save(output, emit_caffe2)
    for note in result.notes:
        click.echo(f"{'warning' if 'departs' in note else 'note'}: {note}", err=True)
    info = opset_info(opset)
    size = output.stat().st_size / 2**20
    click.echo(f"wrote {output} (opset {opset}, IR {info.ir_version}, {len(result.model.skeleton.graph.node)} "
               f"nodes, {size:.1f} MiB)")


if __name__ == "__main__":
    main()
