"""``zoo-lineage``: a thin command over :func:`zooforge.artifacts.provenance.lineage.trace`."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

import click

from zooforge.artifacts.provenance.lineage import render, trace
from zooforge.converters.cli import run_reporting_errors, zoo_command


@zoo_command(
    examples=[
        "zoo-lineage release/bvlcalexnet-12-int8.onnx",
        "zoo-lineage release/bvlcalexnet-12.tar.gz --full",
        "zoo-lineage downloads/bvlcalexnet-12.onnx --release release/",
    ],
    exit_codes={0: "the lineage tree was printed", 1: "FILE carries no zooforge lineage"},
)
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--release", type=click.Path(path_type=Path), metavar="DIR",
              help="The release folder holding provenance.intoto.jsonl; default: FILE's folder if it has one.")
@click.option("--full", is_flag=True, help="Print whole SHA-256 digests instead of their first 12 digits.")
@run_reporting_errors
def main(file: Path, release: Path | None, full: bool) -> None:
    """Print how FILE (an .onnx, a .tar.gz or a Caffe2 file of a zooforge release) was made: a
    tree from FILE down to its source files, with digests and the settings of each step.
    """
    found = trace(file, release)
    if found.step is not None:
        for line in render(found.name, found.sha256, found.step, full):
            click.echo(line)
        if found.lineage is not None:
            click.echo(f"lineage: {found.lineage.line}")
            if found.lineage.synthetic:
                made = found.lineage.settings.get("synthetic_weights")
                seed = f", seed {made['seed']}" if isinstance(made, Mapping) and "seed" in made else ""
                click.echo(f"weights: SYNTHETIC (seeded random parameters, not trained values{seed})")
    for warning in found.warnings:
        click.echo(f"warning: {warning}", err=True)
    if found.step is None:
        click.echo(f"{file} carries no zooforge lineage", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
