"""Bake the Anny body model into a small, self-contained .npz (the only module that imports ``anny``).

Why: ``anny`` pulls NVIDIA Warp and roma, builds its model data for minutes on first use, runs in float64 and
cannot be exported to ONNX as is. The app only needs one topology's template, phenotype blend shapes, rest bone
heads and skinning weights; :class:`engine.body.anny.AnnyBody` runs those with plain torch. The .npz is written in
SMPL axes (y up, z forward; Anny is z up, -y forward: ``v_smpl = C^T v_anny`` with ``C = Rx(+90 deg)``).

Set-up (a separate venv, so anny never enters the app's requirements)::

    python3 -m venv .venv-bake
    .venv-bake/bin/pip install torch==2.13.0 anny==0.6.2 numpy
    # engine/__init__.py imports cv2, so the bake venv also needs it:
    .venv-bake/bin/pip install opencv-python-headless==5.0.0.93
    .venv-bake/bin/python -m tools.bake_anny --topology notoes_collapse10pc \\
        --output assets/body/anny_notoes_collapse10pc.npz --verify

Run from the repository root. ``--verify`` drives the real ``anny.Anny`` with the bone orientations that
:class:`AnnyBody` computes for random poses and phenotypes and logs the max vertex difference.

Licences: anny code Apache-2.0 (NAVER), MakeHuman/MPFB2 data CC0 1.0; see assets/body/NOTICE. The non-commercial
SMPL correspondence data of anny is never downloaded: ``anny.paths.download_noncommercial_data`` is replaced first.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import types
from pathlib import Path

import numpy as np
import torch

from engine.errors import ConfigError

logger = logging.getLogger(__name__)

ANNY_VERSION = "0.6.2"
FORMAT_VERSION = 1
# Anny z-up / -y forward from SMPL y-up / +z forward: v_anny = C v_smpl.
C_SMPL_TO_ANNY = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


def _refuse_noncommercial_download(*_args: object, **_kwargs: object) -> None:
    raise RuntimeError("bake_anny: refusing to download anny's non-commercial (SMPL-derived) data")


def _import_anny() -> types.ModuleType:
    try:
        import anny
        import anny.paths
    except ImportError as e:
        raise ConfigError("bake_anny needs the bake venv: python3 -m venv .venv-bake && "
                          ".venv-bake/bin/pip install torch==2.13.0 anny==0.6.2 numpy") from e
    anny.paths.download_noncommercial_data = _refuse_noncommercial_download
    version = getattr(anny, "__version__", None)
    if version is None:
        from importlib.metadata import version as _dist_version

        version = _dist_version("anny")
    if version != ANNY_VERSION:
        raise ConfigError(f"bake_anny is pinned to anny=={ANNY_VERSION}, found {version}: "
                          f"pip install anny=={ANNY_VERSION} in the bake venv")
    return anny


def build_anny(topology: str) -> torch.nn.Module:
    """The reference ``anny.Anny`` (float64, dense LBS, default 6 phenotypes)."""
    anny = _import_anny()
    return anny.Anny(topology=topology, skinning_method="lbs", phenotypes="default")


def _fold_constant_phenotypes(model: torch.nn.Module) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Fold the phenotypes the app never changes (race, cupsize, firmness at 0.5) into the projection.

    anny's blend-shape coefficients are ``prod_k(mask * hat + 1 - mask) @ projection`` over 26 variation columns;
    with the constant columns' hat values fixed, each row's constant factor multiplies its projection row and rows
    with a zero factor vanish. Exact, and it keeps only the 17 columns of the six exposed phenotypes.

    Returns:
        mask [K', 17] uint8, projection [K', C] float64, the anchors of each exposed phenotype.
    """
    from anny.models.model_data import PHENOTYPE_VARIATIONS
    from anny.utils.interpolation import linear_interpolation_coefficients

    labels = list(model.phenotype_labels)
    half = torch.tensor([0.5], dtype=torch.float64)
    const_values: dict[str, float] = {k: 1.0 / 3.0 for k in PHENOTYPE_VARIATIONS["race"]}
    for group in ("cupsize", "firmness"):
        coeffs = linear_interpolation_coefficients(half, model.anchors[group].double())[0]
        const_values.update({k: float(c) for k, c in zip(PHENOTYPE_VARIATIONS[group], coeffs)})
    columns = [k for group in PHENOTYPE_VARIATIONS.values() for k in group]
    variable = [k for label in labels for k in PHENOTYPE_VARIATIONS[label]]
    mask = model.stacked_phenotype_blend_shapes_mask.double().numpy()
    projection = model.phenotype_blendshape_projection.double().numpy()
    factor = np.ones(len(mask))
    for col, key in enumerate(columns):
        if key in const_values:
            factor *= np.where(mask[:, col] > 0, const_values[key], 1.0)
    keep = factor != 0.0
    var_cols = [columns.index(k) for k in variable]
    anchors = [model.anchors[label].double().numpy() for label in labels]
    return mask[keep][:, var_cols].astype(np.uint8), projection[keep] * factor[keep, None], anchors


def bake(topology: str, output: Path) -> Path:
    """Build anny once and write the .npz that AnnyBody loads."""
    model = build_anny(topology).to(torch.float64)
    c_t = torch.from_numpy(C_SMPL_TO_ANNY.T)  # anny -> SMPL axes

    def to_smpl(x: torch.Tensor) -> np.ndarray:
        return (x.double() @ c_t.T).numpy().astype(np.float32)

    mask, projection, anchors = _fold_constant_phenotypes(model)
    labels = list(model.phenotype_labels)
    weights = model.vertex_bone_weights.double().numpy()
    indices = model.vertex_bone_indices.numpy()
    faces = model.get_triangular_faces().numpy()
    arrays: dict[str, np.ndarray] = {
        "format_version": np.array(FORMAT_VERSION, dtype=np.int32),
        "anny_version": np.array(ANNY_VERSION),
        "topology": np.array(topology),
        "template_vertices": to_smpl(model.template_vertices),
        "blendshapes": to_smpl(model.blendshapes),
        "template_heads": to_smpl(model.template_bone_heads),
        "head_blendshapes": to_smpl(model.bone_heads_blendshapes),
        "phenotype_labels": np.array(labels),
        "phenotype_mask": mask,
        "phenotype_projection": projection.astype(np.float32),
        "skin_indices": indices.astype(np.uint8 if model.bone_count < 256 else np.int32),
        "skin_weights": weights.astype(np.float32),
        "bone_names": np.array(model.bone_labels),
        "bone_parents": np.array(model.bone_parents, dtype=np.int32),
        "faces": faces.astype(np.int32),
    }
    for label, anchor in zip(labels, anchors):
        arrays[f"anchors_{label}"] = anchor.astype(np.float32)
    output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(output, **arrays)
    logger.info("wrote %s: %d vertices, %d faces, %d bones, %d blend shapes, %d phenotype rows, %.2f MB",
                output, len(arrays["template_vertices"]), len(faces), model.bone_count, len(arrays["blendshapes"]),
                len(mask), output.stat().st_size / 1e6)
    return output


def verify(topology: str, baked: Path, num_poses: int = 16, seed: int = 0) -> float:
    """Max |vertex difference| (metres) between AnnyBody and ``anny.Anny`` driven with the same bone orientations.

    anny runs in float64 with ``pose_parameterization="world-orient"``: bone orientation ``C G_b C^T R_rest_b``, root
    head at AnnyBody's root position. Random poses (0.5 rad per axis) and random phenotypes in [0, 1].
    """
    from engine.body.anny import AnnyBody

    model = build_anny(topology).to(torch.float64)
    body = AnnyBody.from_file(baked, head_scale=1.0, crown_raise=1.0)  # anny's own head, as the reference has it
    gen = torch.Generator().manual_seed(seed)
    pose = (torch.rand(num_poses, 72, generator=gen) - 0.5) * 1.0
    pose[0] = 0.0
    shape = torch.rand(num_poses, body.num_shape, generator=gen)
    shape[0] = body.default_shape()
    with torch.no_grad():
        posed = body.pose_bones(pose, shape)
        rest = model(phenotype_kwargs=shape.double())
        c = torch.from_numpy(C_SMPL_TO_ANNY)
        world = c @ posed.world_rot.double() @ c.T
        delta = torch.eye(4, dtype=torch.float64).repeat(num_poses, model.bone_count, 1, 1)
        delta[:, :, :3, :3] = world @ rest["rest_bone_poses"][:, :, :3, :3]
        delta[:, 0, :3, 3] = posed.heads[:, 0].double() @ c.T
        ref = model(pose_parameters=delta, phenotype_kwargs=shape.double(), pose_parameterization="world-orient")
    ref_vertices = ref["vertices"] @ c  # back to SMPL axes (row vectors: v C == C^T v)
    err = (ref_vertices - posed.vertices.double()).abs().max().item()
    rest_err = (rest["rest_vertices"] @ c - posed.rest_vertices.double()).abs().max().item()
    logger.info("verify (%d poses): max |vertex diff| vs anny %.3g m (rest mesh %.3g m)", num_poses, err, rest_err)
    return err


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topology", default="notoes_collapse10pc")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--verify", action="store_true", help="compare the baked model with anny after baking")
    parser.add_argument("--verify-only", action="store_true", help="compare an existing --output without baking")
    parser.add_argument("--num-poses", type=int, default=16)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    output = args.output or Path("assets/body") / f"anny_{args.topology}.npz"
    if not args.verify_only:
        bake(args.topology, output)
    if args.verify or args.verify_only:
        err = verify(args.topology, output, num_poses=args.num_poses)
        if not math.isfinite(err) or err > 1e-4:
            logger.error("verification failed: %.3g m > 1e-4 m", err)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
