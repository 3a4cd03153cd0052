"""``zoo-verify``: a thin command over :mod:`zooforge.artifacts.provenance.verify`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from zooforge.artifacts.provenance.verify import verify_artifact, verify_release
from zooforge.converters.cli import run_reporting_errors, zoo_command


@zoo_command(
    examples=[
        "zoo-verify release/",
        "zoo-verify release/ --public-key zooforge.pub",
        "zoo-verify downloads/bvlcalexnet-12-int8.tar.gz --manifest release/manifest.json",
    ],
    exit_codes={0: "verified",
                1: "not verified: a line per problem (changed: X, added: Y, removed: Z, renamed? X -> Y, ...)",
                2: "an argument cannot be used: one \"error:\" line on stderr"},
)
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--public-key", type=click.Path(path_type=Path), metavar="PEM",
              help="EC public key (PEM) to check release.sig with (needs zooforge[sign]).")
@click.option("--manifest", type=click.Path(path_type=Path), metavar="JSON",
              help="Check the single .onnx or .tar.gz PATH against this release manifest.json.")
@click.option("-q", "--quiet", is_flag=True, help="Print problems only (no notes, no 'verified').")
@run_reporting_errors
def main(path: Path, public_key: Path | None, manifest: Path | None, quiet: bool) -> None:
    """Check a release folder against its SHA256SUMS, manifest.json, provenance and signature,
    or one downloaded model or archive (PATH) against the release's manifest.json."""
    if manifest is not None:
        if public_key is not None:
            raise click.UsageError("--public-key checks a release folder; it does not go with --manifest")
        report = verify_artifact(path, manifest)
    else:
        report = verify_release(path, public_key)
    if not quiet:
        for note in report.notes:
            click.echo(f"note: {note}", err=True)
    if report.verified:
        if not quiet:
            click.echo("verified")
        return
    for problem in report.problems:
        click.echo(problem)
    sys.exit(1)


if __name__ == "__main__":
    main()
