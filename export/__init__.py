"""Export targets (ONNX, TensorRT, the FP16 ONNX proxy) and the per-stage benchmark: ``python -m export --help``.

Only this package (and the torch backend) imports the network definitions; the runtime opens what it writes.
"""
