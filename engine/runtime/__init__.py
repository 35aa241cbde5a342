"""Inference backends behind one interface."""

from .base import INPUT_NAME, OUTPUT_NAMES, Backend, BackendSpec

__all__ = ["INPUT_NAME", "OUTPUT_NAMES", "Backend", "BackendSpec"]
