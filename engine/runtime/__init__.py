"""Inference backends behind one interface; ``open_backend`` picks and configures one (see :mod:`.auto`).

Backend modules import their native libraries (onnxruntime, tensorrt) only when a backend is opened.
"""

from .auto import BACKENDS, open_backend
from .base import INPUT_NAME, OUTPUT_NAMES, Backend, BackendSpec
from .meta import ArtifactMeta

__all__ = ["BACKENDS", "INPUT_NAME", "OUTPUT_NAMES", "ArtifactMeta", "Backend", "BackendSpec", "open_backend"]
