"""Network definitions (one module per architecture)."""

from .instancehmr import MODELS, InstanceHMR, ModelCfg, build_model

__all__ = ["MODELS", "InstanceHMR", "ModelCfg", "build_model"]
