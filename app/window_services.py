"""What the window asks of the rest of the app (:class:`app.ui.services.Services`), implemented with the engine.

Kept out of :mod:`app.ui` because everything here imports torch, the body model or a backend. The window hands
sessions, histories and folders in; this module builds sessions, computes face lists and writes files, always on
the caller's (worker) thread.

Sessions the window builds (another input, model, replay) never write the command-line outputs (``--record``,
``--save-npz``, ``--export-mesh``, ``--export-anim``): those name files for the run they were given for, which
are finalised when it is replaced; a second session would overwrite them. The window's Export menu and R/S keys
write the later ones.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from engine.errors import ConfigError, ExportError

from .config import BACKENDS, DEMO_CHECKPOINT, AppCfg
from .export_mesh import MeshExporter
from .outputs import NpzSink, check_output_dir
from .session import Session, build_session, coarse_faces, live_faces
from .ui.cameras import probe_cameras
from .ui.history import ClipHistory
from .ui.services import InputChoice, ModelChoice, Progress

log = logging.getLogger(__name__)

CLI_OUTPUTS = ("record", "save_npz", "export_mesh", "export_anim")


class AppServices:
    backends = BACKENDS

    def __init__(self, cfg: AppCfg) -> None:
        self.live_faces = cfg.render.live_faces
        self.npz_format = cfg.outputs.npz_format

    # ------------------------------------------------------------------ sessions
    def model_choice(self, session: Session) -> ModelChoice:
        mc = session.cfg.model
        ck = str(mc.checkpoint) if mc.name == "instancehmr" and mc.checkpoint is not None else None
        return ModelChoice(mc.name, ck, session.cfg.runtime.backend, mc.landmarks)

    def window_cfg(self, cfg: AppCfg, source: InputChoice | None = None, model: ModelChoice | None = None) -> AppCfg:
        """``cfg`` with another input and/or model and without the command-line outputs (module docstring)."""
        groups: dict[str, dict[str, object]] = {
            "outputs": {**dict.fromkeys(CLI_OUTPUTS), "save_verts": False},
            "render": {"live_faces": self.live_faces}}
        if source is not None:
            groups["capture"] = {"input": source.path, "camera": source.camera}
        if model is not None:
            groups.update(model_fields(model))
            groups["model"] = {**groups["model"], "threshold": None}  # each model has its own tuned threshold
        return cfg.changed(**groups)

    def build(self, current: Session, callbacks, source: InputChoice | None = None,
              model: ModelChoice | None = None) -> Session:
        on_output, on_end = callbacks
        cfg = self.window_cfg(current.cfg, source, model)
        return build_session(cfg, render=True, on_output=on_output, on_end=on_end)

    def probe_cameras(self, indices: range, skip: int | None) -> list[int]:
        return probe_cameras(indices, skip)

    def set_live_faces(self, session: Session, budget: int) -> None:
        """Swap the overlay's face lists (plain attribute writes, picked up by the render thread's next frame)."""
        body = session.pipeline.body
        if body is None:
            return
        fine, coarse = live_faces(body, budget), coarse_faces(body, budget)
        annotator = session.pipeline.mesh_annotator
        annotator.faces, annotator.coarse_faces = fine, coarse
        self.live_faces = budget

    # ------------------------------------------------------------------ exports
    def export_npz(self, history: ClipHistory, folder: Path, progress: Progress) -> list[Path]:
        check_output_dir(folder, "the export folder")
        frames = history.frames()
        stem = history.stem if history.per_frame else free_stem(folder, history.stem, (".npz",))
        sink = NpzSink(folder, per_frame=history.per_frame, stem=stem, fmt=self.npz_format, flush_every=0)
        for k, f in enumerate(frames):
            sink.add(f.index, f.name, f.people, _joints_only(f))
            if sink.error is not None:
                raise sink.error
            if k % 50 == 0:
                progress(k, len(frames) + 1)
        written = sink.close()
        if sink.error is not None:
            raise sink.error
        progress(len(frames) + 1, len(frames) + 1)
        return list(written)

    def export_meshes(self, out, folder: Path, fmt: str) -> list[Path]:
        check_output_dir(folder, "the export folder")
        exporter = MeshExporter(folder, fmt)
        written = list(exporter.add(out.frame.index, out.frame.name, out.people, out.meshes))
        if exporter.error is not None:  # disk full etc.: the exporter stops quietly, the menu must say so
            raise exporter.error
        return written

    def animation_unavailable(self) -> str:
        try:
            from . import motion  # noqa: F401
        except ImportError as e:
            return f"animation export is not available in this build ({e})"
        return ""

    def export_animation(self, session: Session, history: ClipHistory, folder: Path,
                         progress: Progress) -> list[Path]:
        from .motion import export_clip
        from .motion.tracks import MotionRecorder

        check_output_dir(folder, "the export folder")
        body = session.pipeline.body
        if body is None:
            raise ExportError("animation export needs the body model, which this session does not run")
        frames = history.frames()
        clips: list[tuple[str, MotionRecorder]] = []
        if history.per_frame:  # unrelated images: each is its own one-frame clip
            for f in frames:
                rec = MotionRecorder()
                rec.add(0, f.people)
                clips.append((f.name, rec))
        else:
            rec = MotionRecorder()
            for f in frames:
                rec.add(f.index, f.people)
            clips.append((free_stem(folder, history.stem, (".glb",)), rec))
        files: list[Path] = []
        for k, (stem, rec) in enumerate(clips):
            def step(done: int, total: int, k: int = k) -> None:
                progress(k * total + done, len(clips) * total)

            files += export_clip(folder, stem, history.fps, body, rec, progress=step).files
        if not files:
            raise ExportError("no tracked person in the frames processed so far; nothing to export")
        return files


def model_fields(choice: ModelChoice) -> dict[str, dict[str, object]]:
    """The config changes for a model choice, by group (``{"model": ..., "runtime": ...}``, as
    :meth:`AppCfg.changed` takes them), with the checks ``build_cfg`` makes for the same flags."""
    runtime = {"backend": choice.backend}
    if choice.model == "realfootage":
        if choice.backend not in ("auto", "onnxruntime"):
            raise ConfigError(f"the realfootage model runs on ONNX Runtime, not {choice.backend}; choose backend auto")
        return {"model": {"name": "realfootage", "checkpoint": None, "landmarks": choice.landmarks},
                "runtime": runtime}
    if choice.model == "demo":
        return {"model": {"name": "demo", "checkpoint": DEMO_CHECKPOINT}, "runtime": runtime}
    if choice.model == "instancehmr":
        if not choice.checkpoint:
            raise ConfigError("choose a checkpoint file of InstanceHMR, 3DCrowdNet or JOTR "
                              "(.pt/.pth/.pkl/.tar/.onnx/.engine) first")
        # landmarks: 3DCrowdNet/JOTR take their 2D poses from the tracker; InstanceHMR ignores the default
        return {"model": {"name": "instancehmr", "checkpoint": Path(choice.checkpoint),
                          "landmarks": choice.landmarks}, "runtime": runtime}
    raise ConfigError(f"unknown model {choice.model!r}; choose realfootage, demo or a checkpoint")


def free_stem(folder: Path, stem: str, suffixes: tuple[str, ...]) -> str:
    """``stem``, or ``stem-2``, ``stem-3``... so an export never overwrites an earlier one in the same folder."""
    candidate, n = stem, 1
    while any((folder / f"{candidate}{s}").exists() for s in suffixes):
        n += 1
        candidate = f"{stem}-{n}"
    return candidate


def _joints_only(frame):
    """The history keeps joints but no vertices; the npz writer reads joints and projections from a Meshes."""
    from engine.types import Meshes

    if frame.joints is None:
        return None
    n = len(frame.joints)
    return Meshes(vertices=np.zeros((n, 0, 3), np.float32), joints=frame.joints,
                  faces=np.zeros((0, 3), np.int32), pj2d_org=frame.pj2d_org)


__all__ = ["AppServices", "free_stem", "model_fields"]
