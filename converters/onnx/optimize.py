"""``--optimize``: onnxoptimizer's inference-exact passes on a zooforge model, then its weights folded.

The passes are the ones in :data:`PASSES`, each with the reason it keeps a model's outputs. Two
steps of zooforge's own frame them:

- before: Caffe's ``Scale`` after ``BatchNorm`` (a per-channel Mul, then Add, right after a
  BatchNormalization) is folded into that BatchNormalization's scale and bias, so that
  ``fuse_bn_into_conv`` takes the whole Caffe BatchNorm + Scale pair into the Conv;
- after: onnxoptimizer 0.4's ``fuse_bn_into_conv`` leaves the new weights as a subgraph of
  constant arithmetic (Cast, Add, Sqrt, Div, Unsqueeze, Mul, Sub) that a runtime would compute on
  every run; zooforge evaluates those nodes once with NumPy (float32 IEEE arithmetic, as a
  runtime does) and stores the results as initializers.

Only opsets :data:`MIN_OPSET` and newer are optimized: the passes write opset-7 broadcasting,
integer ``Cast`` targets and opset-dependent ``Unsqueeze`` forms, which opsets 3 and 6 do not have.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
import warnings
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from zooforge.converters.errors import ZooforgeError
from zooforge.converters.onnx.model import OnnxModel
from zooforge.versioning.checker import LARGE_TENSOR_BYTES
from zooforge.versioning.convert import model_opset

MIN_OPSET = 7
MAX_MODEL_BYTES = 2**31 - 1  # one protobuf message, as onnxoptimizer takes the model


class OptimizeError(ZooforgeError):
    """A model cannot be optimized (its opset, its size, or a pass that failed)."""


class OptimizeParityError(OptimizeError):
    """The optimized model's outputs differ from the unoptimized model's."""


@dataclass(frozen=True)
class Pass:
    """One onnxoptimizer pass and why it keeps an inference model's outputs."""

    name: str
    exact: bool  # True: the same arithmetic, bit for bit; False: reordered float arithmetic
    reason: str


PASSES: tuple[Pass, ...] = (
    Pass("eliminate_identity", True, "Identity copies its input"),
    Pass("eliminate_nop_dropout", True, "a Dropout whose ratio is 0 passes its input through"),
    Pass("eliminate_nop_transpose", True, "a Transpose with the identity permutation moves nothing"),
    Pass("eliminate_nop_pad", True, "a Pad of zero width adds nothing"),
    Pass("eliminate_nop_flatten", True, "a Flatten of an already 2-D tensor keeps its shape"),
    Pass("eliminate_nop_concat", True, "a Concat of one input is that input"),
    Pass("eliminate_nop_split", True, "a Split into one part is its input"),
    Pass("eliminate_consecutive_idempotent_ops", True, "Relu(Relu(x)) is Relu(x)"),
    Pass("extract_constant_to_initializer", True, "a Constant node's value as an initializer"),
    Pass("fuse_consecutive_transposes", True, "two Transposes compose into one permutation"),
    Pass("fuse_transpose_into_gemm", True, "Gemm's transA/transB read the operand transposed"),
    Pass("fuse_pad_into_conv", True, "a zero constant Pad before a Conv becomes the Conv's pads"),
    Pass("fuse_add_bias_into_conv", False, "a per-channel Add after a bias-free Conv becomes its bias"),
    Pass("fuse_bn_into_conv", False,
         "an inference BatchNormalization after a Conv is a per-channel affine map: W*s/sqrt(v+eps) and "
         "(b-m)*s/sqrt(v+eps)+beta"),
    Pass("fuse_matmul_add_bias_into_gemm", False, "MatMul then Add of a bias is one Gemm"),
    Pass("eliminate_deadend", True, "nodes whose outputs nothing reads"),
    Pass("eliminate_unused_initializer", True, "initializers no node reads"),
)
# Left out: fuse_pad_into_pool (sets count_include_pad=1, which changes an AveragePool's divisor
# where the pool already pads), eliminate_nop_monotone_argmax and fuse_consecutive_log_softmax
# (change which float ties an ArgMax sees, or the Softmax's rounding), eliminate_nop_with_unit
# (x + 0 -> x turns -0 into +0 no more), rewrite/adjust/split passes (not inference rewrites).
PASS_NAMES: tuple[str, ...] = tuple(p.name for p in PASSES)
OWN_STEPS: tuple[str, ...] = ("zooforge:fold_scale_into_batchnorm", "onnxoptimizer", "zooforge:fold_constants")


@dataclass
class Optimized:
    """An optimized model and what changed."""

    model: OnnxModel
    nodes_before: int
    nodes_after: int
    passes: tuple[str, ...]


def check_opset(opset: int, where: str = "the model") -> None:
    """Refuse an opset the passes cannot handle, in one sentence."""
    if opset < MIN_OPSET:
        raise OptimizeError(
            f"--optimize needs opset {MIN_OPSET} or newer ({where} is opset {opset}): onnxoptimizer writes opset-"
            f"{MIN_OPSET} forms (NumPy broadcasting without a broadcast attribute, integer Cast targets), which "
            "older opsets read differently or refuse")


def optimize_settings(passes: Sequence[str] = PASS_NAMES) -> dict:
    """The ``optimize`` member of a model's lineage settings."""
    import onnxoptimizer  # noqa: PLC0415 - a heavy import, only where optimizing

    return {"onnxoptimizer": onnxoptimizer.__version__, "passes": list(passes), "steps": list(OWN_STEPS)}


def optimize_model(model: OnnxModel, passes: Sequence[str] = PASS_NAMES, where: str = "the model") -> Optimized:
    """``model`` with its Scale folded into BatchNorm, ``passes`` run, constants folded; checked.

    The result keeps the source's IR version, opsets and stamp; large initializers are kept
    aside again as in any :class:`OnnxModel`.
    """
    import onnxoptimizer  # noqa: PLC0415

    skeleton = model.skeleton
    opset = model_opset(skeleton)
    check_opset(opset, where)
    unknown = sorted(set(passes) - set(onnxoptimizer.get_available_passes()))
    if unknown:
        raise OptimizeError(f"onnxoptimizer {onnxoptimizer.__version__} has no pass {', '.join(unknown)}")
    before = len(skeleton.graph.node)
    work = onnx.ModelProto()
    work.CopyFrom(skeleton)
    listed = skeleton.ir_version < 4  # IR 3 lists every initializer among the graph inputs
    fold_scale_into_batchnorm(work.graph, {**_initializers(work.graph), **model.large}, listed)
    if listed:  # onnxoptimizer takes listed initializers for inputs a caller may feed: unlist them
        _unlist_initializers(work.graph, set(model.large))
        work.ir_version = 4
    size = work.ByteSize() + sum(array.nbytes for array in model.large.values())
    if size > MAX_MODEL_BYTES:
        raise OptimizeError(f"--optimize cannot optimize {where}: onnxoptimizer takes one protobuf message, at most "
                            f"2 GiB, and the model is {size / 2**30:.1f} GiB")
    data = OnnxModel(work, model.large).to_bytes()
    del work
    try:
        result = onnxoptimizer.onnx_opt_cpp2py_export.optimize(data, list(passes))
    except Exception as exc:  # noqa: BLE001 - the C++ passes raise RuntimeError, IndexError, ...
        raise OptimizeError(f"onnxoptimizer failed on {where}: {' '.join(str(exc).split())[:300]}") from None
    del data
    optimized = onnx.load_from_string(result)
    del result
    fold_constants(optimized.graph)
    if listed:
        _list_initializers(optimized.graph)
    _restore_header(optimized, skeleton)
    out = _split_large(optimized)
    try:
        out.check()
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError, ValueError) as exc:
        raise OptimizeError(f"onnxoptimizer made {where} invalid: {' '.join(str(exc).split())[:300]}") from None
    return Optimized(out, before, len(out.skeleton.graph.node), tuple(passes))


def optimize_variant(model: OnnxModel, where: str) -> tuple[OnnxModel, dict | None]:
    """For a release: ``model`` optimized and its ``optimize`` settings, or, at an opset below
    :data:`MIN_OPSET`, ``model`` as it is, None, and a warning saying so (the release's parity
    check compares the result with the source model, as for every variant)."""
    opset = model_opset(model.skeleton)
    if opset < MIN_OPSET:
        warnings.warn(f"--optimize leaves {where} unoptimized: onnxoptimizer's rewrites need opset {MIN_OPSET} or "
                      "newer", OptimizeSkipped, stacklevel=2)
        return model, None
    optimized = optimize_model(model, where=where)
    return optimized.model, optimize_settings(optimized.passes)


class OptimizeSkipped(UserWarning):
    """A variant was left unoptimized because its opset is too old for the passes."""


PARITY_SETS = 3
PARITY_SEED = 0
PARITY_RTOL = 1e-4  # of the largest reference magnitude per output: folding reorders float arithmetic


def check_parity(reference: OnnxModel, optimized: OnnxModel, where: str = "the optimized model",
                 sets: int = PARITY_SETS, seed: int = PARITY_SEED) -> float:
    """Run both models on seeded inputs, uniform in [-1, 1), on onnxruntime with its own graph
    optimisations off (so each graph runs as written; the reference evaluator where onnxruntime
    cannot load the opset) and raise :class:`OptimizeParityError` naming the output where any
    element differs by more than ``PARITY_RTOL`` of that output's largest magnitude, or is not
    finite. Returns the worst error so measured, relative to that magnitude."""
    run_reference, run_optimized = _runner(reference), _runner(optimized)
    worst = 0.0
    for index in range(sets):
        feeds = _seeded_feeds(reference, seed + index)
        expected, produced = run_reference(feeds), run_optimized(feeds)
        for name, want in expected.items():
            got = produced.get(name)
            if got is None or np.shape(got) != np.shape(want):
                raise OptimizeParityError(f"{where} fails parity with the unoptimized model: output {name} is "
                                          f"{'missing' if got is None else f'of shape {list(np.shape(got))}'}")
            want, got = np.asarray(want, np.float64), np.asarray(got, np.float64)
            scale = max(float(np.max(np.abs(want), initial=0.0)), np.finfo(np.float32).tiny)
            error = float(np.max(np.abs(want - got), initial=0.0)) / scale
            if not (np.isfinite(got).all() and np.isfinite(want).all()) or not error <= PARITY_RTOL:
                raise OptimizeParityError(
                    f"{where} fails parity with the unoptimized model: output {name} on seeded input set {index} "
                    f"differs by {error:.3g} of its largest magnitude (allowed {PARITY_RTOL:g})")
            worst = max(worst, error)
    return worst


def _seeded_feeds(model: OnnxModel, seed: int) -> dict[str, np.ndarray]:
    """One seeded value per graph input that is not a weight (IR 3 lists weights as inputs)."""
    rng = np.random.default_rng(seed)
    constants = {t.name for t in model.skeleton.graph.initializer} | set(model.large)
    feeds = {}
    for value in model.skeleton.graph.input:
        if value.name in constants:
            continue
        tensor = value.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else 1 for d in tensor.shape.dim]
        dtype = helper.tensor_dtype_to_np_dtype(tensor.elem_type)
        feeds[value.name] = rng.uniform(-1.0, 1.0, shape).astype(dtype) if np.issubdtype(dtype, np.floating) \
            else np.zeros(shape, dtype)
    return feeds


def _runner(model: OnnxModel) -> Callable[[dict], dict]:
    data = model.to_bytes()
    try:
        import onnxruntime as ort  # noqa: PLC0415

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.log_severity_level = 3
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 - onnxruntime cannot load this opset: the reference evaluator can
        from zooforge.versioning.runtime import REFERENCE, Session  # noqa: PLC0415

        reference = Session(REFERENCE, onnx.load_from_string(data))
        return reference.run
    names = [o.name for o in session.get_outputs()]
    return lambda feeds: dict(zip(names, session.run(names, feeds)))


# ----------------------------------------------------------------------------------------------
# zooforge's own steps


def _initializers(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    return {t.name: t for t in graph.initializer}


def _array(value: onnx.TensorProto | np.ndarray) -> np.ndarray:
    return numpy_helper.to_array(value) if isinstance(value, onnx.TensorProto) else np.asarray(value)


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    uses: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            uses.setdefault(name, []).append(node)
    return uses


def _channel_vector(value: np.ndarray, channels: int, rank: int) -> np.ndarray | None:
    """``value`` as a per-channel vector when NumPy broadcasting lays it along axis 1 of a
    rank-``rank`` tensor with ``channels`` channels; None when it does not."""
    if value.ndim > rank or rank < 2:
        return None
    shape = (1,) * (rank - value.ndim) + value.shape
    if shape[0] != 1 or any(d != 1 for d in shape[2:]) or shape[1] not in (1, channels):
        return None
    return np.broadcast_to(value.reshape(-1), (channels,))


def fold_scale_into_batchnorm(graph: onnx.GraphProto, constants: Mapping[str, onnx.TensorProto | np.ndarray],
                              listed: bool = False) -> int:
    """Fold ``Mul(BN(x), k)`` and then ``Add(., c)`` (per-channel constants) into the BN's scale
    and bias: ``(x-m)/sqrt(v+e)*s*k + b*k + c``. Returns how many BatchNormalizations took one."""
    graph_outputs = {o.name for o in graph.output}
    fed = set() if listed else {i.name for i in graph.input}
    folded = 0
    for bn in [n for n in graph.node if n.op_type == "BatchNormalization" and n.domain in ("", "ai.onnx")]:
        if len(bn.output) != 1 or any(a.name == "training_mode" and a.i for a in bn.attribute):
            continue
        if not all(name in constants and name not in fed for name in bn.input[1:5]):
            continue
        scale, bias = _array(constants[bn.input[1]]), _array(constants[bn.input[2]])
        if scale.ndim != 1 or scale.dtype != np.float32:
            continue
        channels, rank = scale.shape[0], _rank_of(graph, bn, constants)
        absorbed = []
        current = bn.output[0]
        for op_type in ("Mul", "Add"):
            uses = _consumers(graph).get(current, [])
            if current in graph_outputs or len(uses) != 1 or uses[0].op_type != op_type or uses[0].attribute:
                break
            node = uses[0]
            other = node.input[1] if node.input[0] == current else node.input[0]
            if other == current or other not in constants or other in fed:
                break
            vector = _channel_vector(_array(constants[other]), channels, rank) if rank else None
            if vector is None or vector.dtype != np.float32:
                break
            if op_type == "Mul":
                scale, bias = scale * vector, bias * vector
            else:
                bias = bias + vector
            absorbed.append(node)
            current = node.output[0]
        if not absorbed:
            continue
        names = (f"{bn.output[0]}_folded_scale", f"{bn.output[0]}_folded_bias")
        graph.initializer.extend([numpy_helper.from_array(scale.astype(np.float32), names[0]),
                                  numpy_helper.from_array(bias.astype(np.float32), names[1])])
        if listed:
            graph.input.extend(helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [channels]) for n in names)
        bn.input[1], bn.input[2] = names
        bn.output[0] = current
        for node in absorbed:
            graph.node.remove(node)
        folded += 1
    return folded


def _rank_of(graph: onnx.GraphProto, bn: onnx.NodeProto, constants: Mapping) -> int | None:
    """The rank of a BatchNormalization's input, from the Conv that makes it (its weight's rank)."""
    for node in graph.node:
        if bn.input[0] in node.output and node.op_type == "Conv" and node.input[1] in constants:
            return _array(constants[node.input[1]]).ndim if isinstance(constants[node.input[1]], np.ndarray) \
                else len(constants[node.input[1]].dims)
    return None


def _unsqueeze(x: np.ndarray, node: onnx.NodeProto, axes: np.ndarray | None = None) -> np.ndarray:
    if axes is None:
        axes = next(np.array(a.ints) for a in node.attribute if a.name == "axes")
    rank = x.ndim + len(axes)
    return np.expand_dims(x, tuple(int(a) % rank for a in axes))


def _cast(x: np.ndarray, node: onnx.NodeProto) -> np.ndarray:
    to = next(a.i for a in node.attribute if a.name == "to")
    return x.astype(helper.tensor_dtype_to_np_dtype(to))


# The constant arithmetic onnxoptimizer's fuse_bn_into_conv leaves behind, as NumPy computes it
# in the inputs' own float type (IEEE, correctly rounded, as onnxruntime's CPU kernels).
_FOLDABLE: dict[str, Callable[..., np.ndarray]] = {
    "Add": lambda node, a, b: a + b,
    "Sub": lambda node, a, b: a - b,
    "Mul": lambda node, a, b: a * b,
    "Div": lambda node, a, b: a / b,
    "Sqrt": lambda node, a: np.sqrt(a),
    "Cast": lambda node, a: _cast(a, node),
    "Unsqueeze": lambda node, a, axes=None: _unsqueeze(a, node, axes),
}


def fold_constants(graph: onnx.GraphProto) -> int:
    """Replace each node of :data:`_FOLDABLE` whose inputs are all initializers (and no graph
    inputs, which a caller may feed) by its value; drop the initializers nothing reads any more.
    Returns how many nodes were folded."""
    values = {t.name: t for t in graph.initializer}
    fed = {i.name for i in graph.input}
    new, folded_at = [], []
    for index, node in enumerate(graph.node):
        kernel = _FOLDABLE.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        if kernel is None or len(node.output) != 1 or not node.input or \
                any(name not in values or name in fed for name in node.input):
            continue
        with np.errstate(all="ignore"):
            result = np.asarray(kernel(node, *(_array(values[name]) for name in node.input)))
        tensor = numpy_helper.from_array(result, node.output[0])
        values[node.output[0]] = tensor
        new.append(tensor)
        folded_at.append(index)
    if not folded_at:
        return 0
    for index in reversed(folded_at):  # in place: no copy of the (large) initializers
        del graph.node[index]
    graph.initializer.extend(new)
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    for index in reversed(range(len(graph.initializer))):
        if graph.initializer[index].name not in used:
            del graph.initializer[index]
    return len(folded_at)


def _unlist_initializers(graph: onnx.GraphProto, large: set[str]) -> None:
    names = {t.name for t in graph.initializer} | large
    for index in reversed(range(len(graph.input))):
        if graph.input[index].name in names:
            del graph.input[index]


def _list_initializers(graph: onnx.GraphProto) -> None:
    """List every initializer among the graph inputs, after the real inputs (IR 3's rule)."""
    listed = {i.name for i in graph.input}
    graph.input.extend(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                       for t in graph.initializer if t.name not in listed)


def _restore_header(optimized: onnx.ModelProto, source: onnx.ModelProto) -> None:
    """Keep the source's IR version, opsets, producer and stamp (onnxoptimizer may rewrite them)."""
    for name in ("ir_version", "producer_name", "producer_version", "domain", "model_version", "doc_string"):
        setattr(optimized, name, getattr(source, name))
    del optimized.opset_import[:]
    optimized.opset_import.extend(source.opset_import)
    del optimized.metadata_props[:]
    optimized.metadata_props.extend(source.metadata_props)
    # fused layers' shapes are inferred again by the checker; stale value_info could contradict them
    del optimized.graph.value_info[:]


def _split_large(model: onnx.ModelProto) -> OnnxModel:
    """An OnnxModel whose large initializers live outside the skeleton again."""
    large: dict[str, np.ndarray] = {}
    initializers = model.graph.initializer
    for index in reversed(range(len(initializers))):  # in place, one tensor at a time
        tensor = initializers[index]
        if _array_bytes(tensor) >= LARGE_TENSOR_BYTES:
            large[tensor.name] = np.ascontiguousarray(numpy_helper.to_array(tensor))
            del initializers[index]
    return OnnxModel(model, dict(reversed(large.items())))


def _array_bytes(tensor: onnx.TensorProto) -> int:
    return int(np.prod(tensor.dims, dtype=np.int64)) * helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
