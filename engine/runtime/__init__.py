"""Inference backends behind one interface; ``open_backend`` picks and configures one (see :mod:`.auto`).

Backend modules import their native libraries (onnxruntime, tensorrt) only when a backend is opened. The runtime
opens artifacts; building them is the ``export`` package's job (see :mod:`.artifacts`).
"""

from .auto import open_backend
from .base import INPUT_NAME, OUTPUT_NAMES, Backend, BackendSpec
from .device import Device, parse_device
from .formats import BACKENDS, FORMATS
from .meta import ArtifactMeta

__all__ = ["BACKENDS", "FORMATS", "INPUT_NAME", "OUTPUT_NAMES", "ArtifactMeta", "Backend", "BackendSpec", "Device",
           "open_backend", "parse_device"]
