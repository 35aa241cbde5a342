"""One run of the app: open the source, the model and the outputs (in that order, failing fast), build the
pipeline, and finalise every output on the way out, whatever the reason for leaving.

The order matters for "nothing lost": outputs are checked writable and the source is opened (reading one frame)
before the slow model load, and :meth:`Session.finish` closes the recorder and writes the npz before any error is
reported.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from engine.errors import CaptureError, ModelFileError

from .capture import FrameSource, ImageListSource, ReconnectingSource, open_source
from .config import DEMO_DIR, REALFOOTAGE_DIR, AppCfg
from .export_mesh import MeshExporter
from .outputs import NpzSink, check_output_dir
from .pipeline import LiveSettings, Pipeline, PipelineCfg, RecordRequest, Sink
from .recording import check_record_path

log = logging.getLogger(__name__)


def _demo_hint() -> str:
    clips = sorted(DEMO_DIR.glob("*.mp4")) if DEMO_DIR.is_dir() else []
    if clips:
        return f"try --input {clips[0].relative_to(DEMO_DIR.parent.parent)}"
    return "try --input VIDEO|IMAGE|FOLDER"


def open_input(cfg: AppCfg) -> FrameSource:
    """The source named by the config; with neither --camera nor --input, camera 0 or a helpful error."""
    if cfg.input is not None:
        return open_source(cfg.input)
    index = cfg.camera if cfg.camera is not None else 0
    try:
        return open_source(index)
    except CaptureError as e:
        if cfg.camera is None:
            raise CaptureError(f"no camera found (camera 0 did not open); {_demo_hint()}") from e
        raise


def check_outputs(cfg: AppCfg) -> None:
    if cfg.record is not None:
        check_record_path(cfg.record)
    if cfg.save_npz is not None:
        check_output_dir(cfg.save_npz, "--save-npz")
    if cfg.export_mesh is not None:
        check_output_dir(cfg.export_mesh, "--export-mesh")


def open_model(cfg: AppCfg):
    """People model and body model (the slow part: ONNX export on first use of a checkpoint)."""
    import torch

    from engine.body import create_body_model

    torch.set_num_threads(1)  # the body model is tiny; more threads only fight the inference thread
    t = time.perf_counter()
    body = create_body_model(cfg.body_model, smpl_path=cfg.smpl_dir)
    if cfg.model == "realfootage":
        from engine.frame_models import open_realfootage

        model = open_realfootage(REALFOOTAGE_DIR, body, landmarks=cfg.landmarks, threads=cfg.threads,
                                 detect_every=cfg.detect_every)
    else:
        from engine.frame_models import open_instancehmr

        if cfg.checkpoint is None or not cfg.checkpoint.is_file():
            raise ModelFileError(f"checkpoint not found: {cfg.checkpoint}; pass --checkpoint with an InstanceHMR "
                                 "weights file")
        model = open_instancehmr(cfg.checkpoint, cfg.backend, threads=cfg.threads,
                                 synthetic_demo=cfg.model == "demo")
    log.info("model ready in %.1f s: %s, body %s", time.perf_counter() - t, model.info.title, type(body).__name__)
    return model, body


def live_faces(body, budget: int):
    """A lower-resolution face list for overlays when the body mesh exceeds the budget (else None)."""
    return _simplified(body, budget) if len(body.faces) > budget else None


def coarse_faces(body, budget: int):
    """Half the live budget, for people who are small on screen."""
    return _simplified(body, max(budget // 2, 100))


def _simplified(body, budget: int):
    import numpy as np
    import torch

    from .render.lod import simplify_faces

    with torch.inference_mode():
        rest = body(torch.zeros(1, 3), torch.zeros(1, 69)).vertices[0].numpy()
    return simplify_faces(rest, np.asarray(body.faces), budget)


@dataclass
class Session:
    cfg: AppCfg
    source: FrameSource
    pipeline: Pipeline
    settings: LiveSettings
    npz: NpzSink | None = None
    meshes: MeshExporter | None = None
    record_request: RecordRequest | None = None
    finished_outputs: list[str] = field(default_factory=list)

    @property
    def is_file(self) -> bool:
        return not self.source.live

    def finish(self, timeout: float = 5.0) -> list[str]:
        """Stop the pipeline and finalise every output; returns one line per output written."""
        self.pipeline.stop(timeout)
        notes = []
        if self.pipeline.record_note:
            notes.append(self.pipeline.record_note)
        if self.npz is not None:
            try:
                written = self.npz.close()
            finally:
                if self.npz.per_frame:
                    notes.append(f"npz: {len(self.npz.written)} files in {self.npz.out_dir}")
            if not self.npz.per_frame and written:
                notes.append(f"npz: {written[-1]} ({self.npz.frames} frames, {self.npz.rows} people-rows)")
        if self.meshes is not None:
            notes.append(f"meshes: {self.meshes.files_written} {self.meshes.fmt} files in {self.meshes.out_dir}")
        self.finished_outputs = notes
        return notes

    def source_error(self) -> CaptureError | None:
        src = self.source
        if isinstance(src, ReconnectingSource) and src.lost:
            return CaptureError(f"{src.name} disappeared and did not come back after {src.max_attempts} attempts; "
                                "outputs so far were saved; check the cable/stream and run again")
        return None


def build_session(cfg: AppCfg, render: bool, on_output=None, on_end=None) -> Session:
    """Open everything in fail-fast order and return a ready (not started) session."""
    check_outputs(cfg)
    source = open_input(cfg)
    try:
        model, body = open_model(cfg)
    except BaseException:
        source.release()
        raise
    is_file = not source.live
    every_frame = is_file and (cfg.headless or cfg.record is not None or cfg.save_npz is not None
                               or cfg.export_mesh is not None)
    threshold = model.info.default_threshold if cfg.threshold is None else cfg.threshold
    settings = LiveSettings(threshold=threshold, max_people=cfg.max_people, smooth=cfg.smooth,
                            smooth_strength=cfg.smooth_strength, show_mesh=cfg.show_mesh,
                            show_skeleton=cfg.show_skeleton, show_centers=cfg.show_centers, opacity=cfg.opacity)
    images = isinstance(source, ImageListSource)
    pcfg = PipelineCfg(live=not every_frame, pace=is_file and not cfg.headless and not images,
                       render=render or cfg.record is not None, max_frames=cfg.max_frames,
                       live_faces=live_faces(body, cfg.live_faces), coarse_faces=coarse_faces(body, cfg.live_faces),
                       temporal=not images)
    sinks: list[Sink] = []
    npz = meshes = None
    stem = source.name
    if cfg.save_npz is not None:
        npz = NpzSink(cfg.save_npz, per_frame=isinstance(source, ImageListSource), stem=stem,
                      save_verts=cfg.save_verts)
        sinks.append(npz)
    if cfg.export_mesh is not None:
        meshes = MeshExporter(cfg.export_mesh, cfg.mesh_format)
        sinks.append(meshes)
    record = None
    if cfg.record is not None:
        record = RecordRequest(cfg.record, source.fps, block=every_frame, timed=source.live)
    pipe = Pipeline(source, model, body, settings, pcfg, sinks, record, on_output=on_output, on_end=on_end)
    return Session(cfg, source, pipe, settings, npz, meshes, record)
