"""The library entry points behind ``zoo-convert``: one call per kind of source model."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from zooforge.converters import __version__
from zooforge.converters.caffe.loader import InputShapes, load_caffe
from zooforge.converters.caffe.net import CaffeNet
from zooforge.converters.caffe2.netdef import CAFFE2_FILES, Caffe2Model, load_caffe2, write_caffe2
from zooforge.converters.caffe2.translate import TRANSLATORS, translate
from zooforge.converters import finite
from zooforge.converters.errors import InputFileError, ZooforgeError
from zooforge.converters.safety import check_output_file, check_output_files
from zooforge.converters.caffe2.compat import zoo_compat
from zooforge.converters.onnx.frontend import Compat, ExportOptions, NameStyle, caffe2_to_onnx
from zooforge.converters.fileio import sha256_file
from zooforge.converters.lineage import SYNTHETIC_SENTENCE, Lineage, SourceFile, read_lineage, settings_dict, stamp
from zooforge.converters.onnx import optimize
from zooforge.converters.onnx.model import OnnxModel
from zooforge.converters.sources import SourceSpec, SyntheticWeights
from zooforge.versioning.convert import convert_opset, model_opset

DEFAULT_OPSET = 12
# ONNX metadata: the outputs holding detection rows (parity matches their rows, see artifacts/validation)
DETECTION_ROWS_KEY = "zooforge.detection_rows"


def detection_rows(model: onnx.ModelProto) -> list[str]:
    """The outputs an ONNX model's metadata names as detection rows (``DETECTION_ROWS_KEY``)."""
    listed = {p.key: p.value for p in model.metadata_props}.get(DETECTION_ROWS_KEY, "")
    return [name for name in listed.split(",") if name]
SYNTHETIC_NOTE = SYNTHETIC_SENTENCE


@dataclass(frozen=True)
class ConvertOptions:
    """Settings shared by every conversion."""

    opset: int = DEFAULT_OPSET
    names: NameStyle = "zoo"
    input_shapes: InputShapes = None
    dynamic_batch: bool = False
    compat: Compat = None
    allow_non_finite: bool = False  # convert weights holding NaN or infinities instead of refusing them
    optimize: bool = False  # run onnxoptimizer's exact passes (converters/onnx/optimize.py), parity-checked


@dataclass
class Conversion:
    """The products of one conversion, kept in memory until saved."""

    model: OnnxModel
    caffe2: Caffe2Model
    caffe: CaffeNet | None = None
    notes: list[str] = field(default_factory=list)
    sources: tuple[Path, ...] = ()  # the input files, which no output may replace

    @property
    def onnx_model(self) -> onnx.ModelProto:
        """The whole model as one ModelProto (builds it in memory: prefer ``model`` for large ones)."""
        return self.model.to_proto()

    @property
    def synthetic_weights(self) -> bool:
        return self.caffe2.synthetic_weights

    def save(self, output: Path, caffe2_dir: Path | None = None) -> None:
        """Write the ONNX model (and the NetDef pair); each file appears whole or not at all."""
        output = Path(output)
        check_output_file(output, self.sources)
        if caffe2_dir is not None and Path(caffe2_dir).exists() and not Path(caffe2_dir).is_dir():
            raise InputFileError(f"--emit-caffe2 {caffe2_dir} exists and is not a folder")
        if caffe2_dir is not None:
            targets = [Path(caffe2_dir) / name for name in CAFFE2_FILES]
            if any(_same_path(output, target) for target in targets):
                raise InputFileError(f"output {output} is also one of the NetDef files --emit-caffe2 writes")
            if Path(caffe2_dir).is_dir():
                check_output_files(targets, self.sources, "NetDef file")
            write_caffe2(self.caffe2, Path(caffe2_dir))
        self.model.save(output)


def read_caffe(prototxt: Path, weights: Path, options: ConvertOptions) -> CaffeNet:
    """A Caffe model from files, its weights refused if not finite (unless allowed)."""
    net = load_caffe(Path(prototxt), Path(weights), options.input_shapes, layer_types=TRANSLATORS)
    if not options.allow_non_finite:
        finite.check_caffe_layers(net.layers, str(weights))
    return net


def read_netdef(predict_net: Path, init_net: Path, value_info: Path | None, options: ConvertOptions) -> Caffe2Model:
    """A NetDef pair from files, its weights refused if not finite (unless allowed)."""
    caffe2 = load_caffe2(Path(predict_net), Path(init_net), value_info, options.input_shapes)
    if not options.allow_non_finite:
        finite.check_named(caffe2.weights, str(init_net))
    return caffe2


def read_onnx(path: Path, options: ConvertOptions) -> onnx.ModelProto:
    """An ONNX model from a file, checked at its declared opset, its weights refused if not finite."""
    model = load_onnx(path)
    if not options.allow_non_finite:
        finite.check_onnx(model, str(path))
    return model


def convert_caffe(prototxt: Path, weights: Path, options: ConvertOptions = ConvertOptions()) -> Conversion:
    """Caffe deploy prototxt + weights (``.caffemodel`` or ``.caffemodel.h5``) -> ONNX."""
    net = read_caffe(prototxt, weights, options)
    result = convert_caffe_net(net, options)
    name = net.name or Path(prototxt).stem
    _stamp(result.model.skeleton, f"Caffe {name} ==> Caffe2 {name} ==> ONNX {name}",
           {"prototxt": Path(prototxt), "weights": Path(weights)}, options, net.synthetic_weights)
    result.sources = (Path(prototxt), Path(weights))
    return _optimized(result, options)


def convert_builtin(name: str, options: ConvertOptions = ConvertOptions()) -> Conversion:
    """A model that ships with zooforge (architecture + seeded synthetic weights) -> ONNX."""
    from zooforge.converters.builtin import builtin_model, builtin_settings, load_builtin

    net = load_builtin(name, options.input_shapes)
    result = convert_caffe_net(net, options)
    _stamp(result.model.skeleton, f"Caffe {net.name} ==> Caffe2 {net.name} ==> ONNX {net.name}",
           {"prototxt": builtin_model(name).prototxt}, options, True, builtin_settings(name))
    return _optimized(result, options)


def read_synthetic(prototxt: Path, synthetic: SyntheticWeights, options: ConvertOptions) -> CaffeNet:
    """A prototxt with seeded synthetic weights (``zooforge.converters.builtin.load_synthetic``)."""
    from zooforge.converters.builtin import load_synthetic

    return load_synthetic(Path(prototxt), synthetic, options.input_shapes)


def synthetic_settings(synthetic: SyntheticWeights) -> dict[str, float | int]:
    """The lineage's ``synthetic_weights`` setting for ``synthetic``."""
    from zooforge.converters.builtin import synthetic_scale
    from zooforge.converters.builtin import synthetic_settings as settings

    return settings(synthetic.seed, synthetic_scale(synthetic.input_range))


def convert_synthetic(prototxt: Path, synthetic: SyntheticWeights = SyntheticWeights(),
                      options: ConvertOptions = ConvertOptions()) -> Conversion:
    """A Caffe deploy prototxt with seeded synthetic weights -> ONNX, labelled synthetic."""
    net = read_synthetic(prototxt, synthetic, options)
    result = convert_caffe_net(net, options)
    name = net.name or Path(prototxt).stem
    _stamp(result.model.skeleton, f"Caffe {name} ==> Caffe2 {name} ==> ONNX {name}",
           {"prototxt": Path(prototxt)}, options, True, synthetic_settings(synthetic))
    result.sources = (Path(prototxt),)
    return _optimized(result, options)


def convert_caffe_net(net: CaffeNet, options: ConvertOptions = ConvertOptions()) -> Conversion:
    result = export_netdef(translate(net), options)
    result.caffe = net
    return result


def convert_netdef(
    predict_net: Path,
    init_net: Path,
    value_info: Path | None = None,
    options: ConvertOptions = ConvertOptions(),
) -> Conversion:
    """Caffe2 NetDef pair (+ ``value_info.json`` or explicit input shapes) -> ONNX."""
    caffe2 = read_netdef(predict_net, init_net, value_info, options)
    result = export_netdef(caffe2, options)
    name = caffe2.predict_net.name or Path(predict_net).parent.name
    files = {"predict_net": Path(predict_net), "init_net": Path(init_net)}
    if value_info is not None:
        files["value_info"] = Path(value_info)
    _stamp(result.model.skeleton, f"Caffe2 {name} ==> ONNX {name}", files, options, caffe2.synthetic_weights)
    result.sources = tuple(files.values())
    return _optimized(result, options)


@dataclass
class OnnxConversion:
    """An existing ONNX model moved to another opset."""

    model: OnnxModel
    source_opset: int
    notes: list[str] = field(default_factory=list)
    sources: tuple[Path, ...] = ()

    @property
    def onnx_model(self) -> onnx.ModelProto:
        return self.model.to_proto()

    def save(self, output: Path, caffe2_dir: Path | None = None) -> None:
        if caffe2_dir is not None:
            raise InputFileError("--emit-caffe2 needs a Caffe or NetDef source, not an ONNX model")
        check_output_file(Path(output), self.sources)
        self.model.save(Path(output))


def load_onnx(path: Path) -> onnx.ModelProto:
    """Read an ONNX model and check it against the schemas of the opset it declares; a missing,
    unreadable or invalid file is one clear error."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"ONNX model {path} does not exist")
    try:
        model = onnx.load(str(path))
    except (onnx.onnx_cpp2py_export.checker.ValidationError, DecodeError, ValueError, OSError) as exc:
        raise InputFileError(f"{path} is not a readable ONNX model: {' '.join(str(exc).split())}") from None
    check_declared(model, str(path))
    return model


def check_declared(model: onnx.ModelProto, source: str) -> None:
    """The model's IR version and opset are ones the installed onnx knows, and onnx.checker
    accepts it at that opset (an opset-11 Pad declared at opset 7 does not pass)."""
    known_opset, known_ir = onnx.defs.onnx_opset_version(), onnx.IR_VERSION
    if not 1 <= model.ir_version <= known_ir:
        raise InputFileError(f"{source} declares IR version {model.ir_version}; the installed onnx "
                             f"{onnx.__version__} knows IR versions 1 to {known_ir}")
    try:
        opset = model_opset(model)
    except ZooforgeError:
        raise InputFileError(f"{source} imports no default-domain (ai.onnx) opset") from None
    if not 1 <= opset <= known_opset:
        raise InputFileError(f"{source} declares opset {opset}; the installed onnx {onnx.__version__} knows "
                             f"opsets 1 to {known_opset}")
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError) as exc:
        reason = " ".join(str(exc).split("==>")[0].split())
        raise InputFileError(f"{source} is not a valid opset-{opset} ONNX model (onnx.checker: {reason})") from None


def convert_onnx(path: Path, options: ConvertOptions = ConvertOptions()) -> OnnxConversion:
    """An ONNX model of the classic CNN operator set -> the same model at ``options.opset``."""
    if options.input_shapes is not None or options.dynamic_batch or options.names != "zoo" or options.compat:
        raise InputFileError(
            "--input-shape, --dynamic-batch, --names and --compat apply to Caffe and NetDef sources only"
        )
    source = read_onnx(path, options)
    converted = convert_opset(source, options.opset)
    previous = read_lineage(source)
    name = source.graph.name or Path(path).stem
    line = f"{previous.line if previous else f'ONNX {name} (opset {model_opset(source)})'} ==> ONNX {name}"
    made = previous.settings.get("synthetic_weights") if previous else None  # the seed goes along
    _stamp(converted, line, {"onnx": Path(path)}, options, bool(previous and previous.synthetic),
           None if made is None else dict(made))
    return _optimized(OnnxConversion(OnnxModel(converted), model_opset(source), sources=(Path(path),)), options)


def _stamp(model: onnx.ModelProto, line: str, files: Mapping[str, Path], options: ConvertOptions,
           synthetic: bool, synthetic_weights: Mapping[str, float | int] | None = None) -> None:
    """Record in the model what it was made from (digests of the source files) and how
    (``synthetic_weights``: the seed and scale of weights zooforge made)."""
    shapes = options.input_shapes
    if isinstance(shapes, Mapping):
        shapes = next(iter(shapes.values()), None)
    settings = settings_dict(target_opset=options.opset, compat=options.compat, names=options.names,
                             input_shape=shapes, dynamic_batch=options.dynamic_batch,
                             optimize=optimize.optimize_settings() if options.optimize else None,
                             synthetic_weights=synthetic_weights)
    sources = tuple(SourceFile(Path(path).name, role, sha256_file(Path(path))) for role, path in files.items())
    stamp(model, Lineage(line, sources, (), settings, synthetic))


def _optimized(result: Conversion | OnnxConversion, options: ConvertOptions) -> Conversion | OnnxConversion:
    """With ``options.optimize``: the result's model optimized (its stamp kept, which already
    records the passes), once it matches the unoptimized model on seeded inputs."""
    if not options.optimize:
        return result
    optimized = optimize.optimize_model(result.model, where=f"the opset-{options.opset} model")
    error = optimize.check_parity(result.model, optimized.model, f"the optimized opset-{options.opset} model")
    result.model = optimized.model
    result.notes.append(f"--optimize: {optimized.nodes_before} -> {optimized.nodes_after} nodes; matches the "
                        f"unoptimized model within {error:.1e} of each output's magnitude on "
                        f"{optimize.PARITY_SETS} seeded inputs (onnxruntime, its graph optimisations off)")
    return result


def _same_path(a: Path, b: Path) -> bool:
    return Path(a).absolute() == Path(b).absolute()


def export_netdef(caffe2: Caffe2Model, options: ConvertOptions = ConvertOptions()) -> Conversion:
    """A NetDef pair in memory -> ONNX at ``options.opset`` (compat rewrite, labels, graph check)."""
    export = ExportOptions(options.opset, options.names, options.dynamic_batch, __version__, options.compat)
    notes = []
    if options.compat == "zoo":
        caffe2, deviations = zoo_compat(caffe2)
        notes.append(
            "--compat zoo reproduces the ONNX model zoo's published graph, which departs from Caffe: "
            + ("; ".join(map(str, deviations)) if deviations else "not at this input size")
        )
    elif options.compat is not None:
        raise InputFileError(f"unknown compatibility mode {options.compat!r}; the only one is 'zoo'")
    model = caffe2_to_onnx(caffe2, export)
    result = Conversion(model, caffe2, notes=notes)
    detections = [output.name for name, output in zip(caffe2.outputs, model.skeleton.graph.output)
                  if name in caffe2.detection_rows]  # the graph's outputs are the NetDef's, in order
    if caffe2.detection_rows:
        _set_metadata(model.skeleton, {DETECTION_ROWS_KEY: ",".join(detections)})
    if caffe2.synthetic_weights:
        model.skeleton.doc_string = SYNTHETIC_NOTE
        _set_metadata(model.skeleton, {"zooforge.synthetic_weights": "true"})
        result.notes.append(SYNTHETIC_NOTE)
    model.check()
    return result


def _set_metadata(model: onnx.ModelProto, values: Mapping[str, str]) -> None:
    existing = {entry.key: entry for entry in model.metadata_props}
    for key, value in values.items():
        entry = existing.get(key) or model.metadata_props.add()
        entry.key, entry.value = key, value


# One conversion per kind of source (zooforge.converters.sources.SourceSpec.kind).
_CONVERTERS = {
    "builtin": lambda spec, options: convert_builtin(spec.builtin, options),
    "netdef": lambda spec, options: convert_netdef(spec.model, spec.init_net, spec.value_info, options),
    "onnx": lambda spec, options: convert_onnx(spec.model, options),
    "caffe": lambda spec, options: convert_caffe(spec.model, spec.weights, options),
    "synthetic": lambda spec, options: convert_synthetic(spec.model, spec.synthetic, options),
}


def convert_source(spec: SourceSpec, options: ConvertOptions = ConvertOptions()) -> Conversion | OnnxConversion:
    """Convert the source model ``spec`` names."""
    return _CONVERTERS[spec.kind](spec, options)
