"""Which kind of source model a set of arguments names, shared by the commands and the front door."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from zooforge.converters.errors import ZooforgeError

__all__ = ["DEFAULT_WEIGHTS_SEED", "SourceArgumentsError", "SourceSpec", "SyntheticWeights", "source_spec"]

DEFAULT_WEIGHTS_SEED = 0  # --synthetic-weights without --weights-seed
DEFAULT_SYNTHETIC_RANGE = (-1.0, 1.0)  # the inputs synthetic weights are scaled for, unless told


class SourceArgumentsError(ZooforgeError):
    """The source arguments name no model, or more than one kind of model."""


@dataclass(frozen=True)
class SyntheticWeights:
    """Seeded synthetic weights for a prototxt: the seed, and the range of the inputs they are
    scaled for (zoo-package's --input-range; [-1, 1] otherwise)."""

    seed: int = DEFAULT_WEIGHTS_SEED
    input_range: tuple[float, float] = DEFAULT_SYNTHETIC_RANGE


@dataclass(frozen=True)
class SourceSpec:
    """Which kind of model the positional arguments and source options name."""

    kind: str  # "builtin", "netdef", "onnx", "caffe" or "synthetic" (a prototxt with synthetic weights)
    model: Path | None = None
    weights: Path | None = None
    builtin: str | None = None
    init_net: Path | None = None
    value_info: Path | None = None
    synthetic: SyntheticWeights | None = None


def source_spec(model: Path | None, weights: Path | None, builtin: str | None, init_net: Path | None,
                value_info: Path | None, default_builtin: str | None = None, *, synthetic_weights: bool = False,
                weights_seed: int | None = None,
                input_range: tuple[float, float] | None = None) -> SourceSpec:
    """Check the source arguments' combination and name the kind of source they describe.

    ``synthetic_weights`` asks for seeded synthetic weights (seed ``weights_seed``, default
    ``DEFAULT_WEIGHTS_SEED``, scaled for inputs in ``input_range``) for a prototxt MODEL given
    without WEIGHTS; ``weights_seed`` without it, or with any other kind of source, is refused.
    """
    model = None if model is None else Path(model)
    weights = None if weights is None else Path(weights)
    if synthetic_weights or weights_seed is not None:
        return _synthetic_spec(model, weights, builtin, init_net, synthetic_weights, weights_seed, input_range)
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
        raise SourceArgumentsError("give MODEL and WEIGHTS (a .prototxt and its .caffemodel), a .prototxt MODEL "
                                   "with --synthetic-weights, MODEL with --init-net, an .onnx MODEL, or --builtin NAME")
    return SourceSpec("caffe", model=model, weights=weights)


def _synthetic_spec(model: Path | None, weights: Path | None, builtin: str | None, init_net: Path | None,
                    synthetic_weights: bool, weights_seed: int | None,
                    input_range: tuple[float, float] | None) -> SourceSpec:
    """The prototxt source with synthetic weights, or the sentence saying why the arguments are not one."""
    if not synthetic_weights:
        raise SourceArgumentsError("--weights-seed seeds synthetic weights: give it with --synthetic-weights")
    if isinstance(weights_seed, bool) or not (weights_seed is None or isinstance(weights_seed, int)) or \
            (weights_seed is not None and weights_seed < 0):
        raise SourceArgumentsError(f"--weights-seed {weights_seed!r} is not a whole number of at least 0")
    if builtin or (model is None and init_net is None):
        raise SourceArgumentsError("--synthetic-weights needs a .prototxt MODEL (the built-in models carry "
                                   "synthetic weights of their own)")
    if init_net is not None or model.suffix == ".onnx":
        raise SourceArgumentsError(f"--synthetic-weights applies to a Caffe .prototxt MODEL, not "
                                   f"{'a NetDef pair' if init_net is not None else 'an ONNX model'} ({model}), "
                                   "whose weights it holds")
    if weights is not None:
        raise SourceArgumentsError(f"--synthetic-weights makes the weights of {model}: give no WEIGHTS "
                                   f"({weights})")
    seed = DEFAULT_WEIGHTS_SEED if weights_seed is None else weights_seed
    return SourceSpec("synthetic", model=model,
                      synthetic=SyntheticWeights(seed, tuple(input_range or DEFAULT_SYNTHETIC_RANGE)))
