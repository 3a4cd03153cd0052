"""Move an ONNX model between any two opsets of the supported range, one step at a time.

At each step N -> N+1 (or back) only operators whose schema changed at that step are touched,
through the adapters in ``zooforge.versioning.adapters``. A node whose meaning cannot be kept is refused
with an error naming the node, its operator and the step. The result carries the IR version of
its opset and passes the ONNX checker with full shape inference.
"""

from __future__ import annotations

import onnx
from onnx import defs, helper

from zooforge.versioning.adapters import StepRefused, changes_by_key
from zooforge.versioning.checker import check_graph
from zooforge.versioning.editor import GraphEditor
from zooforge.versioning.errors import OpsetError
from zooforge.versioning.opsets import opset_info

# The classic CNN operator set the adapters are written for.
SUPPORTED_OPS = frozenset(
    {
        "Conv", "ConvTranspose", "Relu", "LeakyRelu", "PRelu", "Sigmoid", "Tanh", "Elu", "LRN",
        "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "BatchNormalization",
        "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Sum", "Max", "Concat", "Split", "Slice",
        "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Dropout", "Softmax",
        "Constant", "ConstantOfShape", "Identity", "Pad", "Clip", "Abs", "Exp", "Log", "Pow",
        "Sqrt", "Softplus", "ArgMax", "Cast",
    }
)


def model_opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return entry.version
    raise OpsetError("the model imports no default-domain (ai.onnx) opset")


def convert_opset(model: onnx.ModelProto, target: int) -> onnx.ModelProto:
    """A copy of ``model`` expressed at opset ``target``."""
    info = opset_info(target)
    source = model_opset(model)
    result = onnx.ModelProto()
    result.CopyFrom(model)
    _check_supported(result)
    editor = GraphEditor(result)
    table = changes_by_key()
    step = 1 if target > source else -1
    for version in range(source, target, step):
        new = version + step
        editor.begin_step()
        changed_at = new if step > 0 else version  # the opset whose schema change we cross
        for node in list(result.graph.node):
            if _changed(node.op_type, changed_at):
                change = table.get((node.op_type, changed_at))
                label = f"node '{node.name or node.output[0]}' ({node.op_type})"
                if change is None:
                    raise OpsetError(
                        f"{label} cannot go from opset {version} to {new}: its schema changed at "
                        f"{changed_at} and zooforge has no adapter for that change"
                    )
                try:
                    (change.up if step > 0 else change.down)(editor, node)
                except StepRefused as exc:
                    raise OpsetError(f"{label} cannot go from opset {version} to {new}: {exc}") from None
        _set_opset(result, new)
    _set_opset(result, target)
    _restamp(result, info.ir_version)
    try:
        check_graph(result)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise OpsetError(f"the model moved from opset {source} to {target} fails onnx's checker ({first}); "
                         "the source model may be invalid, or an adapter is wrong") from None
    return result


def _check_supported(model: onnx.ModelProto) -> None:
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            raise OpsetError(
                f"node '{node.name or node.output[0]}' uses domain '{node.domain}'; only ai.onnx "
                "operators can be converted"
            )
        if node.op_type not in SUPPORTED_OPS:
            raise OpsetError(
                f"node '{node.name or node.output[0]}' is a {node.op_type}, which the opset converter "
                f"does not handle; it handles: {', '.join(sorted(SUPPORTED_OPS))}"
            )


def _changed(op_type: str, version: int) -> bool:
    """Whether ``op_type``'s schema starts at ``version`` (it is new or changed there)."""
    try:
        return defs.get_schema(op_type, version).since_version == version
    except defs.SchemaError:
        return False


def _set_opset(model: onnx.ModelProto, version: int) -> None:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            entry.version = version


def _restamp(model: onnx.ModelProto, ir_version: int) -> None:
    """Stamp the opset's IR version; list initializers as inputs exactly when IR <= 3 needs it."""
    model.ir_version = ir_version
    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    inputs = list(model.graph.input)
    del model.graph.input[:]
    kept = [value for value in inputs if value.name not in initializers]
    model.graph.input.extend(kept)
    if ir_version <= 3:
        listed = {value.name: value for value in inputs}
        for name, tensor in initializers.items():
            model.graph.input.append(
                listed.get(name) or helper.make_tensor_value_info(name, tensor.data_type, list(tensor.dims))
            )
    del model.graph.value_info[:]
