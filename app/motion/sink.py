"""``--export-anim DIR``: record every tracked person during the run, write BVH + animated glb at the end.

Files: ``DIR/<stem>_id<track>.bvh`` per track and ``DIR/<stem>.glb`` with all tracks. For a video, camera or
stream they are written when the run ends for any reason (end of input, Ctrl+C, window close), like the npz. An
image list has no motion and its IDs restart per image, so each image is written at once as its own one-frame clip
(``<image stem>_id<k>.bvh``, ``<image stem>.glb``).

Frame rate: the source's (a video's own rate; a camera's reported rate, where a dropped frame becomes an
interpolated sample). Shape: SMPL uses each track's median betas; Anny ignores betas (the app renders it at its
default shape), so its skeleton is the default Anny skeleton.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.body import BodyModel
from engine.errors import OutputError
from engine.types import Meshes, People

from ..paths import shown
from ..render.colors import track_color
from .bvh import write_bvh
from .gltf_anim import AnimTrack, write_anim_glb
from .rig import Rig, body_rig, pelvis_offsets, skin_weights
from .tracks import WORLD_FROM_CAMERA, MotionRecorder, TrackBuffer, TrackMotion, build_motion

log = logging.getLogger(__name__)

__all__ = ["AnimResult", "AnimSink", "export_clip"]


@dataclass
class AnimResult:
    """What one export wrote: files, tracks, the clip's frame count and the seconds writing took."""

    files: list[Path] = field(default_factory=list)
    tracks: int = 0
    frames: int = 0
    seconds: float = 0.0


def _track_color(track_id: int) -> tuple[float, float, float]:
    """The overlay's colour of a track (its BGR palette entry) as sRGB 0..1."""
    b, g, r = track_color(track_id)
    return (r / 255.0, g / 255.0, b / 255.0)


class _Rigs:
    """Rigs cached by shape (all Anny tracks share one; SMPL tracks with equal betas share one)."""

    def __init__(self, body: BodyModel) -> None:
        self.body = body
        self.uses_betas = body.shape_kind == "smpl_betas"
        self._weights: np.ndarray | None = None
        self._cache: dict[bytes, Rig] = {}

    def shape_of(self, buf: TrackBuffer) -> np.ndarray | None:
        if not self.uses_betas:
            return None
        return np.median(buf.shapes, axis=0).astype(np.float32)[: self.body.num_shape]

    def get(self, shape: np.ndarray | None) -> Rig:
        key = b"" if shape is None else np.asarray(shape, np.float32).tobytes()
        if key not in self._cache:
            if self._weights is None:
                self._weights = skin_weights(self.body)
            self._cache[key] = body_rig(self.body, shape, self._weights)
        return self._cache[key]


def track_motion(body: BodyModel, rigs: _Rigs, track_id: int, buf: TrackBuffer) -> TrackMotion:
    """Recorded rows of one track -> its dense world-frame motion."""
    shape = rigs.shape_of(buf)
    pelvis_cam = pelvis_offsets(body, buf.poses, rigs.get(shape), shape) + buf.trans.astype(np.float64)
    return build_motion(track_id, buf.frames, buf.poses, pelvis_cam @ WORLD_FROM_CAMERA.T, shape)


def export_clip(out_dir: Path, stem: str, fps: float, body: BodyModel, recorder: MotionRecorder,
                rigs: _Rigs | None = None, progress: Callable[[int, int], None] | None = None,
                result: AnimResult | None = None) -> AnimResult:
    """Write the BVH files and the glb of one recorded clip; nothing is written when no one was tracked.

    ``result`` (filled as files are written, so a caller still knows what was written when a write raises
    :class:`~engine.errors.OutputError`) defaults to a new one.
    """
    t0 = time.perf_counter()
    rigs = rigs or _Rigs(body)
    result = result if result is not None else AnimResult()
    result.tracks = len(recorder.tracks)
    if recorder.first_frame is None or not recorder.tracks:
        return result
    first, last = recorder.first_frame, recorder.last_frame
    result.frames = last - first + 1
    total = len(recorder.tracks) + 1
    anim: list[AnimTrack] = []
    for k, (tid, buf) in enumerate(sorted(recorder.tracks.items())):
        motion = track_motion(body, rigs, tid, buf)
        rig = rigs.get(motion.shape)
        result.files.append(write_bvh(out_dir / f"{stem}_id{tid}.bvh", rig, motion, fps))
        anim.append(AnimTrack(motion, rig, _track_color(tid)))
        if progress is not None:
            progress(k + 1, total)
    result.files.append(write_anim_glb(out_dir / f"{stem}.glb", anim, fps, first, last,
                                       comment=f"{stem}: {len(anim)} tracks, source frames {first}..{last}"))
    if progress is not None:
        progress(total, total)
    result.seconds = time.perf_counter() - t0
    return result


class _LogProgress:
    """A log line at most every ``interval`` seconds while a long clip is written (and one at the end)."""

    def __init__(self, label: str, interval: float = 2.0) -> None:
        self.label = label
        self.interval = interval
        self._last = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if done == total or now - self._last >= self.interval:
            self._last = now
            log.info("%s: %d/%d files written", self.label, done, total)


class AnimSink:
    """Pipeline sink for ``--export-anim`` (see the module docstring).

    A failed write (disk full) never raises out of :meth:`add` or :meth:`close`: it stops this output only, and
    ``error`` says what was lost, as for the other outputs.

    Args:
        out_dir: the folder (already checked writable).
        stem: file stem of the clip (the source name).
        fps: frames per second of the source.
        body: the body model the app renders with (rest skeleton, skin, root offsets).
        per_image: True for image lists: each image is its own one-frame clip, written at once.
    """

    def __init__(self, out_dir: Path, stem: str, fps: float, body: BodyModel, per_image: bool = False) -> None:
        self.out_dir = out_dir
        self.stem = stem
        self.fps = float(fps) if fps and fps > 0 else 30.0
        self.body = body
        self.per_image = per_image
        self.recorder = MotionRecorder()
        self.result = AnimResult()
        self.error: OutputError | None = None
        self._rigs = _Rigs(body)
        self._closed = False

    def add(self, frame_index: int, name: str, people: People, meshes: Meshes | None) -> None:
        if not self.per_image:
            self.recorder.add(frame_index, people)
            return
        if self.error is not None:
            return  # this output has stopped (disk full); the others go on
        rec = MotionRecorder()
        rec.add(0, people)
        res = AnimResult()
        try:
            export_clip(self.out_dir, name, self.fps, self.body, rec, self._rigs, result=res)
        except OutputError as e:
            self._stop(e)
        finally:
            self.result.files += res.files
            self.result.tracks += res.tracks
            self.result.frames += 1
            self.result.seconds += res.seconds

    def _stop(self, e: OutputError) -> None:
        kept = f"{len(self.result.files)} animation files were written before it"
        self.error = OutputError(f"{e}; {kept}")
        log.error("%s", self.error)

    def close(self) -> AnimResult:
        """Write the clip (videos/streams); safe to call more than once; never raises (see ``error``)."""
        if self._closed or self.per_image:
            self._closed = True
            return self.result
        self._closed = True
        rec = self.recorder
        if rec.tracks:
            log.info("export-anim: writing %d tracks over %d frames to %s", len(rec.tracks),
                     rec.last_frame - rec.first_frame + 1, shown(self.out_dir))
        self.result = AnimResult()
        try:
            export_clip(self.out_dir, self.stem, self.fps, self.body, rec, self._rigs,
                        progress=_LogProgress("export-anim"), result=self.result)
        except OutputError as e:
            self._stop(e)
        return self.result

    def note(self) -> str:
        """One summary line for the end of the run."""
        r = self.result
        where = shown(self.out_dir)
        if self.error is not None:
            return f"animation: failed after {len(r.files)} files in {where}"
        if not r.files:
            return f"animation: nothing written to {where} (no tracked people)"
        bvh = sum(1 for f in r.files if f.suffix == ".bvh")
        glb = sum(1 for f in r.files if f.suffix == ".glb")
        what = f"{bvh} .bvh + {glb} .glb" if self.per_image else f"{bvh} .bvh + {r.files[-1].name}"
        return f"animation: {what} in {where} ({r.tracks} tracks, {r.frames} frames, written in {r.seconds:.1f} s)"
