"""One run of the app: open the source, the model and the outputs (in that order, failing fast), build the
pipeline, and finalise every output on the way out, whatever the reason for leaving.

The order matters for "nothing lost": outputs are checked writable and the source is opened (reading one frame)
before the slow model load, and :meth:`Session.finish` closes the recorder and writes the npz before any error is
reported.
"""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass, field

from engine.errors import CaptureError, ConfigError, ModelFileError, OutputError
from export.artifacts import install_builder  # importing export registers it too (app -> export is allowed)

from .capture import FrameSource, ImageListSource, ReconnectingSource, open_source, set_native_logging
from .config import DEMO_DIR, REALFOOTAGE_DIR, TRACKER_OPTIONS, AppCfg, tracker_options_given
from .export_mesh import MeshExporter
from .motion import AnimSink
from .outputs import NpzSink, check_output_dir, input_files, refuse_input_overwrite
from .paths import shown
from .pipeline import LiveSettings, Pipeline, PipelineCfg, RecordRequest, Sink
from .recording import check_record_path
from .vmc import VmcSink, VmcSkeleton, resolve_target

log = logging.getLogger(__name__)


def _demo_hint() -> str:
    clips = sorted(DEMO_DIR.glob("*.mp4")) if DEMO_DIR.is_dir() else []
    if clips:
        return f"try --input {clips[0].relative_to(DEMO_DIR.parent.parent)}"
    return "try --input VIDEO|IMAGE|FOLDER"


def open_input(cfg: AppCfg) -> FrameSource:
    """The source named by the config; with neither --camera nor --input, camera 0 or a helpful error."""
    set_native_logging(cfg.debug)  # before the first VideoCapture: FFmpeg reads its log level once
    cap = cfg.capture
    if cap.input is not None:
        return open_source(cap.input)
    index = cap.camera if cap.camera is not None else 0
    try:
        return open_source(index, camera_size=cap.camera_size)
    except CaptureError as e:
        if cap.camera is None:
            raise CaptureError(f"no camera found (camera 0 did not open); {_demo_hint()}") from e
        raise


def check_outputs(cfg: AppCfg) -> None:
    inputs = input_files(cfg.capture.input)
    out = cfg.outputs
    if out.record is not None:
        refuse_input_overwrite(out.record, inputs, "--record")
        check_record_path(out.record)
    if out.save_npz is not None:  # an input file named like a result (<stem>.npz) in the --save-npz folder
        for f in inputs:
            refuse_input_overwrite(out.save_npz / f"{f.stem}.npz", [f], "--save-npz")
    if out.save_npz is not None:
        check_output_dir(out.save_npz, "--save-npz")
    if out.export_mesh is not None:
        check_output_dir(out.export_mesh, "--export-mesh")
    if out.export_anim is not None:
        check_output_dir(out.export_anim, "--export-anim")
    if out.vmc is not None:
        resolve_target(out.vmc)


def open_model(cfg: AppCfg):
    """People model and body model (the slow part: ONNX export on first use of a checkpoint)."""
    import torch

    from engine.body import create_body_model

    install_builder()  # a checkpoint's ONNX export / TensorRT engine is built on its first use
    torch.set_num_threads(1)  # the body model is tiny; more threads only fight the inference thread
    t = time.perf_counter()
    mc, rt = cfg.model, cfg.runtime
    body = create_body_model(mc.body_model, smpl_path=mc.smpl_dir)
    if mc.name == "realfootage":
        from engine.frame_models import open_realfootage

        model = open_realfootage(REALFOOTAGE_DIR, body, landmarks=mc.landmarks, threads=rt.threads,
                                 detect_every=mc.detect_every, device=rt.device, landmark_budget=mc.landmark_budget,
                                 detect_lag=mc.detect_lag, detect_size=mc.detect_size, fine_size=mc.fine_size)
    else:
        from engine.checkpoint import checkpoint_system
        from engine.frame_models import open_instancehmr, open_poseguided

        if mc.checkpoint is None or not mc.checkpoint.is_file():
            raise ModelFileError(f"checkpoint not found: {mc.checkpoint}; pass --checkpoint with an InstanceHMR, "
                                 "3DCrowdNet or JOTR weights file")
        system = checkpoint_system(mc.checkpoint)
        if system == "instancehmr":
            if tracker_options_given(mc):
                raise ConfigError(f"{mc.checkpoint.name} is an InstanceHMR checkpoint (bottom-up, no 2D poses): "
                                  f"{TRACKER_OPTIONS} do not apply")
            model = open_instancehmr(_int8_if_passed(cfg), rt.backend, threads=rt.threads,
                                     synthetic_demo=mc.name == "demo", device=rt.device)
        else:  # 3DCrowdNet / JOTR: guided by the real-footage tracker's 2D poses
            model = open_poseguided(mc.checkpoint, system, REALFOOTAGE_DIR, body, backend=rt.backend,
                                    landmarks=mc.landmarks, threads=rt.threads, detect_every=mc.detect_every,
                                    device=rt.device, landmark_budget=mc.landmark_budget, detect_lag=mc.detect_lag,
                                    detect_size=mc.detect_size, fine_size=mc.fine_size)
    log.info("model ready in %.1f s: %s, body %s", time.perf_counter() - t, model.info.title, type(body).__name__)
    return model, body


def _int8_if_passed(cfg: AppCfg):
    """An exported InstanceHMR .onnx on the CPU runs its INT8 sibling (``python -m export onnx --int8``) when that
    file was quantised from exactly this one and its stored people-parity report passes the rule; else the file."""
    path, rt = cfg.model.checkpoint, cfg.runtime
    if path is None or path.suffix.lower() != ".onnx" or rt.backend not in ("auto", "onnxruntime"):
        return path
    from engine.runtime.device import ort_gpu_providers, parse_device

    if parse_device(rt.device).kind == "cuda" or (rt.device == "auto" and ort_gpu_providers()):
        return path  # INT8 is the CPU path; GPUs run FP16
    from export.int8 import int8_for

    quantized = int8_for(path)
    if quantized is not None:
        log.info("INT8: running %s (people parity passed against %s)", quantized.name, path.name)
    return quantized or path


def live_settings(cfg: AppCfg, default_threshold: float) -> LiveSettings:
    """The window's live settings, starting from the config's values (``default_threshold``: the opened model's
    own, used when no --threshold was given). The config stays the one source; these are the mutable copies the
    UI changes while the pipeline reads them every frame."""
    mc, view = cfg.model, cfg.render
    return LiveSettings(threshold=default_threshold if mc.threshold is None else mc.threshold,
                        max_people=mc.max_people, smooth=view.smooth, smooth_strength=view.smooth_strength,
                        show_mesh=view.show_mesh, show_skeleton=view.show_skeleton, show_centers=view.show_centers,
                        opacity=view.opacity)


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
    vmc: VmcSink | None = None
    anim: AnimSink | None = None
    record_request: RecordRequest | None = None
    finished_outputs: list[str] = field(default_factory=list)

    @property
    def is_file(self) -> bool:
        return not self.source.live

    def finish(self, timeout: float = 5.0) -> list[str]:
        """Stop the pipeline and finalise every output (each on its own: one that fails does not stop the others);
        returns one line per output. :meth:`output_error` then tells whether any of them lost something."""
        self.pipeline.stop(timeout)
        notes = []
        if self.pipeline.record_note:
            notes.append(self.pipeline.record_note)
        if self.npz is not None:
            written = self.npz.close()
            if self.npz.per_frame:
                notes.append(f"npz: {len(self.npz.written)} files in {shown(self.npz.out_dir)}")
            elif written:
                notes.append(f"npz: {shown(written[-1])} ({self.npz.frames} frames, {self.npz.rows} people-rows)")
        if self.meshes is not None:
            notes.append(f"meshes: {self.meshes.files_written} {self.meshes.fmt} files in "
                         f"{shown(self.meshes.out_dir)}")
        if self.vmc is not None:
            notes.append(self.vmc.close())
        if self.anim is not None:  # last: for a long clip the writing takes a while (it logs its progress)
            self.anim.close()
            notes.append(self.anim.note())
        self.finished_outputs = notes
        return notes

    def output_error(self) -> OutputError | None:
        """One error for every output that lost what was asked of it (disk full, write failure), else None.

        Why a single error: the CLI prints one ``error:`` line and exits with :class:`OutputError`'s code, so a run
        that kept only part of its results never looks like a success (exit 0)."""
        lost = [str(e) for e in self.pipeline.record_errors]
        lost += [str(s.error) for s in (self.npz, self.meshes, self.anim) if s is not None and s.error is not None]
        if not lost:
            return None
        return OutputError("; ".join(lost) + "; free some space (or write the outputs elsewhere) and run again")

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
    # a file loses no frame, in the window too: played at its rate, reading waits for a slow model (the video
    # plays slower) instead of dropping frames; only cameras and live streams keep the newest frame
    every_frame = is_file
    settings = live_settings(cfg, model.info.default_threshold)
    images = isinstance(source, ImageListSource)
    out = cfg.outputs
    # a live link plays a file at its frame rate even headless: the receiver animates in real time
    pcfg = PipelineCfg(live=not every_frame, pace=is_file and not images and (not cfg.headless or out.vmc is not None),
                       render=render or out.record is not None, max_frames=cfg.capture.max_frames,
                       live_faces=live_faces(body, cfg.render.live_faces),
                       coarse_faces=coarse_faces(body, cfg.render.live_faces), temporal=not images)
    sinks: list[Sink] = []
    npz = meshes = None
    stem = source.name
    if out.save_npz is not None:
        npz = NpzSink(out.save_npz, per_frame=isinstance(source, ImageListSource), stem=stem,
                      save_verts=out.save_verts, fmt=out.npz_format)
        sinks.append(npz)
    if out.export_mesh is not None:
        meshes = MeshExporter(out.export_mesh, out.mesh_format, out.mesh_space)
        sinks.append(meshes)
    vmc = None
    if out.vmc is not None:
        vmc = VmcSink(out.vmc, VmcSkeleton.from_body(body), out.vmc_track)
        sinks.append(vmc)
    anim = None
    if out.export_anim is not None:
        anim = AnimSink(out.export_anim, stem, source.fps, body, per_image=images)
        sinks.append(anim)
    record = None
    if out.record is not None:
        record = RecordRequest(out.record, source.fps, block=every_frame, timed=source.live)
    pipe = Pipeline(source, model, body, settings, pcfg, sinks, record, on_output=on_output, on_end=on_end)
    # Start-up objects (torch, Qt, the models, their sessions) never die: freezing them keeps the collector's passes,
    # which hold the GIL that every stage thread needs, to what the frames allocate (an unfrozen full pass took
    # ~200 ms in the window; headless, README main command: generation-1 passes 101 -> 67 ms per 400 frames).
    # Unfrozen first: a window that opens another input lets the previous session's objects be collected.
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    return Session(cfg, source, pipe, settings, npz, meshes, vmc=vmc, anim=anim, record_request=record)
