"""What a release is built from: a Caffe model, a built-in model, a NetDef pair or an ONNX model.

A ``ReleaseSource`` yields the model at any opset and computes the expected outputs of test sets
with the source's own runtime: the Caffe2 executor for Caffe and NetDef sources, the source ONNX
model (onnxruntime, or the reference evaluator below opset 7) for ONNX sources.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from zooforge.converters import api
from zooforge.converters.caffe2.compat import zoo_compat
from zooforge.converters.caffe2.executor import run_net
from zooforge.converters.caffe2.netdef import Caffe2Model
from zooforge.converters.caffe2.translate import translate
from zooforge.converters.errors import InputFileError
from zooforge.converters.onnx.model import OnnxModel
from zooforge.converters.sources import SourceSpec, SyntheticWeights
from zooforge.versioning.convert import convert_opset, model_opset
from zooforge.versioning.runtime import run_model


@dataclass
class ReleaseSource:
    title: str                      # the zoo's model name, e.g. "AlexNet" (manifest "model", README title)
    lineage: list[str]              # e.g. ["Caffe BVLC AlexNet", "Caffe2 AlexNet", "ONNX AlexNet"]
    files: dict[str, Path]          # role -> source file (prototxt, weights, predict_net, ...)
    synthetic: bool = False
    caffe2: Caffe2Model | None = None
    onnx_model: onnx.ModelProto | None = None
    options: api.ConvertOptions = field(default_factory=api.ConvertOptions)
    input_range: tuple[float, float] = (-1.0, 1.0)  # default range of the uniform test inputs
    about: str | None = None        # what zooforge says of a built-in model (the README's Description)
    synthetic_settings: dict | None = None  # seed and scale of weights zooforge made (the lineage's settings)

    @property
    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        if self.caffe2 is not None:
            return dict(self.caffe2.input_shapes)
        initializers = {t.name for t in self.onnx_model.graph.initializer}
        return {
            value.name: tuple(d.dim_value for d in value.type.tensor_type.shape.dim)
            for value in self.onnx_model.graph.input if value.name not in initializers
        }

    @property
    def detection_rows(self) -> list[str]:
        """The outputs holding detection rows (SSD's DetectionOutput), by the source's own names."""
        if self.caffe2 is not None:
            return self.caffe2.detection_rows
        return api.detection_rows(self.onnx_model)

    def variant(self, opset: int) -> OnnxModel:
        """The model at ``opset``, checked; large weights stay shared with the source."""
        if self.caffe2 is not None:
            options = api.ConvertOptions(opset, self.options.names, None, self.options.dynamic_batch,
                                         self.options.compat)
            return api.export_netdef(self.caffe2, options).model
        return OnnxModel(convert_opset(self.onnx_model, opset))

    def expected_outputs(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """The source model's outputs, in graph output order."""
        if self.caffe2 is not None:
            reference = zoo_compat(self.caffe2)[0] if self.options.compat == "zoo" else self.caffe2
            by_name = dict(zip(self.caffe2.inputs, feeds.values()))
            return list(run_net(reference, by_name).values())
        return list(run_model(self.onnx_model, dict(feeds)).values())


def caffe_source(prototxt: Path, weights: Path, options: api.ConvertOptions) -> ReleaseSource:
    net = api.read_caffe(prototxt, weights, options)
    name = net.name or Path(prototxt).parent.name
    return ReleaseSource(
        title=name, lineage=[f"Caffe {name}", f"Caffe2 {name}", f"ONNX {name}"],
        files={"prototxt": Path(prototxt), "weights": Path(weights)},
        caffe2=translate(net), options=options,
    )


def builtin_source(name: str, options: api.ConvertOptions) -> ReleaseSource:
    from zooforge.converters.builtin import builtin_model, builtin_settings, load_builtin

    model = builtin_model(name)
    net = load_builtin(name, options.input_shapes)
    caffe_title = f"BVLC {net.name}" if name == "alexnet" else net.name
    return ReleaseSource(  # titled as the zoo titles it (AlexNet), its lineage as the zoo's README gives it
        title=net.name, lineage=[f"Caffe {caffe_title}", f"Caffe2 {net.name}", f"ONNX {net.name}"],
        files={"prototxt": model.prototxt}, synthetic=True, caffe2=translate(net), options=options,
        about=f"zooforge's built-in {name}: {model.description}", synthetic_settings=builtin_settings(name),
        input_range=(-128.0, 128.0) if name == "alexnet" else (-1.0, 1.0),  # Caffe-range pixels
    )


def synthetic_source(prototxt: Path, synthetic: SyntheticWeights, options: api.ConvertOptions) -> ReleaseSource:
    """A prototxt with seeded synthetic weights, scaled for the release's test inputs."""
    net = api.read_synthetic(prototxt, synthetic, options)
    name = net.name or Path(prototxt).parent.name
    return ReleaseSource(
        title=name, lineage=[f"Caffe {name}", f"Caffe2 {name}", f"ONNX {name}"],
        files={"prototxt": Path(prototxt)}, synthetic=True, caffe2=translate(net), options=options,
        input_range=synthetic.input_range, synthetic_settings=api.synthetic_settings(synthetic),
    )


def netdef_source(predict_net: Path, init_net: Path, value_info: Path | None,
                  options: api.ConvertOptions) -> ReleaseSource:
    caffe2 = api.read_netdef(predict_net, init_net, value_info, options)
    name = caffe2.predict_net.name or Path(predict_net).parent.name
    files = {"predict_net": Path(predict_net), "init_net": Path(init_net)}
    if value_info:
        files["value_info"] = Path(value_info)
    return ReleaseSource(title=name, lineage=[f"Caffe2 {name}", f"ONNX {name}"], files=files,
                         synthetic=caffe2.synthetic_weights, caffe2=caffe2, options=options)


def onnx_source(path: Path, options: api.ConvertOptions) -> ReleaseSource:
    if options.compat or options.input_shapes is not None or options.dynamic_batch or options.names != "zoo":
        raise InputFileError("--compat, --input-shape, --dynamic-batch and --names need a Caffe or NetDef source "
                             f"(an ONNX source such as {path} keeps its own names and shapes)")
    model = api.read_onnx(path, options)
    name = model.graph.name or Path(path).stem
    return ReleaseSource(title=name, lineage=[f"ONNX {name} (opset {model_opset(model)})", f"ONNX {name}"],
                         files={"onnx": Path(path)}, onnx_model=model, options=options)


_SOURCES = {
    "builtin": lambda spec, options: builtin_source(spec.builtin, options),
    "netdef": lambda spec, options: netdef_source(spec.model, spec.init_net, spec.value_info, options),
    "onnx": lambda spec, options: onnx_source(spec.model, options),
    "caffe": lambda spec, options: caffe_source(spec.model, spec.weights, options),
    "synthetic": lambda spec, options: synthetic_source(spec.model, spec.synthetic, options),
}


def release_source(spec: SourceSpec, options: api.ConvertOptions) -> ReleaseSource:
    """The release source ``spec`` names (zooforge.converters.sources.SourceSpec.kind)."""
    return _SOURCES[spec.kind](spec, options)
