"""AnnyBody: the free default body (baked Anny, Apache-2.0 / CC0) driven by SMPL joint rotations.

The baked .npz (see :mod:`tools.bake_anny`) holds one Anny topology in SMPL axes. This module needs only
torch and numpy: no anny, warp or roma, so it traces and exports to ONNX.

Retargeting (SMPL's 24 rotations onto Anny's 104-bone rig):

* SMPL local rotations chain into world rotations ``G_j = G_parent(j) R_j`` (world-aligned axes, T-pose rest).
* Each Anny bone copies the world rotation of the SMPL joint it is mapped to, with rotation fractions where one
  SMPL joint spans several Anny bones (spine1 -> spine04/spine03 half each; neck -> neck01/neck02 half each;
  head -> neck03 0.3 / head 0.7); unmapped bones (twist bones, metacarpals, pelvis.L/R, eyes, toe/finger tips)
  follow their parent.
* Anny rests in an A-pose, SMPL's zero pose is a T-pose: the arm bones (upperarm01, lowerarm01, wrist) get a minimal
  swing ``S_b`` that re-aims their segment at +-x; other bones inherit their parent's. With local rotations
  ``S_parent^T R S_b`` the chain telescopes to world rotations ``G_b = W_b S_b``, so no per-bone loop is needed.
* Heads follow their parents (Anny's "world-orient" parameterisation), which makes Anny's own rest bone
  orientations cancel out of the skinning transforms ``x -> G_b (x - h_b) + p_b``.

Shape is Anny's six phenotypes in [0, 1] (SMPL betas cannot be mapped to them without SMPL data); the head is
scaled up by ``HEAD_SCALE`` to real people's proportions (measured, see there).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.body import lbs
from engine.body.base import SMPL_JOINT_NAMES, SMPL_PARENTS, BodyModel, BodyOutput, finish
from engine.errors import ModelFileError

__all__ = ["DEFAULT_PHENOTYPES", "AnnyBody", "PosedBones"]

DEFAULT_PHENOTYPES: dict[str, float] = {
    "gender": 0.5, "age": 0.75, "muscle": 0.5, "weight": 0.5, "height": 0.5, "proportions": 0.5,
}
# Anny's default adult has a small head beside real people: posed by the real-footage fit onto people in photos
# (six group photos, three sport/street photos, three close-ups, messi5; 38 people), its face came out 0.89 of the
# picture's, eyes and ears alike, while its shoulders matched (0.99). The head (every vertex the head bone and its
# children skin, blended by their weight down the neck) is scaled by this about the head bone's head; the faces
# then matched (1.00) and the drawn bodies' heights rose (median ratio to the boxed person 0.857 -> 0.871 on the
# group photos, 0.979 -> 0.987 on the hand-boxed street frames and photos).
HEAD_SCALE = 1.12
# Anny is bald, and the people it is drawn over mostly have hair: the outline a viewer sees, and a box drawn around
# a person. Posed onto people close to the camera (group photos, a card table, close-ups), the drawn crown lay 0.4-0.9
# ear-to-ear widths below the top of the boxed head, while its face points sat on the picture's. The head above
# CROWN_LEVEL of the way from the head bone's head to the crown (just over the eyes: the face points stay where
# they are) is stretched upwards by this: about 3 cm on the default adult, a layer of hair. Photos played as
# webcam-like clips, tracked, recall / precision: six group photos 0.758 / 0.844 -> 0.770 / 0.857, the three wheel
# photos 0.495 / 0.616 -> 0.526 / 0.653, the hand-boxed sport photos 0.857 / 0.880 -> 0.867 / 0.890; cold, the
# hand-boxed set at 1-1.7x 0.924 / 0.925 -> 0.939 / 0.940 (one borderline match), other photo sets, close-ups and
# vtest.avi (video and agreement over lags 1-3) unchanged: there the limbs place the body and 3 cm is 2 % of a
# walker's height. 1.4 (about 5 cm) scored higher still (0.773 / 0.861, 0.536 / 0.667) but draws a head taller
# than a haired one.
CROWN_RAISE = 1.25
CROWN_LEVEL = 0.37  # the eyes are 0.33 of the way up on the default adult
# Approximate SMPL-neutral pelvis joint (J_regressor @ v_template)[0]: where the root goes without root alignment,
# so SMPL camera translations put the body at about the same place.
PELVIS_OFFSET = (0.0, -0.22, 0.03)

_SIDES = (("left", "L"), ("right", "R"))
# SMPL joint -> (Anny bone, cumulative fraction of the joint's rotation reached at that bone).
_BONE_MAP: dict[str, list[tuple[str, float]]] = {
    "pelvis": [("root", 1.0)],
    "spine1": [("spine04", 0.5), ("spine03", 1.0)],
    "spine2": [("spine02", 1.0)],
    "spine3": [("spine01", 1.0)],
    "neck": [("neck01", 0.5), ("neck02", 1.0)],
    "head": [("neck03", 0.3), ("head", 1.0)],
}
# SMPL joint -> the Anny bone whose head is reported as that joint.
_JOINT_AT: dict[str, str] = {"pelvis": "root", "spine1": "spine04", "spine2": "spine02", "spine3": "spine01",
                             "neck": "neck01", "head": "head"}
for _side, _s in _SIDES:
    _limb = {"hip": "upperleg01", "knee": "lowerleg01", "ankle": "foot", "collar": "clavicle",
             "shoulder": "upperarm01", "elbow": "lowerarm01", "wrist": "wrist"}
    for _joint, _bone in _limb.items():
        _BONE_MAP[f"{_side}_{_joint}"] = [(f"{_bone}.{_s}", 1.0)]
        _JOINT_AT[f"{_side}_{_joint}"] = f"{_bone}.{_s}"
    _BONE_MAP[f"{_side}_foot"] = [(f"toe{i}-1.{_s}", 1.0) for i in range(1, 6)]
    _BONE_MAP[f"{_side}_hand"] = [(f"finger{i}-1.{_s}", 1.0) for i in range(2, 6)]
    _JOINT_AT[f"{_side}_foot"] = f"toe3-1.{_s}"
    _JOINT_AT[f"{_side}_hand"] = f"finger3-1.{_s}"
# Arm bones re-aimed at the T-pose: (bone, the bone whose head ends its segment, target direction).
_SWING: list[tuple[str, str, tuple[float, float, float]]] = [
    (f"{bone}.{s}", f"{end}.{s}", (sign, 0.0, 0.0))
    for s, sign in (("L", 1.0), ("R", -1.0))
    for bone, end in (("upperarm01", "lowerarm01"), ("lowerarm01", "wrist"), ("wrist", "finger3-1"))
]


@dataclass
class PosedBones:
    """Intermediate results of :meth:`AnnyBody.pose_bones` (SMPL axes, no root alignment or translation).

    Attributes:
        vertices: [B, V, 3] posed vertices, root head at ``PELVIS_OFFSET``.
        heads: [B, J, 3] posed Anny bone heads.
        world_rot: [B, J, 3, 3] per-bone world rotation relative to the rest pose.
        rest_vertices: [B, V, 3] shaped rest mesh.
        rest_heads: [B, J, 3] shaped rest bone heads.
    """

    vertices: torch.Tensor
    heads: torch.Tensor
    world_rot: torch.Tensor
    rest_vertices: torch.Tensor
    rest_heads: torch.Tensor


def _ancestor_matrix(parents: list[int]) -> np.ndarray:
    """``A[c, a] = 1`` if bone a is c or an ancestor of c, the root excluded (see :func:`lbs.posed_heads`)."""
    a = np.zeros((len(parents), len(parents)), dtype=np.float32)
    for c in range(1, len(parents)):
        b = c
        while b > 0:
            a[c, b] = 1.0
            b = parents[b]
    return a


class AnnyBody(BodyModel):
    """Baked Anny mesh posed by SMPL rotations; shape = 6 Anny phenotypes (see module docstring)."""

    shape_kind = "anny_phenotypes"

    def __init__(self, arrays: dict[str, np.ndarray], head_scale: float = HEAD_SCALE,
                 crown_raise: float = CROWN_RAISE) -> None:
        super().__init__()
        names = [str(n) for n in arrays["bone_names"]]
        parents = [int(p) for p in arrays["bone_parents"]]
        index = {n: i for i, n in enumerate(names)}
        self.bone_names: tuple[str, ...] = tuple(names)
        self.topology = str(arrays["topology"])
        self.phenotype_labels: tuple[str, ...] = tuple(str(x) for x in arrays["phenotype_labels"])
        self.faces = np.ascontiguousarray(arrays["faces"], dtype=np.int32)
        self.joint_names = SMPL_JOINT_NAMES
        self.num_shape = len(self.phenotype_labels)
        self.num_vertices = int(arrays["template_vertices"].shape[0])

        f32 = {"dtype": torch.float32}
        num_blend = arrays["blendshapes"].shape[0]
        self.register_buffer("template_vertices", torch.tensor(arrays["template_vertices"], **f32))
        self.register_buffer("blendshapes", torch.tensor(arrays["blendshapes"], **f32).reshape(num_blend, -1))
        self.register_buffer("template_heads", torch.tensor(arrays["template_heads"], **f32))
        self.register_buffer("head_blendshapes",
                             torch.tensor(arrays["head_blendshapes"], **f32).reshape(num_blend, -1))
        self.register_buffer("phenotype_mask", torch.tensor(arrays["phenotype_mask"], **f32))
        self.register_buffer("phenotype_projection", torch.tensor(arrays["phenotype_projection"], **f32))
        # Hat functions: column k of the mask is anchor k of phenotype owner[k] (anchors are evenly spaced).
        anchors = [np.asarray(arrays[f"anchors_{label}"], dtype=np.float64) for label in self.phenotype_labels]
        self.register_buffer("anchor_values", torch.tensor(np.concatenate(anchors), **f32))
        self.register_buffer("anchor_spacing", torch.tensor(np.concatenate(
            [np.full(len(a), a[1] - a[0]) for a in anchors]), **f32))
        self.register_buffer("anchor_owner", torch.tensor(np.concatenate(
            [np.full(len(a), i) for i, a in enumerate(anchors)]), dtype=torch.int64))
        self.register_buffer("phenotype_lo", torch.tensor([a[0] for a in anchors], **f32))
        self.register_buffer("phenotype_hi", torch.tensor([a[-1] for a in anchors], **f32))

        skin = np.zeros((self.num_vertices, len(names)), dtype=np.float64)
        np.add.at(skin, (np.arange(self.num_vertices)[:, None], arrays["skin_indices"].astype(np.int64)),
                  arrays["skin_weights"].astype(np.float64))
        self.register_buffer("skin_weights", torch.tensor(skin, **f32))
        # how much of each vertex the head bone and its children carry (see HEAD_SCALE; 1.0 = Anny as baked)
        self.head_scale = float(head_scale)
        self._head_bone = index["head"]
        ancestors = _ancestor_matrix(parents)
        in_head = ancestors[:, self._head_bone] > 0
        self.register_buffer("head_weight", torch.tensor(skin[:, in_head].sum(axis=1), **f32))
        self.crown_raise = float(crown_raise)  # see CROWN_RAISE (1.0 = Anny's own crown)
        self.register_buffer("head_only", self.head_weight > 0.999)

        self.register_buffer("parents", torch.tensor([0, *parents[1:]], dtype=torch.int64))
        self.register_buffer("ancestors", torch.tensor(ancestors))
        self.register_buffer("pelvis_offset", torch.tensor(PELVIS_OFFSET, **f32))
        self._levels = lbs.chain_levels(SMPL_PARENTS)
        self._build_retarget(index, parents)

    def _build_retarget(self, index: dict[str, int], parents: list[int]) -> None:
        """Per-bone gather indices: which (possibly partial) SMPL world rotation and which arm swing each bone uses."""
        partial: list[tuple[int, float]] = []  # extra rotations G_parent(j) R(f theta_j), after the 24 full ones
        source: dict[int, int] = {}
        for j, joint in enumerate(SMPL_JOINT_NAMES):
            for bone, frac in _BONE_MAP[joint]:
                if bone not in index:
                    raise ModelFileError(f"baked Anny file lacks bone {bone!r}: re-bake with python -m tools.bake_anny")
                if frac == 1.0:
                    source[index[bone]] = j
                else:
                    source[index[bone]] = 24 + len(partial)
                    partial.append((j, frac))
        swing = {index[bone]: k + 1 for k, (bone, _, _) in enumerate(_SWING)}
        rot_idx, swing_idx = [], []
        for b in range(len(parents)):
            a = b
            while a not in source:
                a = parents[a]
            rot_idx.append(source[a])
            a = b
            while a >= 0 and a not in swing:
                a = parents[a]
            swing_idx.append(swing.get(a, 0))
        self.register_buffer("rot_index", torch.tensor(rot_idx, dtype=torch.int64))
        self.register_buffer("swing_index", torch.tensor(swing_idx, dtype=torch.int64))
        self.register_buffer("partial_joint", torch.tensor([j for j, _ in partial], dtype=torch.int64))
        self.register_buffer("partial_parent", torch.tensor([SMPL_PARENTS[j] for j, _ in partial], dtype=torch.int64))
        self.register_buffer("partial_frac", torch.tensor([f for _, f in partial], dtype=torch.float32))
        self.register_buffer("swing_start", torch.tensor([index[b] for b, _, _ in _SWING], dtype=torch.int64))
        self.register_buffer("swing_end", torch.tensor([index[e] for _, e, _ in _SWING], dtype=torch.int64))
        self.register_buffer("swing_target", torch.tensor([t for _, _, t in _SWING], dtype=torch.float32))
        self.register_buffer("joint_bones", torch.tensor([index[_JOINT_AT[n]] for n in SMPL_JOINT_NAMES],
                                                         dtype=torch.int64))

    @classmethod
    def from_file(cls, path: str | Path, head_scale: float = HEAD_SCALE, crown_raise: float = CROWN_RAISE) -> AnnyBody:
        """Load a baked .npz, with a one-line error for a missing or foreign file (``head_scale`` and
        ``crown_raise`` 1.0: Anny's own head, as the bake's check against the anny package needs)."""
        path = Path(path)
        if not path.is_file():
            raise ModelFileError(f"Anny body file not found: {path}; bake it with "
                                 f"python -m tools.bake_anny --output {path}")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError) as e:
            raise ModelFileError(f"cannot read Anny body file {path}: {e}; re-bake it with "
                                 f"python -m tools.bake_anny") from e
        required = ("template_vertices", "blendshapes", "template_heads", "head_blendshapes", "phenotype_labels",
                    "phenotype_mask", "phenotype_projection", "skin_indices", "skin_weights", "bone_names",
                    "bone_parents", "faces", "topology")
        missing = [k for k in required if k not in arrays]
        if missing:
            raise ModelFileError(f"{path} is not a baked Anny body (missing {', '.join(missing)}); "
                                 f"re-bake it with python -m tools.bake_anny")
        return cls(arrays, head_scale, crown_raise)

    def default_shape(self) -> torch.Tensor:
        return torch.tensor([DEFAULT_PHENOTYPES.get(label, 0.5) for label in self.phenotype_labels],
                            dtype=torch.float32)

    def blend_coefficients(self, shape: torch.Tensor) -> torch.Tensor:
        """Phenotypes [B, 6] -> blend-shape coefficients [B, C] with anny's piecewise-linear (hat) interpolation.

        Values are clamped to each phenotype's anchor range as anny does without extrapolation; the hat form
        ``max(0, 1 - |v - a_k| / spacing)`` equals anny's searchsorted interpolation and exports to ONNX.
        """
        value = torch.minimum(torch.maximum(shape, self.phenotype_lo), self.phenotype_hi)
        hats = torch.clamp(1.0 - (value[:, self.anchor_owner] - self.anchor_values).abs() / self.anchor_spacing,
                           min=0.0)  # [B, 17]
        mask = self.phenotype_mask
        weights = torch.prod(hats[:, None, :] * mask + (1.0 - mask), dim=-1)  # [B, K]
        return weights @ self.phenotype_projection

    def pose_bones(self, pose: torch.Tensor, shape: torch.Tensor) -> PosedBones:
        """Pose and shape the mesh (no root alignment, no translation).

        Args:
            pose: [B, 72] SMPL axis-angle, root first.
            shape: [B, num_shape] phenotypes.
        """
        batch = pose.shape[0]
        eager = not torch.jit.is_tracing()  # a traced/exported graph keeps the plain dense form
        if eager and batch > 0 and bool((shape == shape[:1]).all()):
            # everyone has the same shape (the app passes the default): the shaped rest mesh, rest heads and arm
            # swings are computed once and shared, and come from a cache unless the shape needs gradients
            one = self._shape_rest(shape[:1]) if shape.requires_grad else self._shaped(shape[:1])
            rest_vertices, rest_heads, bone_swings = (t.expand(batch, *t.shape[1:]) for t in one)
        else:
            rest_vertices, rest_heads, bone_swings = self._shape_rest(shape)

        rotvecs = pose.reshape(batch, 24, 3)
        local = lbs.batch_rodrigues(rotvecs.reshape(-1, 3)).reshape(batch, 24, 3, 3)
        smpl_world = lbs.world_rotations(local, self._levels)
        part_vecs = rotvecs[:, self.partial_joint] * self.partial_frac[:, None]
        part_local = lbs.batch_rodrigues(part_vecs.reshape(-1, 3)).reshape(batch, -1, 3, 3)
        partial_world = torch.matmul(smpl_world[:, self.partial_parent], part_local)
        sources = torch.cat([smpl_world, partial_world], dim=1)

        world_rot = torch.matmul(sources[:, self.rot_index], bone_swings)
        root = self.pelvis_offset.expand(batch, 3)
        heads = lbs.posed_heads(world_rot, rest_heads, self.parents, self.ancestors, root)
        weights = self._sparse_skin() if eager else self.skin_weights
        vertices = lbs.linear_blend_skinning(rest_vertices, weights, world_rot, rest_heads, heads)
        return PosedBones(vertices, heads, world_rot, rest_vertices, rest_heads)

    def _shape_rest(self, shape: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Everything that depends on the shape only: rest vertices [B, V, 3], rest heads [B, J, 3] and each
        bone's arm swing [B, J, 3, 3] (see the module docstring)."""
        batch = shape.shape[0]
        coeffs = self.blend_coefficients(shape)
        rest_vertices = self.template_vertices + (coeffs @ self.blendshapes).reshape(batch, -1, 3)
        rest_heads = self.template_heads + (coeffs @ self.head_blendshapes).reshape(batch, -1, 3)
        if self.head_scale != 1.0:  # rigidly carried by the head when posed (its children follow it)
            pivot = rest_heads[:, self._head_bone][:, None]
            rest_vertices = rest_vertices + ((self.head_scale - 1.0) * self.head_weight[None, :, None]) * (
                rest_vertices - pivot)
        if self.crown_raise != 1.0:  # see CROWN_RAISE: the top of the head stretched upwards, the face kept
            base = rest_heads[:, self._head_bone, 1:2]
            y = rest_vertices[..., 1]
            crown = torch.where(self.head_only, y, torch.full_like(y, -torch.inf)).amax(dim=1, keepdim=True)
            lift = (self.crown_raise - 1.0) * torch.clamp(y - (base + CROWN_LEVEL * (crown - base)), min=0.0)
            rest_vertices = torch.stack([rest_vertices[..., 0], y + lift * self.head_weight, rest_vertices[..., 2]],
                                        dim=-1)
        seg = rest_heads[:, self.swing_end] - rest_heads[:, self.swing_start]  # [B, 6, 3]
        seg = seg / torch.sqrt(torch.clamp((seg * seg).sum(-1, keepdim=True), min=1e-12))
        swings = lbs.swing_rotation(seg, self.swing_target.expand_as(seg))
        eye = torch.eye(3, dtype=swings.dtype, device=swings.device).expand(batch, 1, 3, 3)
        swings = torch.cat([eye, swings], dim=1)
        return rest_vertices, rest_heads, swings[:, self.swing_index]

    def _shaped(self, shape: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`_shape_rest` of one shape [1, num_shape], cached by value.

        The blend is a [1, C] x [C, 3V] product plus the swing chain, ~0.7 ms per frame on one core, and the app
        poses every person with the same (default) shape, frame after frame. A few shapes are kept; moving the
        module (``.to()``) clears them. Callers skip the cache for a shape that needs gradients.
        """
        # inference-mode tensors cannot join autograd later: those made inside the mode are kept apart
        key = (shape.cpu().numpy().tobytes(), shape.dtype, self.template_vertices.device,
               torch.is_inference_mode_enabled())
        cache: dict = self.__dict__.setdefault("_shape_cache", {})
        hit = cache.get(key)
        if hit is None:
            hit = self._shape_rest(shape)
            if len(cache) >= 8:
                cache.pop(next(iter(cache)))
            cache[key] = hit
        return hit

    def _apply(self, fn, *args, **kwargs):
        self.__dict__.pop("_shape_cache", None)  # cached tensors follow the old buffers' device and dtype
        self.__dict__.pop("_skin_csr", None)
        return super()._apply(fn, *args, **kwargs)

    def _sparse_skin(self) -> torch.Tensor:
        """The skinning weights as a sparse CSR matrix (cached).

        A vertex follows ~3 of the 104 bones, so the dense [V, J] product does ~30x the needed work: for a crowd of
        47 that was ~25 ms of the body stage, sparse ~5 ms.
        """
        w = self.skin_weights
        # one per device/dtype, and apart for inference mode: a matrix made inside it cannot join autograd later
        key = (w.device, w.dtype, torch.is_inference_mode_enabled())
        cache: dict = self.__dict__.setdefault("_skin_csr", {})
        cached = cache.get(key)
        if cached is None:
            with warnings.catch_warnings():  # "sparse CSR support is in beta": used for one product only
                warnings.simplefilter("ignore", UserWarning)
                cached = cache[key] = w.to_sparse_csr()
        return cached

    def forward(self, global_orient: torch.Tensor, body_pose: torch.Tensor, shape: torch.Tensor | None = None,
                transl: torch.Tensor | None = None, root_align: bool = True) -> BodyOutput:
        pose, shape, transl = self._prepare(global_orient, body_pose, shape, transl)
        posed = self.pose_bones(pose, shape)
        return finish(posed.vertices, posed.heads[:, self.joint_bones], transl, root_align)

    def extra_repr(self) -> str:
        return f"topology={self.topology}, vertices={self.num_vertices}, bones={len(self.bone_names)}"
