"""Result files (``--save-npz DIR``): per-image / per-video ``.npz``, in one of two layouts.

``flat`` (default): one row per person, plain arrays that ``np.load`` opens without pickles, with ``track_ids``.

* Images: one ``DIR/<image stem>.npz`` per image, written as soon as the image is done.
* Video / camera / stream: one ``DIR/<stem>.npz`` whose arrays are concatenated over frames, with ``frame_ids``
  giving the frame of every row and ``num_frames``.

``romp``: the layout simple-romp writes, for tools built on it: a single pickled ``results`` entry that its readers
open with ``np.load(f, allow_pickle=True)['results'][()]``. Images: ``results`` is the frame's dict of arrays.
Videos: ``results`` maps a frame name (``00000012.png``, as simple-romp names extracted frames) to that dict, and
``sequence_results`` maps each track id to its per-frame lists plus ``frame_id``, as simple-romp's
``video_results.npz``. Key names and shapes follow simple-romp (``smpl_betas``, ``center_confs [N,1]``,
``track_ids`` int32); the joints and vertices are this app's body model's (24 SMPL joints, the mesh's own vertex
count). This app never reads pickles itself.

Nothing already processed is lost: a video's file is rewritten atomically every couple of seconds while the run goes
on (on a background thread, and less often as it grows so the rewrites stay a small share of the time), so a run
that is killed outright (SIGKILL, power loss) still leaves a loadable ``<stem>.npz`` with all but the last seconds;
the normal end writes the complete file in the same format. Every write goes to a temporary file that is renamed
over the result, so a result file is never half-written. A write that fails (disk full) stops only this output:
the temporary file is removed, the other outputs finish, and ``error`` says what was lost.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from engine.errors import OutputError
from engine.types import Meshes, People

from .paths import shown, write_atomic

log = logging.getLogger(__name__)

NPZ_KEYS = ("center_preds", "center_confs", "cam", "global_orient", "body_pose", "betas", "smpl_thetas", "cam_trans",
            "joints", "pj2d_org", "track_ids")
NPZ_FORMATS = ("flat", "romp")
ROMP_NAMES = {"betas": "smpl_betas"}  # our key -> simple-romp's, where they differ


def same_file(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` are one file: the same resolved path, or the same inode (hard links)."""
    try:
        if a.resolve() == b.resolve():
            return True
    except (OSError, RuntimeError):  # a symlink loop: compare by inode below
        pass
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


def input_files(spec: str | None) -> list[Path]:
    """The files a ``--input`` reads (the file, or the files of a folder); none for cameras and URLs."""
    if not spec or "://" in spec:
        return []
    p = Path(spec)
    try:
        if p.is_dir():
            return [f for f in p.iterdir() if f.is_file()]
        return [p] if p.exists() else []
    except OSError:
        return []


def refuse_input_overwrite(output: Path, inputs: list[Path], flag: str) -> None:
    """Raise :class:`OutputError` when writing ``output`` would replace one of the ``inputs``."""
    for src in inputs:
        if same_file(output, src):
            raise OutputError(f"{flag} {shown(output)} is the input file {shown(src)}; writing it would destroy the "
                              "input: choose another output name")


def check_output_dir(path: Path, flag: str) -> Path:
    """Create ``path`` if needed and prove it is writable, before processing starts."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create {flag} folder {shown(path)}: {e.strerror}; choose a writable folder") from e
    if not path.is_dir():
        raise OutputError(f"{flag} {shown(path)} is not a folder; choose a writable folder")
    try:  # prove it: permissions alone do not tell (root, read-only mounts)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as e:
        raise OutputError(f"{flag} {shown(path)} is not writable ({e.strerror}); choose another folder") from e
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


def romp_frame(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One frame's arrays under simple-romp's names and shapes."""
    out = {ROMP_NAMES.get(k, k): v for k, v in arrays.items()}
    if "center_confs" in out:
        out["center_confs"] = out["center_confs"].reshape(-1, 1)
    if "track_ids" in out:
        out["track_ids"] = out["track_ids"].astype(np.int32)
    return out


def romp_frame_name(frame_index: int) -> str:
    return f"{frame_index:08d}.png"


def romp_sequences(frames: list[tuple[int, str, dict[str, np.ndarray]]]) -> dict[int, dict[str, list]]:
    """Per-track lists over frames (simple-romp's ``sequence_results``): ``frame_id`` plus one entry per key."""
    seq: dict[int, dict[str, list]] = {}
    for position, (_, _, arrays) in enumerate(frames):
        r = romp_frame(arrays)
        for row, tid in enumerate(r.get("track_ids", ())):
            entry = seq.setdefault(int(tid), {"frame_id": []})
            entry["frame_id"].append(position)
            for k, v in r.items():
                entry.setdefault(k, []).append(v[row])
    return seq


def _object(value: object) -> np.ndarray:
    """A 0-d object array holding ``value`` (what ``np.savez(results=dict)`` stores)."""
    arr = np.empty((), dtype=object)
    arr[()] = value
    return arr


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write atomically (temp file + rename) so a crash never leaves a half-written result.

    Raises :class:`OutputError` (temp file removed) when the write fails, e.g. on a full disk.
    """
    return write_atomic(path, lambda f: np.savez(f, **arrays), tmp_suffix=".tmp.npz")


class NpzSink:
    """Collects per-frame arrays and writes them (see the module docstring for the layouts).

    Args:
        out_dir: the ``--save-npz`` folder (already checked writable).
        per_frame: True for image inputs (one file per image), False for videos/streams (one file).
        stem: file stem for the one-file layout.
        save_verts: also store ``verts`` [N, V, 3].
        fmt: ``flat`` or ``romp``.
        flush_every: seconds between rewrites of a video's file while the run goes on (0: only at the end).
    """

    def __init__(self, out_dir: Path, per_frame: bool, stem: str, save_verts: bool = False, fmt: str = "flat",
                 flush_every: float = 2.0) -> None:
        if fmt not in NPZ_FORMATS:
            raise ValueError(f"npz format must be one of {NPZ_FORMATS}, got {fmt!r}")
        self.out_dir = out_dir
        self.per_frame = per_frame
        self.stem = stem
        self.save_verts = save_verts
        self.fmt = fmt
        self.flush_every = flush_every
        self._frames: list[tuple[int, str, dict[str, np.ndarray]]] = []
        self.frames = 0
        self.rows = 0
        self.written: list[Path] = []
        self.error: OutputError | None = None  # set when results that were asked for could not be written
        self.checkpoint_frames = 0  # frames in the file on disk (one-file layout)
        self._interval = flush_every
        self._last_flush = time.monotonic()
        self._flusher: threading.Thread | None = None
        self._lock = threading.Lock()  # one writer of the one file at a time
        self._closed = False

    @property
    def path(self) -> Path:
        return self.out_dir / f"{self.stem}.npz"

    def add(self, frame_index: int, name: str, people: People, meshes: Meshes | None) -> None:
        if self.error is not None and self.per_frame:
            return  # this output has stopped (disk full); the others go on
        arrays = frame_arrays(people, meshes, self.save_verts)
        self.frames += 1
        self.rows += len(people)
        if self.per_frame:
            payload = {"results": _object(romp_frame(arrays))} if self.fmt == "romp" else arrays
            try:
                self.written.append(write_npz(self.out_dir / f"{name}.npz", payload))
            except OutputError as e:
                self._stop(e)
            return
        self._frames.append((frame_index, name, arrays))
        if self.flush_every and time.monotonic() - self._last_flush >= self._interval:
            self._start_checkpoint()

    def _stop(self, e: OutputError) -> None:
        kept = f": {len(self.written)} of {self.frames} result files were written" if self.per_frame else ""
        self.error = OutputError(f"{e}{kept}")
        log.warning("%s", self.error)

    def _payload(self, frames: list[tuple[int, str, dict[str, np.ndarray]]]) -> dict[str, np.ndarray]:
        if self.fmt == "romp":
            results = {romp_frame_name(i): romp_frame(a) for i, _, a in frames}
            return {"results": _object(results), "sequence_results": _object(romp_sequences(frames))}
        if frames:
            keys = frames[0][2].keys()
            arrays = {k: np.concatenate([a[k] for _, _, a in frames], axis=0) for k in keys}
        else:
            arrays = frame_arrays(People.empty(), None)
        arrays["frame_ids"] = np.concatenate([np.full(len(a["center_confs"]), i, np.int64) for i, _, a in frames]) \
            if frames else np.zeros(0, np.int64)
        arrays["num_frames"] = np.array(len(frames), np.int64)
        return arrays

    def _write(self, frames: list[tuple[int, str, dict[str, np.ndarray]]]) -> None:
        with self._lock:
            if len(frames) < self.checkpoint_frames:
                return  # a newer snapshot is already on disk
            write_npz(self.path, self._payload(frames))
            self.checkpoint_frames = len(frames)

    def _start_checkpoint(self) -> None:
        if self._flusher is not None and self._flusher.is_alive():
            return
        snapshot = list(self._frames)  # the per-frame arrays are never changed after add(): a shallow copy is safe
        self._last_flush = time.monotonic()

        def run() -> None:
            t = time.perf_counter()
            try:
                self._write(snapshot)
            except OutputError as e:  # the end of the run tries once more; until then the last checkpoint stays
                log.warning("%s; results are kept in memory and written at the end", e)
                self._interval = float("inf")
                return
            # rewrites grow with the file: keep them under ~10% of the time
            self._interval = max(self.flush_every, 10 * (time.perf_counter() - t))

        self._flusher = threading.Thread(target=run, name="npz-checkpoint", daemon=True)
        self._flusher.start()

    def close(self) -> list[Path]:
        """Write the complete file (videos/streams); safe to call more than once; never raises (see ``error``)."""
        if self._closed:
            return self.written
        self._closed = True
        if self.per_frame:
            return self.written
        if self._flusher is not None:
            self._flusher.join()
        try:
            self._write(self._frames)
        except OutputError as e:
            kept = (f": the file holds the first {self.checkpoint_frames} of {self.frames} frames"
                    if self.checkpoint_frames else f": none of the {self.frames} frames were saved")
            self._stop(OutputError(f"{e}{kept}"))
            return self.written
        self.written.append(self.path)
        log.info("wrote %s (%d frames, %d rows)", shown(self.path), self.frames, self.rows)
        return self.written
