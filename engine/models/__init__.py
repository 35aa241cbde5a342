"""Network definitions (one module per architecture)."""

from .crowdnet import CrowdNet
from .instancehmr import MODELS, InstanceHMR, ModelCfg, build_model
from .jotr import JOTR

__all__ = ["JOTR", "MODELS", "CrowdNet", "InstanceHMR", "ModelCfg", "build_model"]
