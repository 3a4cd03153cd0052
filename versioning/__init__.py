"""Opset bookkeeping shared by every stage: which IR version and ONNX release go with an opset."""

from zooforge.versioning.opsets import OpsetInfo, latest_opset, opset_info, supported_opsets

__all__ = ["OpsetInfo", "latest_opset", "opset_info", "supported_opsets"]
