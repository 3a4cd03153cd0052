"""Coverage of the handler registry, computed from the registry and ONNX's own schemas (the check
onnx-tensorflow runs): at every opset zooforge supports, the handler version chosen for an operator
is at least the since-version of every ONNX operator it may emit, so no handler emits an operator
as it stood before a later schema change it has not been reviewed against."""

from __future__ import annotations

import pytest
from onnx import defs

from zooforge.converters.onnx.handlers import REGISTRY
from zooforge.converters.caffe2.executor import OPERATORS
from zooforge.versioning import supported_opsets


def _exists(onnx_type: str, opset: int) -> bool:
    try:
        defs.get_schema(onnx_type, opset)
    except defs.SchemaError:
        return False
    return True


@pytest.mark.parametrize("opset", list(supported_opsets()))
def test_chosen_version_is_at_least_each_emitted_schema(opset: int) -> None:
    stale = []
    for caffe2_type, handler in REGISTRY.items():
        chosen = handler.chosen_version(opset)
        if opset < handler.refuses_below:  # its version there emits nothing: it refuses in one sentence
            assert chosen < handler.refuses_below, caffe2_type
            continue
        for onnx_type in handler.emits:
            if not _exists(onnx_type, opset):  # (Resize before 10: that opset's version cannot emit it)
                continue
            since = defs.get_schema(onnx_type, opset).since_version
            if chosen < since:
                stale.append(f"{caffe2_type}: version_{chosen} < {onnx_type}-{since}")
    assert not stale, f"opset {opset}: " + "; ".join(stale)


def test_every_executor_operator_has_a_handler_and_back() -> None:
    # What the executor runs, the frontend can export, and nothing else is registered.
    assert set(REGISTRY) == set(OPERATORS)


def test_handlers_declare_what_they_emit() -> None:
    for caffe2_type, handler in REGISTRY.items():
        assert handler.emits, caffe2_type
        assert handler.versions(), caffe2_type
        for onnx_type in handler.emits:
            assert defs.has(onnx_type), f"{caffe2_type} emits unknown ONNX operator {onnx_type}"
