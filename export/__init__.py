"""Export targets (ONNX, TensorRT, the FP16 ONNX proxy): ``python -m export --help``.

Only this package (and the torch backends) imports the network definitions; the runtime opens what it writes.
Importing the package registers its builder with the runtime (see :mod:`export.artifacts`), so the runtime can
build a missing artifact in any process that has the exporter loaded.
"""

from .artifacts import install_builder

install_builder()
