"""The opset table: for every default-domain opset, the ONNX release and IR version to stamp.

Derived from ``onnx.helper.VERSION_TABLE`` (release, IR version, ai.onnx opset, ai.onnx.ml
opset). An opset that no release introduced on its own (2, 3, 4) takes the first release that
supports it, which for opset 3 is ONNX 1.1 with IR 3, as the ONNX model zoo stamped it.
"""

from __future__ import annotations

from dataclasses import dataclass
import onnx
from onnx import defs, helper

from zooforge.versioning.errors import OpsetError

MIN_OPSET = 3


@dataclass(frozen=True)
class OpsetInfo:
    opset: int
    ir_version: int
    onnx_release: str

    @property
    def initializers_are_inputs(self) -> bool:
        """Before IR 4 every initializer had to be listed among the graph inputs too."""
        return self.ir_version <= 3


def latest_opset() -> int:
    """The newest default-domain opset the installed onnx knows."""
    return defs.onnx_opset_version()


def supported_opsets() -> range:
    return range(MIN_OPSET, latest_opset() + 1)


def opset_info(opset: int) -> OpsetInfo:
    if opset not in supported_opsets():
        raise OpsetError(
            f"opset {opset} is outside the supported range {MIN_OPSET}..{latest_opset()} "
            f"(onnx {onnx.__version__} is installed)"
        )
    for row in helper.VERSION_TABLE:  # (release, IR version, ai.onnx opset, ai.onnx.ml opset, ...)
        release, ir_version, ai_onnx = row[0], row[1], row[2]
        if ai_onnx >= opset:
            return OpsetInfo(opset, ir_version, release)
    # The installed onnx knows this opset but its table has no row yet: stamp its own IR.
    return OpsetInfo(opset, onnx.IR_VERSION, onnx.__version__)
