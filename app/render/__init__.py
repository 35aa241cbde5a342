"""Overlay rendering on the CPU: a depth-sorted mesh painter plus skeleton/centre annotators."""

from .annotators import Annotator, CenterAnnotator, Scene, SkeletonAnnotator
from .colors import track_color
from .mesh import MeshAnnotator, render_overlay
from .projection import person_boxes, project_points

__all__ = ["Annotator", "CenterAnnotator", "MeshAnnotator", "Scene", "SkeletonAnnotator",
           "person_boxes", "project_points", "render_overlay", "track_color"]
