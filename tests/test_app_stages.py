"""The stage harness (app/stages.py) on its own, and the pipeline's use of it: latest-wins vs lossless hand-offs,
drop counters, the end of stream, prompt stops, and a stage's error reaching its owner exactly once."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest

from app.capture import FrameSource
from app.pipeline import LiveSettings, Pipeline, PipelineCfg
from app.stages import Handoff, Pacer, Stage
from app.types import PeoplePacket
from engine.frame_models.base import FramePeople, ModelInfo, PeopleModel
from engine.types import Letterbox, People


# ---------------------------------------------------------------------------------------------- hand-off
def test_latest_wins_keeps_the_newest_and_counts_every_drop():
    drops: list[int] = []
    h: Handoff[int] = Handoff(2, "latest", on_drop=lambda: drops.append(1))
    for i in range(7):
        assert h.put(i)  # never waits, never refuses
    assert (h.get(0.1), h.get(0.1)) == (5, 6)
    assert h.dropped == 5 and len(drops) == 5
    with pytest.raises(TimeoutError):
        h.get(0.05)


def test_lossless_delivers_everything_in_order_to_a_slow_consumer():
    h: Handoff[int] = Handoff(2, "lossless")
    n = 40

    def produce() -> None:
        for i in range(n):
            assert h.put(i)
        h.close()

    t = threading.Thread(target=produce)
    t.start()
    got = []
    while (item := h.get(2.0)) is not None:
        got.append(item)
        time.sleep(0.002)
    t.join(2)
    assert got == list(range(n)) and h.dropped == 0


def test_lossless_put_gives_up_promptly_when_told_to_stop_and_on_timeout():
    h: Handoff[int] = Handoff(1, "lossless")
    assert h.put(0)
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    t = time.perf_counter()
    assert not h.put(1, until=stop.is_set)
    assert 0.15 < time.perf_counter() - t < 1.0
    t = time.perf_counter()
    assert not h.put(1, timeout=0.1)
    assert time.perf_counter() - t < 0.5
    assert h.get(0.1) == 0 and len(h) == 0  # the refused items never went in


def test_offer_drops_the_new_item_when_full():
    h: Handoff[str] = Handoff(1, "lossless")
    assert h.offer("a") and not h.offer("b")
    assert h.dropped == 1 and h.get(0.1) == "a"


def test_end_of_stream_never_displaces_an_item_and_stays_after_a_drain():
    h: Handoff[int] = Handoff(1, "latest")
    h.put(1)
    h.close()
    assert h.closed and not h.put(2) and not h.offer(3)
    assert h.get(0.1) == 1 and h.get(0.1) is None and h.get(0.1) is None
    h2: Handoff[int] = Handoff(3, "lossless")
    h2.put(1)
    h2.put(2)
    h2.close()
    assert h2.drain() == 2 and h2.get(0.1) is None


def test_close_wakes_a_waiting_consumer():
    h: Handoff[int] = Handoff(1, "lossless")
    threading.Timer(0.1, h.close).start()
    t = time.perf_counter()
    assert h.get(5.0) is None and time.perf_counter() - t < 1.0


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="policy"):
        Handoff(1, "newest")
    with pytest.raises(ValueError, match="capacity"):
        Handoff(0)


# ---------------------------------------------------------------------------------------------- stage
def test_stage_captures_the_error_calls_the_owner_and_reraises():
    seen: list[tuple[str, object]] = []

    def body() -> None:
        raise KeyError("boom")

    st = Stage("worker-x", body, on_error=lambda e: seen.append((threading.current_thread().name, e)),
               on_exit=lambda: seen.append(("exit", None)))
    st.start()
    assert st.join(2.0)
    assert isinstance(st.error, KeyError) and seen[0] == ("worker-x", st.error) and seen[1] == ("exit", None)
    with pytest.raises(KeyError, match="boom"):
        st.raise_error()


def test_stage_stops_promptly_and_a_stuck_one_is_named(caplog):
    ticks = []

    def loop() -> None:
        while not st.stopping:
            ticks.append(1)
            st.wait(0.01)

    st = Stage("looper", loop)
    st.start()
    time.sleep(0.05)
    t = time.perf_counter()
    assert st.stop(2.0) and not st.is_alive() and time.perf_counter() - t < 0.5
    assert ticks and st.error is None
    st.raise_error()  # nothing to raise

    release = threading.Event()
    stuck = Stage("stuck", lambda: release.wait(5)).start()
    with caplog.at_level(logging.WARNING, logger="app.stages"):
        assert not stuck.stop(0.1)
    assert "stuck did not exit" in caplog.text
    release.set()
    assert stuck.join(2.0)


# ---------------------------------------------------------------------------------------------- pipeline
class Numbered(FrameSource):
    """``n`` tiny frames, read as fast as asked (live: a camera that never waits)."""

    def __init__(self, n: int, live: bool) -> None:
        self.n, self.live, self.i, self.name = n, live, 0, "numbered"

    def read(self) -> np.ndarray | None:
        if self.i >= self.n:
            return None
        self.i += 1
        if self.live:
            time.sleep(0.002)
        return np.full((16, 16, 3), self.i % 255, np.uint8)


class OneOrFail(PeopleModel):
    """One person per frame; raises on frame ``fail_at`` (counted from 0) when set."""

    info = ModelInfo("fake", "fake", "cpu")

    def __init__(self, fail_at: int | None = None) -> None:
        self.calls, self.fail_at = 0, fail_at

    def __call__(self, frame_bgr, query) -> FramePeople:
        if self.fail_at is not None and self.calls == self.fail_at:
            raise RuntimeError("model broke")
        self.calls += 1
        people = People(center_preds=np.zeros((1, 2), np.float32), center_confs=np.ones(1, np.float32),
                        cam=np.array([[0.5, 0.0, 0.0]], np.float32), global_orient=np.zeros((1, 3), np.float32),
                        body_pose=np.zeros((1, 69), np.float32), betas=np.zeros((1, 10), np.float32),
                        cam_trans=np.array([[0.0, 0.0, 4.0]], np.float32), track_ids=np.array([-1], np.int64))
        return FramePeople(people, Letterbox.for_frame(16, 16, 64))


def run_pipeline(source: FrameSource, model: PeopleModel, live: bool, delay: float) -> tuple[Pipeline, list, int]:
    got: list[int] = []
    ends = []

    def on_output(out) -> None:
        got.append(out.frame.index)
        time.sleep(delay)  # a slow consumer

    pipe = Pipeline(source, model, None, LiveSettings(), PipelineCfg(live=live, render=False),
                    on_output=on_output, on_end=lambda: ends.append(1))
    pipe.start()
    assert pipe.wait(30)
    pipe.stop()
    return pipe, got, len(ends)


def test_live_pipeline_drops_oldest_packets_and_counts_them():
    pipe, got, ends = run_pipeline(Numbered(150, live=True), OneOrFail(), live=True, delay=0.02)
    snap = pipe.snapshot()
    assert pipe.error is None and ends == 1
    assert got == sorted(got) and len(got) < 150
    assert snap.dropped_render > 0
    # every frame is shown, or dropped at capture or at the render hand-off
    assert len(got) + snap.dropped_render + snap.dropped_capture == 150


def test_file_pipeline_is_lossless_with_a_slow_consumer():
    pipe, got, ends = run_pipeline(Numbered(30, live=False), OneOrFail(), live=False, delay=0.01)
    assert pipe.error is None and ends == 1
    assert got == list(range(30)) and pipe.snapshot().dropped_render == 0


def test_a_failing_stage_stops_the_pipeline_and_is_reported_once():
    pipe, got, ends = run_pipeline(Numbered(30, live=False), OneOrFail(fail_at=5), live=False, delay=0.0)
    assert isinstance(pipe.error, RuntimeError) and str(pipe.error) == "model broke"
    assert got == list(range(len(got))) and len(got) <= 5 and ends == 1
    assert not pipe.capture.alive and all(not st.is_alive() for st in pipe._stages)


def test_the_render_hand_off_carries_typed_packets():
    pipe = Pipeline(Numbered(3, live=False), OneOrFail(), None, LiveSettings(), PipelineCfg(render=False))
    seen: list[object] = []
    original = pipe._q.get

    def spy(timeout=None):
        item = original(timeout)
        seen.append(item)
        return item

    pipe._q.get = spy  # type: ignore[method-assign]
    pipe.start()
    assert pipe.wait(30)
    pipe.stop()
    packets = [p for p in seen if p is not None]
    assert len(packets) == 3 and all(isinstance(p, PeoplePacket) for p in packets)
    assert [p.frame.index for p in packets] == [0, 1, 2] and all("track" in p.timings_ms for p in packets)


def test_pacer_holds_items_to_the_clock_and_restarts_when_behind():
    """Items that arrive all at once (a queue draining) come out one interval apart; an item that is already late
    by more than an interval restarts the clock instead of starting a burst to catch up."""
    pacer = Pacer(threading.Event())
    t0 = time.perf_counter()
    out = []
    for _ in range(5):
        pacer.tick(0.03)
        out.append(time.perf_counter() - t0)
    gaps = np.diff(out)
    assert out[0] < 0.02  # the first item at once
    # held to the clock: item k never before k intervals after the first (a wake-up the OS delays shortens the
    # next gap, as the clock, not the previous item, sets when it is due), and no slower than the clock overall
    since_first = np.array(out[1:]) - out[0]
    assert (since_first >= 0.03 * np.arange(1, 5) - 0.002).all() and gaps.sum() < 0.03 * 4 + 0.1, gaps
    time.sleep(0.1)  # a slow stage: more than one interval late
    t1 = time.perf_counter()
    pacer.tick(0.03)
    pacer.tick(0.03)
    assert 0.025 <= time.perf_counter() - t1 < 0.1  # no catch-up burst: the late item at once, the next on time
    pacer.reset()
    t2 = time.perf_counter()
    pacer.tick(10.0)
    assert time.perf_counter() - t2 < 0.05  # after a reset the next item is due at once
    stop = threading.Event()
    waiting = Pacer(stop)
    waiting.tick(0.0)
    stop.set()
    t3 = time.perf_counter()
    waiting.tick(5.0)
    assert time.perf_counter() - t3 < 0.1  # a stop request ends the wait
