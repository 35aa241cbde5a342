"""SmplBody: the optional SMPL body built from user-supplied, licensed SMPL files through ``smplx``.

``smplx`` (MPI non-commercial licence) is imported lazily, only when this body is chosen. SMPL model files are
pickles written with chumpy objects; they are read here with a restricted unpickler (numpy arrays, scipy sparse
matrices and chumpy stand-ins only, never arbitrary callables), converted once to a clean .npz and handed to
``smplx.SMPL`` through ``data_struct``, so neither chumpy nor ``pickle.load`` on untrusted data is ever needed.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import logging
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.body import lbs
from engine.body.base import SMPL_JOINT_NAMES, BodyModel, BodyOutput, finish
from engine.errors import ConfigError, ModelFileError

__all__ = ["SMPL_EXTRA_JOINT_NAMES", "SmplBody", "find_smpl_file", "load_smpl_arrays"]

logger = logging.getLogger(__name__)

# smplx appends these 21 vertex-picked joints (its 'smplh' vertex ids) after the 24 SMPL joints.
SMPL_EXTRA_JOINT_NAMES: tuple[str, ...] = (
    "nose", "right_eye", "left_eye", "right_ear", "left_ear", "left_big_toe", "left_small_toe", "left_heel",
    "right_big_toe", "right_small_toe", "right_heel", "left_thumb", "left_index", "left_middle", "left_ring",
    "left_pinky", "right_thumb", "right_index", "right_middle", "right_ring", "right_pinky",
)
SMPL_FILE_NAMES = (
    "SMPL_NEUTRAL.npz", "SMPL_NEUTRAL.pkl", "basicmodel_neutral_lbs_10_207_0_v1.1.0.pkl",
    "basicModel_neutral_lbs_10_207_0_v1.0.0.pkl", "basicmodel_neutral_lbs_10_207_0_v1.0.0.pkl",
    "smpl/SMPL_NEUTRAL.npz", "smpl/SMPL_NEUTRAL.pkl",
)
NUM_VERTICES, NUM_JOINTS, NUM_FACES = 6890, 24, 13776
CACHE_DIR = Path.home() / ".cache" / "instancehmr-live"
_CACHE_VERSION = 1

# (module, name) pairs the restricted unpickler may resolve; everything else is refused.
_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("copyreg", "_reconstructor"), ("builtins", "object"),
    ("_codecs", "encode"),  # protocol-2 pickles written by Python 3 store bytes as _codecs.encode(str, "latin1")
}
_SPARSE_MODULES = ("scipy.sparse.csc", "scipy.sparse._csc", "scipy.sparse.csr", "scipy.sparse._csr",
                   "scipy.sparse.compressed", "scipy.sparse._compressed")


class _ChumpyStub:
    """Stands in for any ``chumpy`` class: keeps the pickled ``__dict__`` (the array lives in ``x``)."""

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple):  # (dict state, slot state)
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            self.__dict__.update(state)


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only numpy/scipy-sparse reconstruction and chumpy stand-ins; refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "chumpy" or module.startswith("chumpy."):
            return _ChumpyStub
        if (module, name) in _NUMPY_GLOBALS:
            return super().find_class(module, name)
        if module in _SPARSE_MODULES and name in ("csc_matrix", "csr_matrix"):
            import scipy.sparse

            return getattr(scipy.sparse, name)
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in an SMPL model file")


def _to_array(key: str, value: Any) -> np.ndarray:
    if isinstance(value, _ChumpyStub):
        if "x" not in value.__dict__:
            raise ModelFileError(f"SMPL key {key!r} is a chumpy object without a stored array; "
                                 "convert the file to .npz with a chumpy-based tool")
        value = value.__dict__["x"]
    if hasattr(value, "toarray"):  # scipy sparse
        value = value.toarray()
    return np.asarray(value)


def read_smpl_pickle(path: Path) -> dict[str, np.ndarray]:
    """Read an official SMPL .pkl without chumpy and without running code from the file."""
    try:
        with open(path, "rb") as f:
            raw = _RestrictedUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, TypeError, ValueError) as e:
        raise ModelFileError(f"{path} is not a usable SMPL model pickle ({e}); "
                             "use the official SMPL_NEUTRAL.pkl or a converted .npz") from e
    if not isinstance(raw, dict):
        raise ModelFileError(f"{path}: expected a dict of SMPL arrays, got {type(raw).__name__}")
    arrays = {}
    for key, value in raw.items():
        try:
            arrays[str(key)] = _to_array(str(key), value)
        except (TypeError, ValueError):
            logger.debug("skipping non-array SMPL key %s", key)
    return arrays


def validate_smpl_arrays(arrays: dict[str, np.ndarray], source: Path) -> dict[str, np.ndarray]:
    """Check the keys/shapes smplx needs and return clean arrays (float32, int64 kintree/faces, dense regressor)."""
    expected = {"v_template": (NUM_VERTICES, 3), "shapedirs": (NUM_VERTICES, 3, None),
                "posedirs": (NUM_VERTICES, 3, (NUM_JOINTS - 1) * 9), "J_regressor": (NUM_JOINTS, NUM_VERTICES),
                "weights": (NUM_VERTICES, NUM_JOINTS), "kintree_table": (2, NUM_JOINTS), "f": (NUM_FACES, 3)}
    clean: dict[str, np.ndarray] = {}
    for key, shape in expected.items():
        if key not in arrays:
            raise ModelFileError(f"{source}: SMPL key {key!r} is missing; expected an SMPL model file "
                                 "(SMPL_NEUTRAL.pkl or its .npz conversion)")
        arr = _to_array(key, arrays[key])
        if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
            want = tuple("N" if s is None else s for s in shape)
            raise ModelFileError(f"{source}: SMPL key {key!r} has shape {arr.shape}, expected {want}")
        clean[key] = arr
    if clean["shapedirs"].shape[2] < 10:
        raise ModelFileError(f"{source}: SMPL shapedirs has {clean['shapedirs'].shape[2]} betas, expected >= 10")
    for key in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights"):
        clean[key] = clean[key].astype(np.float32)
    clean["kintree_table"] = clean["kintree_table"].astype(np.int64)
    clean["f"] = clean["f"].astype(np.int64)
    return clean


def find_smpl_file(path: str | Path) -> Path:
    """Resolve a folder to the SMPL file inside it (see ``SMPL_FILE_NAMES``), or check a file path."""
    path = Path(path).expanduser()
    if path.is_dir():
        for name in SMPL_FILE_NAMES:
            if (path / name).is_file():
                return path / name
        raise ModelFileError(f"no SMPL model file in {path}: expected one of {', '.join(SMPL_FILE_NAMES[:3])}")
    if not path.is_file():
        raise ModelFileError(f"SMPL model file not found: {path}; download SMPL (licensed, smpl.is.tue.mpg.de) "
                             "and point to SMPL_NEUTRAL.pkl or its folder")
    if path.suffix not in (".pkl", ".npz"):
        raise ModelFileError(f"{path}: expected an SMPL .pkl or .npz file, got {path.suffix or 'no suffix'}")
    return path


def _cache_path(source: Path) -> Path:
    """Where the clean .npz of ``source`` goes: next to it if writable, else the user cache dir."""
    name = f"{source.stem}.clean.npz"
    if os.access(source.parent, os.W_OK):
        return source.parent / name
    digest = hashlib.sha1(str(source.resolve()).encode()).hexdigest()[:10]  # stable across runs, unlike hash()
    return CACHE_DIR / f"{digest}_{name}"


def _source_stamp(source: Path) -> np.ndarray:
    st = source.stat()
    return np.array([_CACHE_VERSION, st.st_size, st.st_mtime_ns], dtype=np.int64)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Plain arrays of an .npz; object arrays (e.g. strings some converters store) are skipped, never unpickled."""
    arrays = {}
    try:
        with np.load(path, allow_pickle=False) as data:
            for key in data.files:
                try:
                    arrays[key] = data[key]
                except ValueError:
                    logger.debug("skipping object array %s in %s", key, path)
    except (OSError, ValueError) as e:
        raise ModelFileError(f"cannot read SMPL .npz {path} ({e}); re-export it with plain arrays") from e
    return arrays


def load_smpl_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Load and validate SMPL arrays from a folder, a .pkl (converted once, cached as .npz) or a .npz.

    Raises:
        ModelFileError: missing file, refused pickle content, missing or mis-shaped key.
    """
    source = find_smpl_file(path)
    if source.suffix == ".npz":
        return validate_smpl_arrays(_read_npz(source), source)
    cache = _cache_path(source)
    stamp = _source_stamp(source)
    if cache.is_file():
        cached = _read_npz(cache)
        if np.array_equal(cached.pop("_source_stamp", None), stamp):
            return validate_smpl_arrays(cached, source)
    clean = validate_smpl_arrays(read_smpl_pickle(source), source)
    for target in (cache, CACHE_DIR / cache.name):
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            np.savez(target, _source_stamp=stamp, **clean)
            logger.info("converted %s to %s", source, target)
            break
        except OSError as e:
            logger.warning("cannot write SMPL cache %s (%s)", target, e)
    return clean


class SmplBody(BodyModel):
    """SMPL via ``smplx.SMPL`` (betas shape, 45 joints: 24 SMPL + 21 vertex-picked).

    Root alignment uses the midpoint of SMPL joints 1 and 2 (left/right hip). The official ROMP code aligns on the
    hips of its extra regressor (``J_regressor_extra``, LSP hips), which is not part of the SMPL files; if a
    ``J_regressor_extra.npy`` of shape [9, 6890] sits next to the SMPL file, its rows 0 and 1 (R_Hip, L_Hip) are
    used instead, so meshes line up with ROMP's camera translations exactly.
    """

    shape_kind = "smpl_betas"

    def __init__(self, arrays: dict[str, np.ndarray], j_regressor_extra: np.ndarray | None = None,
                 num_betas: int = 10) -> None:
        super().__init__()
        try:
            smplx = importlib.import_module("smplx")
        except ImportError as e:
            raise ConfigError("the SMPL body needs smplx: pip install smplx==0.1.28 "
                              "(MPI non-commercial licence), or use the default Anny body") from e
        with contextlib.redirect_stdout(io.StringIO()):  # smplx prints a warning for 10-beta files
            self.smpl = smplx.SMPL(model_path="", data_struct=smplx.utils.Struct(**arrays), num_betas=num_betas,
                                   create_betas=False, create_global_orient=False, create_body_pose=False,
                                   create_transl=False)
        self.faces = np.ascontiguousarray(arrays["f"], dtype=np.int32)
        self.joint_names = SMPL_JOINT_NAMES + SMPL_EXTRA_JOINT_NAMES
        self.num_shape = int(self.smpl.num_betas)
        self.num_vertices = int(arrays["v_template"].shape[0])
        hips = None
        if j_regressor_extra is not None:
            if j_regressor_extra.shape != (9, NUM_VERTICES):
                raise ModelFileError(f"J_regressor_extra has shape {j_regressor_extra.shape}, expected (9, 6890)")
            hips = torch.tensor(0.5 * (j_regressor_extra[0] + j_regressor_extra[1]), dtype=torch.float32)
        self.align_regressor: torch.Tensor | None
        self.register_buffer("align_regressor", hips)  # [6890] mid-hip regressor row, or None

    @classmethod
    def from_file(cls, path: str | Path, num_betas: int = 10) -> SmplBody:
        """Load SMPL from a folder / .pkl / .npz, plus ``J_regressor_extra.npy`` next to it when present."""
        source = find_smpl_file(path)
        arrays = load_smpl_arrays(source)
        extra_path = source.parent / "J_regressor_extra.npy"
        extra = None
        if extra_path.is_file():
            try:
                extra = np.load(extra_path, allow_pickle=False)
            except (OSError, ValueError) as e:
                raise ModelFileError(f"cannot read {extra_path} ({e}); remove it or replace it") from e
        return cls(arrays, extra, num_betas=num_betas)

    def default_shape(self) -> torch.Tensor:
        return torch.zeros(self.num_shape, dtype=torch.float32)

    def forward(self, global_orient: torch.Tensor, body_pose: torch.Tensor, shape: torch.Tensor | None = None,
                transl: torch.Tensor | None = None, root_align: bool = True) -> BodyOutput:
        pose, shape, transl = self._prepare(global_orient, body_pose, shape, transl)
        batch = pose.shape[0]
        # Our clamp-guarded Rodrigues (smplx adds 1e-8 inside its norm, which ONNX optimisers may drop).
        rotmats = lbs.batch_rodrigues(pose.reshape(-1, 3)).reshape(batch, 24, 3, 3)
        out = self.smpl(betas=shape, global_orient=rotmats[:, :1], body_pose=rotmats[:, 1:], pose2rot=False)
        align_point = None
        if root_align and self.align_regressor is not None:
            align_point = torch.einsum("v,bvk->bk", self.align_regressor, out.vertices)
        return finish(out.vertices, out.joints, transl, root_align, align_point)

    def extra_repr(self) -> str:
        return f"num_betas={self.num_shape}, hip_align={'extra' if self.align_regressor is not None else 'smpl'}"
