"""A NumPy executor for Caffe2 NetDefs: the reference runtime for every source model.

Caffe2 no longer ships anywhere, so zooforge runs NetDefs itself. Operators follow Caffe2's
semantics (including Caffe's pooling arithmetic under ``legacy_pad=3``), float32 in and out.
"""

from zooforge.converters.caffe2.executor.run import infer_shapes, run_net, OPERATORS

__all__ = ["OPERATORS", "infer_shapes", "run_net"]
