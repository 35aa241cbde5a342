"""Body models: SMPL-style pose in, posed mesh out (free baked Anny by default, optional licensed SMPL)."""

from engine.body.base import SMPL_JOINT_NAMES, SMPL_PARENTS, BodyModel, BodyOutput, create_body_model

__all__ = ["SMPL_JOINT_NAMES", "SMPL_PARENTS", "BodyModel", "BodyOutput", "create_body_model"]
