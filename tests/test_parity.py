"""Three-way numerical parity, the Definition of Done for Caffe conversions.

For every case the same seeded input goes through

* OpenCV's Caffe importer (``cv2.dnn.readNetFromCaffe``): an independent Caffe implementation,
* our Caffe2 NumPy executor on the translated NetDef,
* ONNX Runtime on our ONNX export, at opset 12 and at opset 13,
* REAL Caffe2 (torch 1.10.2, in its own interpreter) on the NetDef pair zooforge writes, and the
  historical onnx-caffe2 frontend's ONNX of that pair on ONNX Runtime,

and every final output must agree with the executor's to ``1e-5`` max abs error. Softmax outputs
are held to that plain absolute bound. Outputs that are not probabilities (raw logits, MTCNN box
regressions, the siamese feature vector) can reach magnitudes in the tens or hundreds, where a
float32 ulp alone is ~1e-5; for those the bound is the combined ``abs <= 1e-5 + 1e-5 * |ref|``.

Measured errors are printed (``pytest -s``) one line per case and dumped at the end of the session
to ``<pytest basetemp>/parity_errors.json``.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format

from zooforge.converters.api import ConvertOptions, convert_caffe_net
from zooforge.converters.builtin import WeightScale, synthetic_weights
from zooforge.converters.caffe.loader import load_caffe, parse_prototxt
from zooforge.converters.caffe.net import CaffeNet
from zooforge.converters.caffe.weights import write_caffemodel
from zooforge.converters.caffe2.executor import infer_shapes, run_net
from zooforge.converters.caffe2.netdef import write_caffe2

from conftest import run_onnx_file
from shared_paths import SHARED

CAFFE = SHARED / "caffe"
TRAINED = CAFFE / "trained"
BVLC = CAFFE / "bvlc"

ATOL = 1e-5
RTOL = 1e-5  # only for outputs that are not Softmax probabilities (see the module docstring)
OPSETS = (12, 13)
SEED = 20240601

IMAGENET = (-128.0, 128.0)  # BGR 0-255 minus the mean
UNIT = (0.0, 1.0)  # 0-255 scaled by 1/256 (MNIST nets)
MTCNN = (-1.0, 1.0)  # (x - 127.5) / 128


@dataclass(frozen=True)
class Case:
    id: str
    prototxt: Path
    weights: Path | None  # None: seeded synthetic weights
    value_range: tuple[float, float]
    input_shapes: tuple[int, ...] | None = None
    opencv: str | None = None  # None: compare with OpenCV; otherwise the reason it is skipped
    deploy_from_train: bool = False  # OpenCV needs a deploy prototxt made from a train/test one
    rtol: float = RTOL  # relative part of the bound for non-softmax outputs


def _trained_cases() -> list[Case]:
    mtcnn = TRAINED / "mtcnn"
    v1 = TRAINED / "v1_binaries"
    hdf5 = TRAINED / "cifar10_quick_hdf5"
    resnet = TRAINED / "resnet20_cifar10"
    return [
        Case("trained-lenet_mnist_v2", TRAINED / "lenet_mnist_v2/lenet.prototxt",
             TRAINED / "lenet_mnist_v2/lenet_iter_10000.caffemodel", UNIT),
        Case("trained-v1bin-cifar10_quick", v1 / "cifar10_quick.prototxt",
             v1 / "cifar10_quick_iter_5000.caffemodel", IMAGENET),
        Case("trained-v1bin-cifar10_full", v1 / "cifar10_full.prototxt",
             v1 / "cifar10_full_iter_70000.caffemodel", IMAGENET),
        Case("trained-mtcnn-det1-12x12", mtcnn / "det1.prototxt", mtcnn / "det1.caffemodel", MTCNN),
        Case("trained-mtcnn-det2", mtcnn / "det2.prototxt", mtcnn / "det2.caffemodel", MTCNN),
        Case("trained-mtcnn-det3", mtcnn / "det3.prototxt", mtcnn / "det3.caffemodel", MTCNN),
        Case("trained-mtcnn-det4", mtcnn / "det4.prototxt", mtcnn / "det4.caffemodel", MTCNN),
        # OpenCV's Caffe importer reads binary .caffemodel only, never HDF5 weights; this is a
        # different training from the V1-binary cifar10_quick, so only executor vs ORT here.
        Case("trained-hdf5-cifar10_quick-no_opencv", hdf5 / "cifar10_quick.prototxt",
             hdf5 / "cifar10_quick_iter_5000.caffemodel.h5", IMAGENET,
             opencv="OpenCV's Caffe importer cannot read HDF5 (.caffemodel.h5) weights"),
        # A train/test prototxt (Data layer, loss and accuracy): converted at 1x3x32x32; OpenCV
        # gets a deploy prototxt derived from it (Input layer, no loss/accuracy).
        Case("trained-resnet20_cifar10", resnet / "test_ResNet_20.prototxt",
             resnet / "cifar10_ResNet_20_iter_53500.caffemodel", IMAGENET,
             input_shapes=(1, 3, 32, 32), deploy_from_train=True),
    ]


BVLC_MODELS = (
    "bvlc_alexnet", "bvlc_reference_caffenet", "bvlc_googlenet",
    "bvlc_reference_rcnn_ilsvrc13", "finetune_flickr_style",
)
BVLC_FORMATS = ("v1_layers", "v2_input_dim", "v2_input_shape", "v2_input_layer")


def _bvlc_cases() -> list[Case]:
    cases = [
        Case(f"bvlc-{fmt}-{model}", BVLC / fmt / "models" / model / "deploy.prototxt", None, IMAGENET)
        for model in BVLC_MODELS
        for fmt in BVLC_FORMATS
    ]
    # R-CNN ends in raw fc-rcnn scores (max |x| ~2.5) computed from fc6/fc7 activations of ~150:
    # float32 summation-order noise is already ~5e-5 at fc7 (our executor vs a float64
    # recomputation) and leaves 1.3e-5 (ORT) to 4.0e-5 (OpenCV) at fc-rcnn, i.e. ~1.6e-5 of the
    # output's magnitude. No layer diverges (pool5 agrees with OpenCV to 9e-6 relative), so the
    # relative part is 2e-5 here: the bound is 1e-5 + 2e-5 * max|ref| = 5.9e-5.
    cases = [
        Case(c.id, c.prototxt, c.weights, c.value_range, rtol=2e-5)
        if "rcnn" in c.id else c for c in cases
    ]
    examples = BVLC / "v2_input_layer/examples"
    cases += [
        Case("example-cifar10_full", examples / "cifar10/cifar10_full.prototxt", None, IMAGENET),
        Case("example-cifar10_quick", examples / "cifar10/cifar10_quick.prototxt", None, IMAGENET),
        Case("example-mnist_lenet", examples / "mnist/lenet.prototxt", None, UNIT),
        # Declared 1x3x451x451 (an 8x8 score map); run at batch 1 of the declared size.
        Case("example-caffenet_full_conv-451", examples / "net_surgery/bvlc_caffenet_full_conv.prototxt",
             None, IMAGENET),
        Case("example-mnist_siamese", examples / "siamese/mnist_siamese.prototxt", None, UNIT),
    ]
    return cases


CASES = _trained_cases() + _bvlc_cases()


# --------------------------------------------------------------------------------------------
# Shared machinery


@pytest.fixture(scope="session")
def parity_record(tmp_path_factory: pytest.TempPathFactory):
    """Case id -> measured errors; written to ``<basetemp>/parity_errors.json`` at the end."""
    table: dict[str, dict] = {}
    yield table
    path = tmp_path_factory.getbasetemp() / "parity_errors.json"
    path.write_text(json.dumps(table, indent=2, sort_keys=True))
    print(f"\nparity errors of {len(table)} case(s) written to {path}")


@pytest.fixture(scope="module")
def cv2():
    cv2 = pytest.importorskip("cv2", reason="OpenCV (opencv-python-headless<5) is not installed")
    if not hasattr(cv2.dnn, "readNetFromCaffe"):
        pytest.skip(f"OpenCV {cv2.__version__} has no Caffe importer (removed in 5.0)")
    return cv2


_SYNTHETIC_CACHE: dict[tuple[str, tuple], tuple[dict, Path]] = {}


def _uniform_std(value_range: tuple[float, float]) -> float:
    low, high = value_range
    return (high - low) / np.sqrt(12.0)


def _synthetic(case: Case, tmp_dir: Path) -> tuple[dict, Path]:
    """Seeded weights and a caffemodel of them, shared by the formats of one BVLC model.

    The four formats of a BVLC model define the same layers, so one table serves all four
    (``load_caffe`` fails on a missing or misshapen blob, and OpenCV on a missing layer).
    """
    model = f"{case.prototxt.parent.name}-{case.prototxt.stem}"
    key = (model, case.input_shapes)
    if key not in _SYNTHETIC_CACHE:
        scale = WeightScale(input_std=_uniform_std(case.value_range))
        table = synthetic_weights(parse_prototxt(case.prototxt), SEED, scale, case.input_shapes)
        caffemodel = tmp_dir / f"{model}.caffemodel"
        write_caffemodel(table, caffemodel)
        _SYNTHETIC_CACHE[key] = (table, caffemodel)
    return _SYNTHETIC_CACHE[key]


def _deploy_prototxt(train_test: Path, shape: tuple[int, ...], out: Path) -> Path:
    """A deploy prototxt for OpenCV: the Data layer becomes an Input layer; loss/accuracy go."""
    net = parse_prototxt(train_test)
    data = [layer for layer in net.layer if layer.type == "Data"]
    assert len(data) == 1, "expected exactly one Data layer"
    input_name = data[0].top[0]
    dropped = {"Data", "Accuracy", "SoftmaxWithLoss"}
    kept = []
    for layer in net.layer:
        if layer.type not in dropped:
            kept.append(type(layer)())
            kept[-1].CopyFrom(layer)
    del net.layer[:]
    input_layer = net.layer.add(name=input_name, type="Input", top=[input_name])
    input_layer.input_param.shape.add(dim=list(shape))
    net.layer.extend(kept)
    out.write_text(text_format.MessageToString(net))
    return out


def _softmax_outputs(net: CaffeNet) -> set[str]:
    last_type: dict[str, str] = {}
    for layer in net.layers:
        for top in layer.tops:
            last_type[top] = layer.type
    return {name for name, kind in last_type.items() if kind == "Softmax"}


def _check(
    name: str, ref: np.ndarray, other: np.ndarray, softmax: bool, rtol: float = RTOL
) -> tuple[float, bool]:
    """Max abs error and whether it meets the bound (plain 1e-5 for softmax, else combined)."""
    assert other.shape == ref.shape, (name, other.shape, ref.shape)
    err = np.abs(other.astype(np.float64) - ref.astype(np.float64))
    # Not a probability: the relative part is taken against the output's largest magnitude, since
    # float32 accumulation-order noise scales with the logits' overall size, not with each value.
    bound = ATOL if softmax else ATOL + rtol * float(np.abs(ref).max())
    return float(err.max()), bool(np.all(err <= bound))


def _run_ort(net: CaffeNet, opset: int, feeds: dict[str, np.ndarray], onnx_session):
    conversion = convert_caffe_net(net, ConvertOptions(opset=opset))
    session = onnx_session(conversion.onnx_model)
    inputs = [i.name for i in session.get_inputs()]
    assert len(inputs) == len(feeds) == 1
    values = session.run(None, {inputs[0]: next(iter(feeds.values()))})
    outputs = conversion.caffe2.outputs
    assert len(values) == len(outputs)
    return dict(zip(outputs, values))


def optional_real_caffe2(request: pytest.FixtureRequest):
    """The real-Caffe2 fixture, or None (with the reason) where it cannot exist on this machine."""
    try:
        return request.getfixturevalue("real_caffe2"), None
    except pytest.skip.Exception as exc:
        return None, str(exc)


def _netdef_digest(model) -> str:  # noqa: ANN001
    digest = hashlib.sha256(model.predict_net.SerializeToString(deterministic=True))
    for name, array in model.weights.items():
        digest.update(name.encode() + b"\0" + np.ascontiguousarray(array).tobytes())
    digest.update(repr(sorted(model.input_shapes.items())).encode())
    return digest.hexdigest()


_REAL_SEEN: dict[str, tuple[str, dict, dict, float]] = {}  # NetDef digest -> (case, caffe2, frontend, blobs)


def real_caffe2_legs(case_id: str, caffe2, feeds: dict, real, folder: Path) -> tuple[dict, dict, float, str]:  # noqa: ANN001
    """Real Caffe2 on the NetDef pair as written, and the historical frontend's ONNX on onnxruntime.

    Returns both engines' outputs, the worst relative difference over every intermediate blob (for
    the record), and the case whose identical NetDef was already run (the BVLC formats share one).
    """
    key = _netdef_digest(caffe2)
    if key in _REAL_SEEN:
        first, theirs, frontend, blobs = _REAL_SEEN[key]
        return theirs, frontend, blobs, first
    paths = write_caffe2(caffe2, folder)
    every = real.run_files(paths["predict_net"], paths["init_net"], feeds, fetch="*")
    ours = run_net(caffe2, feeds, keep_all=True)
    blobs = max((float(np.max(np.abs(ours[n].astype(np.float64) - v))) / max(1.0, float(np.max(np.abs(v))))
                 for n, v in every.items() if v.size and v.dtype.kind == "f"), default=0.0)
    theirs = {name: every[name] for name in caffe2.outputs}
    value_info = {name: (1, list(shape)) for name, shape in caffe2.input_shapes.items()}
    onnx_file = real.frontend(paths["predict_net"], paths["init_net"], value_info, folder / "frontend.onnx")
    frontend = dict(zip(caffe2.outputs, run_onnx_file(onnx_file, feeds)))
    for path in [*paths.values(), onnx_file]:
        path.unlink()
    _REAL_SEEN[key] = (case_id, theirs, frontend, blobs)
    return theirs, frontend, blobs, ""


def three_way(case: Case, net: CaffeNet, cv_net, onnx_session, record: dict, real=None,  # noqa: ANN001
              real_skipped: str | None = None, folder: Path | None = None) -> dict:
    """Run every engine, record the max abs errors, and assert them all at the end."""
    caffe2 = convert_caffe_net(net, ConvertOptions(opset=OPSETS[0])).caffe2
    (input_name, shape), = net.inputs.items()
    low, high = case.value_range
    x = np.random.default_rng(SEED).uniform(low, high, shape).astype(np.float32)
    feeds = {input_name: x}
    ours = run_net(caffe2, feeds)
    softmax = _softmax_outputs(net)

    errors: dict[str, dict[str, float]] = {}
    failures: list[str] = []

    def compare(engine: str, values: dict[str, np.ndarray]) -> None:
        for name in caffe2.outputs:
            err, ok = _check(name, ours[name], values[name], name in softmax, case.rtol)
            errors.setdefault(engine, {})[name] = err
            if not ok:
                kind = "softmax, abs" if name in softmax else "abs + rel"
                failures.append(f"{engine} {name}: max abs err {err:.3g} ({kind} bound)")

    if cv_net is not None:
        cv_net.setInput(x)
        values = cv_net.forward(caffe2.outputs)
        compare("opencv", dict(zip(caffe2.outputs, values)))
    for opset in OPSETS:
        compare(f"ort{opset}", _run_ort(net, opset, feeds, onnx_session))
    same_as, blobs = "", None
    if real is not None:
        theirs, frontend, blobs, same_as = real_caffe2_legs(case.id, caffe2, feeds, real, folder)
        compare("caffe2", theirs)
        compare("frontend", frontend)

    scale = {n: float(np.abs(ours[n]).max()) for n in caffe2.outputs}
    worst = {engine: max(per.values()) for engine, per in errors.items()}
    record[case.id] = {
        "input_shape": list(shape),
        "outputs": {n: [list(ours[n].shape), "softmax" if n in softmax else "abs+rel"]
                    for n in caffe2.outputs},
        "max_abs_error": errors,
        "max_abs_reference": scale,
        "opencv_skipped": case.opencv,
        "real_caffe2_skipped": real_skipped,
        "real_caffe2_worst_blob_relative": blobs,
        "real_caffe2_same_netdef_as": same_as or None,
    }
    cells = "  ".join(f"{engine}={worst.get(engine, float('nan')):.2e}"
                      for engine in ("opencv", *(f"ort{o}" for o in OPSETS), "caffe2", "frontend"))
    print(f"\n[parity] {case.id:<46} {tuple(shape)!s:<18} {cells}  max|ref|={max(scale.values()):.3g}"
          + (f"  blobs(rel)={blobs:.1e}" if blobs is not None else "")
          + (f"  (NetDef as {same_as})" if same_as else "")
          + (f"  (opencv skipped: {case.opencv})" if case.opencv else ""))
    assert not failures, f"{case.id}: " + "; ".join(failures)
    return ours


# --------------------------------------------------------------------------------------------
# Tests


# About 30 s each (V1 caffemodels of 230 MiB, upgraded and run three ways); their V2 twins stay quick.
SLOW_CASES = {"bvlc-v1_layers-bvlc_reference_caffenet", "bvlc-v1_layers-finetune_flickr_style", "bvlc-v1_layers-bvlc_alexnet",
              "bvlc-v1_layers-bvlc_reference_rcnn_ilsvrc13", "example-caffenet_full_conv-451"}


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=[pytest.mark.slow] if c.id in SLOW_CASES else [])
                                  for c in CASES])
def test_three_way_parity(case: Case, cv2, onnx_session, parity_record, tmp_path_factory, request) -> None:
    if not case.prototxt.is_file():
        pytest.skip(f"{case.prototxt} (shared material) is absent")
    tmp_dir = tmp_path_factory.mktemp("parity")
    if case.weights is None:
        table, caffemodel = _synthetic(case, tmp_path_factory.getbasetemp())
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a weight table not matching the net is a test error
            net = load_caffe(case.prototxt, table, case.input_shapes)
        net.synthetic_weights = True
    else:
        net = load_caffe(case.prototxt, case.weights, case.input_shapes)
        caffemodel = case.weights

    cv_net = None
    if case.opencv is None:
        prototxt = case.prototxt
        if case.deploy_from_train:
            (shape,) = net.inputs.values()
            prototxt = _deploy_prototxt(case.prototxt, shape, tmp_dir / "deploy.prototxt")
        cv_net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    real, reason = optional_real_caffe2(request)
    three_way(case, net, cv_net, onnx_session, parity_record, real, reason, tmp_dir)


ALEXNET = BVLC / "v2_input_layer/models/bvlc_alexnet/deploy.prototxt"


@pytest.mark.skipif(not ALEXNET.is_file(), reason=f"{ALEXNET} (shared material) is absent")
@pytest.mark.parametrize("size", [227, 224], ids=["alexnet-227", "alexnet-224"])
def test_alexnet_sizes_three_way_with_caffe_pooling(
    size: int, cv2, onnx_session, parity_record, tmp_path_factory, request
) -> None:
    shape = (1, 3, size, size)
    case = Case(f"alexnet-{size}", ALEXNET, None, IMAGENET, input_shapes=shape)
    # Weights do not depend on the input size: one table (made at 227) serves both sizes.
    table, caffemodel = _synthetic(Case(case.id, ALEXNET, None, IMAGENET), tmp_path_factory.getbasetemp())
    net = load_caffe(ALEXNET, table, shape)
    net.synthetic_weights = True
    cv_net = cv2.dnn.readNetFromCaffe(str(ALEXNET), str(caffemodel))
    # OpenCV takes the spatial size from the blob it is given, as Caffe's Reshape does.
    real, reason = optional_real_caffe2(request)
    three_way(case, net, cv_net, onnx_session, parity_record, real, reason, tmp_path_factory.mktemp(case.id))

    caffe2 = convert_caffe_net(net, ConvertOptions()).caffe2
    shapes = infer_shapes(caffe2.predict_net, {**{k: v.shape for k, v in caffe2.weights.items()},
                                               **caffe2.input_shapes})
    # Caffe rounds pooled sizes up: 224 -> conv1 54 -> pool1 ceil((54-3)/2)+1 = 27 -> conv2 27
    # -> pool2 13 -> conv5 13 -> pool5 6 (the same as at 227: 55 -> 27 -> 13 -> 6).
    expected = {"pool1": 27, "pool2": 13, "pool5": 6}
    assert {name: shapes[name][2:] for name in expected} == {
        name: (side, side) for name, side in expected.items()
    }
    conv1 = 54 if size == 224 else 55
    assert shapes["conv1"][2:] == (conv1, conv1)
    # And OpenCV, an independent Caffe implementation, sees the same pooled blobs.
    cv_net.setInput(np.zeros(shape, np.float32))
    for name, side in expected.items():
        assert cv_net.forward(name).shape[2:] == (side, side), name


def test_every_slow_case_names_a_case():
    """A misspelt id would quietly move a slow case back into the default run."""
    assert SLOW_CASES <= {c.id for c in CASES}
