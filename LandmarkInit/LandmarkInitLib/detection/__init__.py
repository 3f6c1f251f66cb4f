"""Landmark detection at inference time (Slicer-safe: numpy, SimpleITK, onnxruntime; torch only for
TorchScript models when it is installed).

volume -> model_grid (resample + normalize) -> runtime (ONNX / TorchScript by model card) -> grid mm -> RAS.
"""
