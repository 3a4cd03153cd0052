"""The library entry points behind ``zoo-convert``: one call per kind of source model."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from converters import __version__
from converters.caffe.loader import InputShapes, load_caffe
from converters.caffe.net import CaffeNet
from converters.caffe2.netdef import Caffe2Model, load_caffe2, write_caffe2
from converters.caffe2.translate import translate
from converters.errors import InputFileError
from converters.caffe2.compat import zoo_compat
from converters.onnx.frontend import Compat, ExportOptions, NameStyle, caffe2_to_onnx
from converters.fileio import sha256_file
from converters.lineage import SYNTHETIC_SENTENCE, Lineage, SourceFile, read_lineage, settings_dict, stamp
from converters.onnx.model import OnnxModel
from versioning.convert import convert_opset, model_opset

DEFAULT_OPSET = 12
SYNTHETIC_NOTE = SYNTHETIC_SENTENCE


@dataclass(frozen=True)
class ConvertOptions:
    """Settings shared by every conversion."""

    opset: int = DEFAULT_OPSET
    names: NameStyle = "zoo"
    input_shapes: InputShapes = None
    dynamic_batch: bool = False
    compat: Compat = None


@dataclass
class Conversion:
    """The products of one conversion, kept in memory until saved."""

    model: OnnxModel
    caffe2: Caffe2Model
    caffe: CaffeNet | None = None
    notes: list[str] = field(default_factory=list)

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
        _check_output(output)
        if caffe2_dir is not None and Path(caffe2_dir).exists() and not Path(caffe2_dir).is_dir():
            raise InputFileError(f"--emit-caffe2 {caffe2_dir} exists and is not a folder")
        if caffe2_dir is not None:
            write_caffe2(self.caffe2, Path(caffe2_dir))
        self.model.save(output)


def convert_caffe(prototxt: Path, weights: Path, options: ConvertOptions = ConvertOptions()) -> Conversion:
    """Caffe deploy prototxt + weights (``.caffemodel`` or ``.caffemodel.h5``) -> ONNX."""
    net = load_caffe(Path(prototxt), Path(weights), options.input_shapes)
    result = convert_caffe_net(net, options)
    name = net.name or Path(prototxt).stem
    _stamp(result.model.skeleton, f"Caffe {name} ==> Caffe2 {name} ==> ONNX {name}",
           {"prototxt": Path(prototxt), "weights": Path(weights)}, options, net.synthetic_weights)
    return result


def convert_builtin(name: str, options: ConvertOptions = ConvertOptions()) -> Conversion:
    """A model that ships with zooforge (architecture + seeded synthetic weights) -> ONNX."""
    from converters.builtin import builtin_model, load_builtin

    net = load_builtin(name, options.input_shapes)
    result = convert_caffe_net(net, options)
    _stamp(result.model.skeleton, f"Caffe {net.name} ==> Caffe2 {net.name} ==> ONNX {net.name}",
           {"prototxt": builtin_model(name).prototxt}, options, True)
    return result


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
    caffe2 = load_caffe2(Path(predict_net), Path(init_net), value_info, options.input_shapes)
    result = export_netdef(caffe2, options)
    name = caffe2.predict_net.name or Path(predict_net).parent.name
    files = {"predict_net": Path(predict_net), "init_net": Path(init_net)}
    if value_info is not None:
        files["value_info"] = Path(value_info)
    _stamp(result.model.skeleton, f"Caffe2 {name} ==> ONNX {name}", files, options, caffe2.synthetic_weights)
    return result


@dataclass
class OnnxConversion:
    """An existing ONNX model moved to another opset."""

    model: OnnxModel
    source_opset: int
    notes: list[str] = field(default_factory=list)

    @property
    def onnx_model(self) -> onnx.ModelProto:
        return self.model.to_proto()

    def save(self, output: Path, caffe2_dir: Path | None = None) -> None:
        if caffe2_dir is not None:
            raise InputFileError("--emit-caffe2 needs a Caffe or NetDef source, not an ONNX model")
        _check_output(Path(output))
        self.model.save(Path(output))


def load_onnx(path: Path) -> onnx.ModelProto:
    """Read an ONNX model; a missing or unreadable file is one clear error."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"ONNX model {path} does not exist")
    try:
        return onnx.load(str(path))
    except (onnx.onnx_cpp2py_export.checker.ValidationError, DecodeError, ValueError) as exc:
        raise InputFileError(f"{path} is not a readable ONNX model: {exc}") from None


def convert_onnx(path: Path, options: ConvertOptions = ConvertOptions()) -> OnnxConversion:
    """An ONNX model of the classic CNN operator set -> the same model at ``options.opset``."""
    if options.input_shapes is not None or options.dynamic_batch or options.names != "zoo" or options.compat:
        raise InputFileError(
            "--input-shape, --dynamic-batch, --names and --compat apply to Caffe and NetDef sources only"
        )
    source = load_onnx(path)
    converted = convert_opset(source, options.opset)
    previous = read_lineage(source)
    name = source.graph.name or Path(path).stem
    line = f"{previous.line if previous else f'ONNX {name} (opset {model_opset(source)})'} ==> ONNX {name}"
    _stamp(converted, line, {"onnx": Path(path)}, options, bool(previous and previous.synthetic))
    return OnnxConversion(OnnxModel(converted), model_opset(source))


def _stamp(model: onnx.ModelProto, line: str, files: Mapping[str, Path], options: ConvertOptions,
           synthetic: bool) -> None:
    """Record in the model what it was made from (digests of the source files) and how."""
    shapes = options.input_shapes
    if isinstance(shapes, Mapping):
        shapes = next(iter(shapes.values()), None)
    settings = settings_dict(target_opset=options.opset, compat=options.compat, names=options.names,
                             input_shape=shapes, dynamic_batch=options.dynamic_batch)
    sources = tuple(SourceFile(Path(path).name, role, sha256_file(Path(path))) for role, path in files.items())
    stamp(model, Lineage(line, sources, (), settings, synthetic))


def _check_output(output: Path) -> None:
    if not output.parent.is_dir():
        raise InputFileError(f"output folder {output.parent} does not exist")
    if output.is_dir():
        raise InputFileError(f"output {output} is a folder; give a file name such as {output / 'model.onnx'}")


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
