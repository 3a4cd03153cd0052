"""The Caffe2 -> ONNX frontend."""
