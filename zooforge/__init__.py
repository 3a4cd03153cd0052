"""zooforge: Caffe -> Caffe2 NetDef -> ONNX conversion, model-zoo releases and their parity checks.

The front door, one call per command::

    import zooforge

    zooforge.convert("deploy.prototxt", "bvlc_alexnet.caffemodel", output="alexnet.onnx", to_opset=12)
    summary = zooforge.package(out="release")          # the built-in AlexNet's release
    report = zooforge.validate("release")
    assert report.passed

Every refusal raises :class:`ZooforgeError` (one sentence naming the file, layer or node at fault).
The subpackages hold the rest: :mod:`zooforge.converters` (Caffe, Caffe2 and ONNX stages),
:mod:`zooforge.versioning` (opsets) and :mod:`zooforge.artifacts` (release building, validation,
quantization and provenance). Importing this module is cheap; the stages load on first use.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import import_module, metadata
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from zooforge.artifacts.release.build import ReleaseOptions, ReleaseSummary
    from zooforge.artifacts.validation.parity import Tolerance, ValidationReport
    from zooforge.converters.api import Conversion, ConvertOptions, OnnxConversion
    from zooforge.converters.errors import ZooforgeError

# Installed, zooforge.converters (and versioning, artifacts) sit inside this folder. In a source
# checkout they are this folder's siblings, the repository's top-level folders: found through the
# package's search path, so the checkout imports as it installs, with or without an editable install.
if not (_here := Path(__file__).resolve().parent).joinpath("converters").is_dir() and \
        _here.parent.joinpath("converters", "__init__.py").is_file():
    __path__.append(str(_here.parent))

try:
    __version__ = metadata.version("zooforge")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"

__all__ = [
    "Conversion", "ConvertOptions", "OnnxConversion", "ReleaseOptions", "ReleaseSummary", "Tolerance",
    "ValidationReport", "ZooforgeError", "__version__", "convert", "package", "validate",
]

StrPath = str | PathLike[str]
InputShapes = Sequence[int] | dict[str, Sequence[int]] | None

# Names this module re-exports, loaded on first use: name -> defining module.
_LAZY = {
    "Conversion": "zooforge.converters.api", "ConvertOptions": "zooforge.converters.api",
    "OnnxConversion": "zooforge.converters.api", "ZooforgeError": "zooforge.converters.errors",
    "ReleaseOptions": "zooforge.artifacts.release.build", "ReleaseSummary": "zooforge.artifacts.release.build",
    "Tolerance": "zooforge.artifacts.validation.parity", "ValidationReport": "zooforge.artifacts.validation.parity",
}


def __getattr__(name: str) -> Any:  # noqa: ANN401 - PEP 562 lazy re-exports
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'zooforge' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def _shapes(input_shapes: InputShapes) -> tuple[int, ...] | dict[str, tuple[int, ...]] | None:
    if input_shapes is None:
        return None
    if isinstance(input_shapes, dict):
        return {name: tuple(int(d) for d in shape) for name, shape in input_shapes.items()}
    return tuple(int(d) for d in input_shapes)


def convert(model: StrPath | None = None, weights: StrPath | None = None, *, output: StrPath | None = None,
            to_opset: int = 12, builtin: str | None = None, init_net: StrPath | None = None,
            value_info: StrPath | None = None, names: Literal["zoo", "caffe"] = "zoo",
            input_shapes: InputShapes = None, dynamic_batch: bool = False, compat: Literal["zoo"] | None = None,
            allow_non_finite: bool = False, optimize: bool = False,
            emit_caffe2: StrPath | None = None, synthetic_weights: bool = False,
            weights_seed: int | None = None) -> Conversion | OnnxConversion:
    """Convert a model to ONNX at ``to_opset``, as ``zoo-convert`` does; write it if ``output`` is given.

    The source is a Caffe ``model`` (deploy .prototxt) with its ``weights`` (.caffemodel or
    .caffemodel.h5), a Caffe2 predict_net ``model`` with ``init_net`` (and ``value_info``), an .onnx
    ``model`` to move to another opset, or a ``builtin`` model ("alexnet", synthetic weights).
    ``synthetic_weights=True`` gives a .prototxt ``model`` (no ``weights``) seeded synthetic weights
    (``weights_seed``, default 0; scaled for inputs in [-1, 1]), labelled synthetic in the model.
    ``input_shapes`` is one shape (N, C, H, W) or a mapping of input name to shape; ``optimize`` runs
    onnxoptimizer's inference-exact passes (opset 7 or newer), parity-checked. Returns the
    conversion, its model in memory (``.model``, ``.onnx_model``); raises :class:`ZooforgeError`.
    """
    from zooforge.converters import api
    from zooforge.converters.sources import source_spec
    from zooforge.versioning import opset_info

    opset_info(to_opset)  # refuse an unknown opset before any work
    options = api.ConvertOptions(to_opset, names, _shapes(input_shapes), dynamic_batch, compat, allow_non_finite,
                                 optimize)
    spec = source_spec(model, weights, builtin, init_net, value_info, synthetic_weights=synthetic_weights,
                       weights_seed=weights_seed)
    result = api.convert_source(spec, options)
    if output is not None:
        result.save(output, emit_caffe2)
    elif emit_caffe2 is not None:
        raise api.InputFileError("emit_caffe2 needs an output")
    return result


def package(model: StrPath | None = None, weights: StrPath | None = None, *, out: StrPath = "release",
            builtin: str | None = None, init_net: StrPath | None = None, value_info: StrPath | None = None,
            input_shapes: InputShapes = None, compat: Literal["zoo"] | None = None, allow_non_finite: bool = False,
            synthetic_weights: bool = False, weights_seed: int | None = None,
            options: ReleaseOptions | None = None, **settings: Any) -> ReleaseSummary:  # noqa: ANN401
    """Build a complete release into ``out``, as ``zoo-package`` does (the built-in AlexNet by default).

    The source is named as for :func:`convert`. ``options`` (a :class:`ReleaseOptions`), or its
    fields as keywords (``name``, ``opsets``, ``quantize``, ``test_sets``, ``optimize``, ...), set the
    release; the test inputs' range defaults to the source's (Caffe-range pixels for the built-in
    AlexNet). ``synthetic_weights`` and ``weights_seed`` are :func:`convert`'s, the weights scaled for
    the test inputs' range (the ``recipe``'s, default [-1, 1]). ``out`` is replaced only once the new release is complete and every variant matches
    its source. Returns the summary (files written, parity figures); raises :class:`ZooforgeError`.
    """
    from dataclasses import replace

    from zooforge.artifacts.release.build import ReleaseOptions, build_release
    from zooforge.artifacts.release.source import release_source
    from zooforge.artifacts.release.testdata import InputRecipe
    from zooforge.converters import api
    from zooforge.converters.sources import source_spec

    convert_options = api.ConvertOptions(names="zoo", input_shapes=_shapes(input_shapes), compat=compat,
                                         allow_non_finite=allow_non_finite)
    recipe = settings.get("recipe", options.recipe if options is not None else None)
    spec = source_spec(model, weights, builtin, init_net, value_info, default_builtin="alexnet",
                       synthetic_weights=synthetic_weights, weights_seed=weights_seed,
                       input_range=None if recipe is None else (recipe.low, recipe.high))
    source = release_source(spec, convert_options)
    if options is None:
        settings.setdefault("recipe", InputRecipe(0, *source.input_range))
        options = ReleaseOptions(**settings)
    elif settings:
        options = replace(options, **settings)
    return build_release(source, options, Path(out))


def validate(path: StrPath, *, rtol: float = 1e-3, atol: float = 1e-7,
             runtimes: Sequence[str] | None = None) -> ValidationReport:
    """Check a model folder, a tarball or a whole release against its test data, as ``zoo-validate`` does.

    Every output of every test set is compared on every runtime the model's opset allows (or only
    ``runtimes``: "onnxruntime", "reference", "onnxruntime-lifted"), passing where
    ``|got - expected| <= atol + rtol * |expected|``; NaN never matches. Returns the report
    (``.passed``, ``.failures()``); raises :class:`ZooforgeError` when ``path`` cannot be used.
    """
    from zooforge.artifacts.validation.parity import Tolerance, validate_path

    return validate_path(path, Tolerance(rtol, atol), runtimes)
