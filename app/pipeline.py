"""capture -> model -> render, each stage a named :class:`~app.stages.Stage`, joined by bounded hand-offs.

* capture (:class:`~app.capture.CaptureThread`): newest-frame slot for live sources, blocking queue for files.
* model: the people model (frame in, people out: InstanceHMR or the real-footage default), tracking and One-Euro
  smoothing.
* render: body model (meshes), overlay annotators, then the sinks (recorder, npz, mesh export) and the consumer
  callback (the Qt bridge or the headless progress bar).

The model stage hands the render stage a typed :class:`~app.types.PeoplePacket` per frame. In live mode that
hand-off is latest-wins (the OLDEST packet is dropped when full, counted in the stats), so a slow renderer never
makes the picture lag; in file mode every hand-off is lossless, so nothing is lost. Every blocking call has a
timeout and ``stop()`` joins every thread. The body model runs on the render thread so that the model thread, the
usual bottleneck, only does what must happen before the next inference. A stage's exception stops the pipeline and
is kept in ``error`` for the caller to report after the outputs have been finalised.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from engine.body import BodyModel
from engine.frame_models.base import PeopleModel, PeopleQuery
from engine.postprocess import people_to_meshes
from engine.types import Letterbox, Meshes, People

from .capture import CaptureThread, Frame, FrameSource, ReconnectingSource
from .paths import shown
from .recording import VideoRecorder
from .render import CenterAnnotator, MeshAnnotator, Scene, SkeletonAnnotator, render_overlay
from .render.lod import tiny_faces
from .smoothing import PeopleSmoother
from .stages import Handoff, Pacer, Stage
from .stats import Stats, StatsSnapshot
from .tracking import Tracker
from .types import FrameOutput, LiveSettings, PeoplePacket, PipelineCfg, RecordRequest

log = logging.getLogger(__name__)
MAX_PACED_GAP_S = 1.0  # a longer step in media time between two shown frames is a seek, not playback

__all__ = ["FrameOutput", "LiveSettings", "PeoplePacket", "Pipeline", "PipelineCfg", "RecordRequest", "Sink"]


class Sink(Protocol):
    """Something that consumes every processed frame on the render thread (npz, mesh export)."""

    def add(self, frame_index: int, name: str, people: People, meshes: Meshes | None) -> object: ...


class Pipeline:
    """The running app minus the window: start(), pause/step, recording on/off, snapshot() for the HUD, stop().

    ``on_output`` is called on the render thread with every :class:`FrameOutput` (keep it short: the Qt bridge
    only converts to a QImage and emits); ``on_end`` when the input ends or a stage fails.
    """

    def __init__(self, source: FrameSource, model: PeopleModel, body: BodyModel | None, settings: LiveSettings,
                 cfg: PipelineCfg, sinks: list[Sink] | None = None, record: RecordRequest | None = None,
                 on_output: Callable[[FrameOutput], None] | None = None,
                 on_end: Callable[[], None] | None = None) -> None:
        self.source = source
        self.model = model
        self.body = body
        self.settings = settings
        self.cfg = cfg
        self.sinks = sinks or []
        self.on_output = on_output
        self.on_end = on_end
        self.stats = Stats()
        self.tracker = Tracker()
        self.smoother = PeopleSmoother(settings.smooth_strength)
        self.mesh_annotator = MeshAnnotator(settings.opacity, faces=cfg.live_faces, coarse_faces=cfg.coarse_faces,
                                            tiny_faces=tiny_faces(body) if body is not None else None)
        self.error: BaseException | None = None
        self.finished = threading.Event()
        self.recorder: VideoRecorder | None = None
        self.record_note = ""
        self.record_errors: list[BaseException] = []  # recordings that lost frames (disk full, write error)
        self._record_req = record
        self._record_changed = threading.Event()
        if record is not None:
            self._record_changed.set()
        self._rerender = threading.Event()
        self._redraw_lock = threading.Lock()
        self._seek_target: int | None = None  # model thread: drop frames until this one (see seek())
        self._render_target: int | None = None  # render thread: the same for items already queued
        self._gate = threading.Lock()
        self._paused = False
        self._tokens = {"model": 0, "render": 0}
        self._last: FrameOutput | None = None
        self._stop = threading.Event()
        self._pacer = Pacer(self._stop)  # render stage: paced files are shown at their frame rate
        self._last_media: float | None = None
        self._q: Handoff[PeoplePacket] = (Handoff(2, "latest", on_drop=self._count_render_drop) if cfg.live
                                          else Handoff(cfg.queue_size, "lossless"))
        self.capture = CaptureThread(source, mode="latest" if cfg.live else "queue", pace=cfg.pace,
                                     max_frames=cfg.max_frames)
        # model and render share one stop flag: a failure in either stops both
        self._stages = [Stage("model", self._model_loop, self._stop, on_error=self._fail, on_exit=self._q.close),
                        Stage("render", self._render_loop, self._stop, on_error=self._fail,
                              on_exit=self._render_exit)]

    # ------------------------------------------------------------------ control
    def start(self) -> Pipeline:
        self.capture.start()
        for stage in self._stages:
            stage.start()
        return self

    def set_paused(self, paused: bool) -> None:
        """Pause at every stage: capture stops reading, and frames already queued wait, so the picture freezes
        at once instead of after the queues drain."""
        with self._gate:
            self._paused = paused
            self._tokens = {"model": 0, "render": 0}
        self.capture.set_paused(paused)

    def step(self) -> None:
        """While paused: show exactly one more frame (the next queued one, else a newly captured one)."""
        with self._gate:
            self._tokens["render"] += 1
            if len(self._q) < self._tokens["render"]:
                self._tokens["model"] += 1
                self.capture.step()

    def _may_run(self, stage: str) -> bool:
        with self._gate:
            if not self._paused:
                return True
            if self._tokens[stage] > 0:
                self._tokens[stage] -= 1
                return True
            return False

    def rerender(self) -> None:
        """Redraw the last frame with the current settings (toggles while paused, or after the end of the input,
        when the render thread is gone and a short thread of its own redraws)."""
        if self.finished.is_set():
            last = self._last
            if last is not None:
                threading.Thread(target=self._redraw_after_end, args=(last,), name="rerender", daemon=True).start()
            return
        self._rerender.set()

    def _redraw_after_end(self, last: FrameOutput) -> None:
        with self._redraw_lock:  # toggles in quick succession: one redraw at a time, each with the settings then
            self._redraw(last)

    # ------------------------------------------------------------------ seeking (files)
    def seek(self, frame_index: int) -> None:
        """Continue a file from ``frame_index``. Frames read before the seek are dropped at both stages, and
        tracking, smoothing and the model's frame-to-frame state restart at the new frame (a jump is not motion).
        While paused, exactly the new frame is shown."""
        with self._gate:
            self._seek_target = self._render_target = frame_index
            if self._paused:
                self._tokens = {"model": 1, "render": 1}
        self._last_media = None  # the render clock restarts at the new frame
        self.capture.seek(frame_index)
        if self._paused:
            self.capture.step()

    def _after_seek(self, frame: Frame, stage: str) -> bool:
        """False for a frame read before the latest seek (its step token, if any, goes back)."""
        attr = "_seek_target" if stage == "model" else "_render_target"
        with self._gate:
            target = getattr(self, attr)
            if target is None:
                return True
            if self.capture.seek_failed == target:  # the source cannot seek: it plays on from where it was
                setattr(self, attr, None)
                return True
            if frame.index != target:
                if self._paused:
                    self._tokens[stage] += 1
                return False
            setattr(self, attr, None)
        if stage == "model":
            self.tracker.tracks = []  # forget who was where; new IDs keep counting up so none is reused
            self.smoother.reset()
            self.model.reset()
        return True

    def set_recording(self, request: RecordRequest | None) -> None:
        """Start (request) or stop (None) recording; applied by the render thread on its next frame."""
        self._record_req = request
        self._record_changed.set()

    def snapshot(self) -> StatsSnapshot:
        status = self.source.status if isinstance(self.source, ReconnectingSource) else "ok"
        rec = self.recorder
        if rec is not None and rec.active:
            note = f"REC {rec.path.name} {rec.frames_written} frames"
        else:
            note = self.record_note
        return self.stats.snapshot(dropped_capture=self.capture.dropped,
                                   dropped_record=rec.frames_dropped if rec else 0, source_status=status,
                                   recording=note)

    def wait(self, timeout: float | None = None) -> bool:
        return self.finished.wait(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every thread (bounded), then finalise the recording and the sinks."""
        self._stop.set()
        self.capture.stop(timeout)
        for stage in self._stages:
            stage.join(timeout)
        self._close_recorder()
        self.finished.set()

    # ------------------------------------------------------------------ workers
    def _fail(self, e: BaseException) -> None:
        """A stage failed (on its thread): keep the first error for the caller, stop every stage, report the end."""
        if self.error is None:
            self.error = e
        self._stop.set()
        self.finished.set()
        if self.on_end is not None:
            self.on_end()

    def _render_exit(self) -> None:
        """The render stage is the last one: its exit is the pipeline's end (a failure reported it already)."""
        self.finished.set()
        if self.on_end is not None and self.error is None:
            self.on_end()

    def _count_render_drop(self) -> None:
        self.stats.dropped_render += 1

    def _model_loop(self) -> None:
        st = self.settings
        while not self._stop.is_set():
            if not self._may_run("model"):
                self._stop.wait(0.01)
                continue
            try:
                frame = self.capture.read(timeout=0.5)
            except TimeoutError:
                with self._gate:  # nothing came: give the step token back
                    if self._paused:
                        self._tokens["model"] += 1
                continue
            if frame is None:
                if self.capture.error is not None:
                    raise self.capture.error
                break
            if not self._after_seek(frame, "model"):
                continue
            if not self.cfg.temporal:
                self.tracker.reset()
                self.model.reset()
            result = self.model(frame.image, PeopleQuery(st.threshold, st.max_people))
            people, box = result.people, result.box
            t3 = time.perf_counter()
            upd = self.tracker.assign(people, box, frame.image)
            people.track_ids = upd.ids
            self.smoother.drop(upd.ended)
            if st.smooth and self.cfg.temporal:
                if self.smoother.strength != st.smooth_strength:
                    self.smoother.set_strength(st.smooth_strength)
                people = self.smoother.apply(people, frame.t_media)
            t4 = time.perf_counter()
            timings = {"capture": frame.capture_ms, **result.timings_ms, "track": (t4 - t3) * 1e3}
            if not self._q.put(PeoplePacket(frame, people, box, timings), until=self._stop.is_set):
                break  # stopping (file mode); latest-wins never refuses
        # on exit the stage closes the hand-off: the render stage drains it, then ends

    def _render_loop(self) -> None:
        while not self._stop.is_set():
            self._apply_record_request(None)
            try:
                packet = self._next_packet()
            except TimeoutError:  # nothing to show now: the time to redraw with changed settings
                if self._rerender.is_set() and self._last is not None:
                    self._rerender.clear()
                    self._redraw(self._last)
                continue
            if packet is None:  # the model stage has ended and everything it handed on is shown
                break
            if not self._after_seek(packet.frame, "render"):
                continue
            self._show_at_media_time(packet.frame)
            self._process(packet.frame, packet.people, packet.box, packet.timings_ms)

    def _show_at_media_time(self, frame: Frame) -> None:
        """A paced file is shown at its frame rate, not in the burst that drains a queue filled while the model was
        slow (see :class:`~app.stages.Pacer`); a pause, a step or a seek (a jump in media time) restarts the clock."""
        if not self.cfg.pace:
            return
        last, self._last_media = self._last_media, frame.t_media
        if last is None or self._paused or not 0 <= frame.t_media - last <= MAX_PACED_GAP_S:  # a pause or a seek
            self._pacer.reset()
        self._pacer.tick(frame.t_media - (last if last is not None else frame.t_media))

    def _next_packet(self) -> PeoplePacket | None:
        """The next packet to render (None at the end); TimeoutError when paused without a step, or none came."""
        if not self._may_run("render"):
            self._stop.wait(0.01)
            raise TimeoutError("paused")
        try:
            return self._q.get(timeout=0.05)
        except TimeoutError:
            with self._gate:  # nothing came: give the step token back
                if self._paused:
                    self._tokens["render"] += 1
            raise

    def _annotators(self) -> list:
        st = self.settings
        out: list = []
        if st.show_mesh:
            self.mesh_annotator.opacity = st.opacity
            out.append(self.mesh_annotator)
        if st.show_skeleton:
            out.append(SkeletonAnnotator())
        if st.show_centers:
            out.append(CenterAnnotator())
        return out

    def _process(self, frame: Frame, people: People, box: Letterbox, timings: dict[str, float]) -> None:
        t0 = time.perf_counter()
        meshes = people_to_meshes(people, self.body, box) if self.body is not None else None
        t1 = time.perf_counter()
        overlay = None
        self._apply_record_request((frame.image.shape[1], frame.image.shape[0]))
        rec = self.recorder
        if self.cfg.render or rec is not None:
            overlay = render_overlay(frame.image, Scene(people, meshes, box), self._annotators())
        t2 = time.perf_counter()
        if rec is not None and overlay is not None:
            rec.write(overlay, frame.t_capture)
            if rec.stopped_reason:
                self.record_note = rec.stopped_reason
                self._close_recorder()
        for s in self.sinks:
            s.add(frame.index, frame.name, people, meshes)
        timings.update(body_model=(t1 - t0) * 1e3, render=(t2 - t1) * 1e3)
        if rec is not None:
            timings["encode"] = rec.encode_ms
        latency = (time.perf_counter() - frame.t_capture) * 1e3
        out = FrameOutput(frame, people, meshes, box, overlay, timings, latency)
        self._last = out
        self.stats.add(timings)
        self.stats.frame_out(latency, len(people))
        if self.on_output is not None:
            self.on_output(out)

    def _redraw(self, last: FrameOutput) -> None:
        overlay = render_overlay(last.frame.image, Scene(last.people, last.meshes, last.box), self._annotators())
        out = FrameOutput(last.frame, last.people, last.meshes, last.box, overlay, last.timings_ms, last.latency_ms)
        if self.on_output is not None:
            self.on_output(out)

    # ------------------------------------------------------------------ recording
    def _apply_record_request(self, size: tuple[int, int] | None) -> None:
        """Open/close the recorder as requested; opening needs the frame ``size`` (w, h)."""
        if not self._record_changed.is_set():
            return
        req = self._record_req
        if req is None:
            self._record_changed.clear()
            self._close_recorder()
            return
        if size is None:
            return  # opened with the next frame, whose size is known
        self._record_changed.clear()
        self._close_recorder()
        try:
            self.recorder = VideoRecorder(req.path, req.fps, size, block=req.block, timed=req.timed)
            self.record_note = ""
        except Exception as e:
            self.record_note = f"recording failed: {e}"
            if not self.cfg.live:
                raise  # headless/file runs: a requested output that cannot be written is an error
            log.error(self.record_note)

    def _close_recorder(self) -> None:
        rec, self.recorder = self.recorder, None
        if rec is not None:
            rec.close()
            if rec.error is not None:
                self.record_errors.append(rec.error)
                self.record_note = rec.stopped_reason
            elif not self.record_note:
                self.record_note = f"saved {shown(rec.path)} ({rec.frames_written} frames)"
