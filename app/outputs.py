"""Result files: per-image / per-video ``.npz`` with simple-romp key names, plus ``track_ids``.

* Images: one ``DIR/<image stem>.npz`` per image, written as soon as the image is done.
* Video / camera / stream: one ``DIR/<stem>.npz`` whose arrays are concatenated over frames, with ``frame_ids``
  giving the frame of every row. It is written when the run ends for any reason (end of input, Ctrl+C, SIGTERM,
  window close, an error), so an interrupted run keeps what it processed.

Files are written atomically (temp file + rename): a crash never leaves a half-written result.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from engine.errors import OutputError
from engine.types import Meshes, People

log = logging.getLogger(__name__)

NPZ_KEYS = ("center_preds", "center_confs", "cam", "global_orient", "body_pose", "betas", "smpl_thetas", "cam_trans",
            "joints", "pj2d_org", "track_ids")


def check_output_dir(path: Path, flag: str) -> Path:
    """Create ``path`` if needed and prove it is writable, before processing starts."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create {flag} folder {path}: {e.strerror}; choose a writable folder") from e
    if not path.is_dir():
        raise OutputError(f"{flag} {path} is not a folder; choose a writable folder")
    try:  # prove it: permissions alone do not tell (root, read-only mounts)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as e:
        raise OutputError(f"{flag} {path} is not writable ({e.strerror}); choose another folder") from e
    return path


def frame_arrays(people: People, meshes: Meshes | None, save_verts: bool = False) -> dict[str, np.ndarray]:
    """The flat per-frame arrays (``N`` rows) saved for one frame."""
    d = people.as_dict()
    arrays = {k: d[k] for k in NPZ_KEYS if k in d}
    if meshes is not None:
        arrays["joints"] = meshes.joints
        arrays["pj2d_org"] = meshes.pj2d_org
        if save_verts:
            arrays["verts"] = meshes.vertices
    return arrays


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write atomically (temp file + rename) so a crash never leaves a half-written result."""
    tmp = path.with_name(path.name + ".tmp.npz")
    try:
        np.savez(tmp, **arrays)
        tmp.replace(path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {e.strerror or e}; free space or choose another --save-npz") from e
    return path


class NpzSink:
    """Collects per-frame arrays and writes them (see the module docstring for the layout).

    Args:
        out_dir: the ``--save-npz`` folder (already checked writable).
        per_frame: True for image inputs (one file per image), False for videos/streams (one file).
        stem: file stem for the concatenated file.
        save_verts: also store ``verts`` [N, V, 3].
    """

    def __init__(self, out_dir: Path, per_frame: bool, stem: str, save_verts: bool = False) -> None:
        self.out_dir = out_dir
        self.per_frame = per_frame
        self.stem = stem
        self.save_verts = save_verts
        self._chunks: dict[str, list[np.ndarray]] = {}
        self._frame_ids: list[np.ndarray] = []
        self.frames = 0
        self.rows = 0
        self.written: list[Path] = []
        self._closed = False

    def add(self, frame_index: int, name: str, people: People, meshes: Meshes | None) -> None:
        arrays = frame_arrays(people, meshes, self.save_verts)
        self.frames += 1
        self.rows += len(people)
        if self.per_frame:
            self.written.append(write_npz(self.out_dir / f"{name}.npz", arrays))
            return
        for k, v in arrays.items():
            self._chunks.setdefault(k, []).append(v)
        self._frame_ids.append(np.full(len(people), frame_index, np.int64))

    def close(self) -> list[Path]:
        """Write the concatenated file (videos/streams); safe to call more than once."""
        if self._closed or self.per_frame:
            self._closed = True
            return self.written
        self._closed = True
        if not self._chunks:
            arrays = frame_arrays(People.empty(), None)
        else:
            arrays = {k: np.concatenate(v, axis=0) for k, v in self._chunks.items()}
        arrays["frame_ids"] = (np.concatenate(self._frame_ids) if self._frame_ids else np.zeros(0, np.int64))
        arrays["num_frames"] = np.array(self.frames, np.int64)
        self.written.append(write_npz(self.out_dir / f"{self.stem}.npz", arrays))
        log.info("wrote %s (%d frames, %d rows)", self.written[-1], self.frames, self.rows)
        return self.written
