"""Animation export (``--export-anim``): BVH per tracked person and one animated, skinned glTF per clip."""

from .sink import AnimResult, AnimSink, export_clip

__all__ = ["AnimResult", "AnimSink", "export_clip"]
