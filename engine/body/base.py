"""The one body-model interface: SMPL-style pose in, posed mesh and joints out.

The network predicts SMPL pose (root + 23 joints, axis-angle) for every person; a body model turns that into
vertices for rendering. Two implementations sit behind this interface: the free, baked Anny body (default) and the
optional SMPL body built from user-supplied licensed files. Renderers and exporters only see :class:`BodyOutput`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.errors import ConfigError

__all__ = ["SMPL_JOINT_NAMES", "SMPL_PARENTS", "BodyModel", "BodyOutput", "create_body_model"]

# SMPL's 24 joints and kinematic tree (names and parent list only; no SMPL model data).
SMPL_JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle", "right_ankle",
    "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hand", "right_hand",
)
SMPL_PARENTS: tuple[int, ...] = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
LEFT_HIP, RIGHT_HIP = 1, 2


@dataclass
class BodyOutput:
    """Posed bodies for a batch of people.

    Attributes:
        vertices: [B, V, 3] float32, metres, SMPL axes (y up, z forward, subject's left = +x).
        joints: [B, J, 3] float32; the first 24 are the SMPL-24 joints in SMPL order.
    """

    vertices: torch.Tensor
    joints: torch.Tensor


class BodyModel(torch.nn.Module, abc.ABC):
    """A stateless body layer: constants are buffers, every input is explicit, no parameters.

    Attributes:
        faces: [F, 3] int32 triangle indices.
        joint_names: names of the output joints; the first 24 are ``SMPL_JOINT_NAMES``.
        shape_kind: ``"anny_phenotypes"`` or ``"smpl_betas"`` (what the ``shape`` input means).
        num_shape: length of the per-person shape vector.
        num_vertices: V.
    """

    faces: np.ndarray
    joint_names: tuple[str, ...]
    shape_kind: str
    num_shape: int
    num_vertices: int

    @abc.abstractmethod
    def default_shape(self) -> torch.Tensor:
        """[num_shape] float32 shape used when ``shape`` is None."""

    @abc.abstractmethod
    def forward(self, global_orient: torch.Tensor, body_pose: torch.Tensor, shape: torch.Tensor | None = None,
                transl: torch.Tensor | None = None, root_align: bool = True) -> BodyOutput:
        """Pose the body.

        Args:
            global_orient: [B, 3] root rotation, axis-angle.
            body_pose: [B, 69] (or [B, 63], hands then zero) axis-angle of SMPL joints 1..23.
            shape: [B, num_shape] or None for :meth:`default_shape`.
            transl: [B, 3] added last, or None for zero.
            root_align: subtract the mid-hip point before adding ``transl`` (the network's camera convention: the
                mesh is centred on the mid-hip).

        Returns:
            The posed vertices and joints.
        """

    def _prepare(self, global_orient: torch.Tensor, body_pose: torch.Tensor, shape: torch.Tensor | None,
                 transl: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Validate and normalise the inputs.

        Returns:
            ``pose`` [B, 72] (root first), ``shape`` [B, num_shape], ``transl`` [B, 3], all float32.
        """
        if not torch.jit.is_tracing():  # shapes are static in a traced/exported graph
            self._check_shapes(global_orient, body_pose, shape, transl)
        batch = global_orient.shape[0]
        global_orient = global_orient.to(torch.float32)
        body_pose = body_pose.to(torch.float32)
        # [B, 63] -> hands zero; written branch-free so a traced graph accepts both widths.
        body_pose = torch.cat([body_pose, torch.zeros_like(body_pose[:, :6])], dim=1)[:, :69]
        if shape is None:
            shape = self.default_shape().to(global_orient.device)[None].expand(batch, -1)
        if transl is None:
            transl = torch.zeros_like(global_orient)
        return torch.cat([global_orient, body_pose], dim=1), shape.to(torch.float32), transl.to(torch.float32)

    def _check_shapes(self, global_orient: torch.Tensor, body_pose: torch.Tensor, shape: torch.Tensor | None,
                      transl: torch.Tensor | None) -> None:
        """Expected-vs-got errors at the module boundary."""
        if global_orient.dim() != 2 or global_orient.shape[1] != 3:
            raise ConfigError(f"global_orient: expected shape [B, 3], got {tuple(global_orient.shape)}")
        batch = global_orient.shape[0]
        if body_pose.dim() != 2 or body_pose.shape[1] not in (63, 69) or body_pose.shape[0] != batch:
            raise ConfigError(f"body_pose: expected shape [{batch}, 69] or [{batch}, 63], "
                              f"got {tuple(body_pose.shape)}")
        if shape is not None and (shape.dim() != 2 or shape.shape != (batch, self.num_shape)):
            raise ConfigError(f"shape ({self.shape_kind}): expected shape [{batch}, {self.num_shape}], "
                              f"got {tuple(shape.shape)}")
        if transl is not None and (transl.dim() != 2 or transl.shape != (batch, 3)):
            raise ConfigError(f"transl: expected shape [{batch}, 3], got {tuple(transl.shape)}")


def finish(vertices: torch.Tensor, joints: torch.Tensor, transl: torch.Tensor, root_align: bool,
           align_point: torch.Tensor | None = None) -> BodyOutput:
    """Root-align (optionally) and translate.

    Args:
        vertices: [B, V, 3].
        joints: [B, J, 3] with the SMPL-24 joints first.
        transl: [B, 3].
        root_align: subtract ``align_point`` (default: midpoint of the SMPL left/right hip joints).
        align_point: [B, 3] alternative alignment point.
    """
    if root_align:
        if align_point is None:
            align_point = 0.5 * (joints[:, LEFT_HIP] + joints[:, RIGHT_HIP])
        vertices = vertices - align_point[:, None]
        joints = joints - align_point[:, None]
    return BodyOutput(vertices=vertices + transl[:, None], joints=joints + transl[:, None])


ASSETS_DIR = Path(__file__).resolve().parents[2] / "assets" / "body"
DEFAULT_TOPOLOGY = "notoes_collapse10pc"
BODY_KINDS = ("anny", "smpl")


def create_body_model(kind: str = "anny", smpl_path: str | Path | None = None,
                      topology: str | None = None) -> BodyModel:
    """Build the body model the app renders with.

    Args:
        kind: ``"anny"`` (free, baked, default) or ``"smpl"`` (needs ``smplx`` and user-supplied SMPL files).
        smpl_path: SMPL folder, .pkl or .npz; required for ``"smpl"``, refused for ``"anny"``.
        topology: baked Anny topology (default ``notoes_collapse10pc``, file ``assets/body/anny_<topology>.npz``);
            Anny only.

    Raises:
        ConfigError: unknown kind or contradictory options.
        ModelFileError: missing or malformed model files.
    """
    if kind == "anny":
        if smpl_path is not None:
            raise ConfigError("smpl_path is only used with body kind 'smpl'; drop it or choose kind='smpl'")
        from engine.body.anny import AnnyBody

        return AnnyBody.from_file(ASSETS_DIR / f"anny_{topology or DEFAULT_TOPOLOGY}.npz")
    if kind == "smpl":
        if topology is not None:
            raise ConfigError("topology is only used with body kind 'anny'; drop it for kind='smpl'")
        if smpl_path is None:
            raise ConfigError("body kind 'smpl' needs smpl_path (a folder with SMPL_NEUTRAL.pkl/.npz, or the file)")
        from engine.body.smpl import SmplBody

        return SmplBody.from_file(smpl_path)
    raise ConfigError(f"unknown body kind {kind!r}: expected one of {', '.join(BODY_KINDS)}")
