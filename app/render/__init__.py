"""Overlay rendering on the CPU: a depth-sorted mesh painter plus skeleton/centre/text annotators."""

from .annotators import Annotator, CenterAnnotator, Scene, SkeletonAnnotator, TextAnnotator
from .colors import track_color
from .mesh import MeshAnnotator, render_overlay
from .projection import person_boxes, project_points

__all__ = ["Annotator", "CenterAnnotator", "MeshAnnotator", "Scene", "SkeletonAnnotator", "TextAnnotator",
           "person_boxes", "project_points", "render_overlay", "track_color"]
