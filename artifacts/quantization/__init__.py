"""Quantization (int8 QOperator and QDQ), datasets, the zoo's preprocessing presets and accuracy evaluation."""
