"""Which kind of source model a set of arguments names, shared by the commands and the front door."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from zooforge.converters.errors import ZooforgeError

__all__ = ["SourceArgumentsError", "SourceSpec", "source_spec"]


class SourceArgumentsError(ZooforgeError):
    """The source arguments name no model, or more than one kind of model."""


@dataclass(frozen=True)
class SourceSpec:
    """Which kind of model the positional arguments and source options name."""

    kind: str  # "builtin", "netdef", "onnx" or "caffe"
    model: Path | None = None
    weights: Path | None = None
    builtin: str | None = None
    init_net: Path | None = None
    value_info: Path | None = None


def source_spec(model: Path | None, weights: Path | None, builtin: str | None, init_net: Path | None,
                value_info: Path | None, default_builtin: str | None = None) -> SourceSpec:
    """Check the source arguments' combination and name the kind of source they describe."""
    model = None if model is None else Path(model)
    weights = None if weights is None else Path(weights)
    if builtin or (default_builtin and model is None and init_net is None):
        if model or weights or init_net:
            raise SourceArgumentsError("--builtin takes no MODEL, WEIGHTS or --init-net")
        return SourceSpec("builtin", builtin=builtin or default_builtin)
    if init_net:
        if model is None or weights is not None:
            raise SourceArgumentsError("with --init-net, give exactly one MODEL: the predict_net.pb")
        return SourceSpec("netdef", model=model, init_net=Path(init_net),
                          value_info=None if value_info is None else Path(value_info))
    if model is not None and model.suffix == ".onnx":
        if weights is not None:
            raise SourceArgumentsError("an ONNX MODEL takes no WEIGHTS")
        return SourceSpec("onnx", model=model)
    if model is None or weights is None:
        raise SourceArgumentsError("give MODEL and WEIGHTS (a .prototxt and its .caffemodel), "
                                   "MODEL with --init-net, an .onnx MODEL, or --builtin NAME")
    return SourceSpec("caffe", model=model, weights=weights)
