"""InstanceHMR engine: the network, checkpoint loading, preprocessing, decoding and body models."""

from .checkpoint import detect_system, load_checkpoint, load_network, save_checkpoint
from .decode import DecodeCfg, decode_people
from .errors import AppError, ModelFileError
from .types import Letterbox, Meshes, People

__all__ = ["AppError", "DecodeCfg", "Letterbox", "Meshes", "ModelFileError", "People", "decode_people",
           "detect_system", "load_checkpoint", "load_network", "save_checkpoint"]
