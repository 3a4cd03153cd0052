"""Groups of Caffe layer types that the loader treats specially."""

from __future__ import annotations

# Layers that feed data at training time; at deploy their first top becomes a net input.
DATA_LAYER_TYPES = frozenset(
    {"Data", "ImageData", "HDF5Data", "MemoryData", "DummyData", "WindowData"}
)

# Layers with no role at deploy time: losses, metrics and sinks.
DROPPED_LAYER_TYPES = frozenset(
    {
        "Accuracy", "SoftmaxWithLoss", "EuclideanLoss", "SigmoidCrossEntropyLoss", "HingeLoss",
        "InfogainLoss", "MultinomialLogisticLoss", "ContrastiveLoss", "Silence", "HDF5Output",
    }
)

# Layers whose parameters are learned and stored in the weights file.
WEIGHTED_LAYER_TYPES = frozenset(
    {"Convolution", "Deconvolution", "InnerProduct", "PReLU", "BatchNorm", "Scale", "Bias",
     "ConvolutionDepthwise", "Normalize"}  # Normalize: SSD's (issue 13), one scale blob
)
