"""The one stage harness: a named worker thread and the bounded hand-off between two threads.

Capture, model, render and the recorder's writer each run on a :class:`Stage` and pass their work on through a
:class:`Handoff`. Before this module each of them had its own loop, its own end marker and its own queue-full
handling; now the rules live in one place:

* a hand-off is bounded, and what happens when it is full is its policy: ``"latest"`` (live sources: the oldest
  item is dropped and counted, so a slow consumer never makes the picture lag) or ``"lossless"`` (files: the
  producer waits, polling its stop condition, so nothing is lost and nothing blocks forever); :meth:`Handoff.offer`
  is the third choice, "drop the new item", for a producer that must never wait (live recording);
* the end of a stream is a state of the hand-off (:meth:`Handoff.close`), not an item, so it never displaces a
  frame, is never dropped, and every later reader sees it;
* every wait is bounded (:data:`POLL_S`), so a stop request is seen promptly by both sides;
* a stage's exception is captured (``error``), handed to its owner's ``on_error`` on the stage's own thread, and
  re-raised to the owner by :meth:`Stage.raise_error`; ``stop()`` joins with a timeout and says when a thread did
  not exit.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
POLL_S = 0.1  # the longest any wait in a hand-off goes without re-checking its stop condition
POLICIES = ("latest", "lossless")


class Pacer:
    """Holds a stream to its media clock: :meth:`tick` returns when the next item is due.

    A file played "at its frame rate" is paced twice: capture reads at the clip's rate, and the render stage (the
    window, the VMC stream) shows at it, because the queue between them fills while a stage is slow (the first
    frame, a detector pass) and would otherwise drain in a burst faster than real time. Behind by more than one
    interval, the clock restarts from now: a slow stage makes playback slower, never a burst.

    Args:
        stop: waits end early when this is set.
    """

    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop
        self._last: float | None = None  # when the previous item was due

    def reset(self) -> None:
        """The next item is due at once (after a pause or a seek)."""
        self._last = None

    def tick(self, interval: float) -> None:
        """Wait until the next item is due: ``interval`` seconds after the previous one (the first at once)."""
        now = time.perf_counter()
        due = None if self._last is None else self._last + max(interval, 0.0)
        if due is None or now - due > interval:
            self._last = now
            return
        self._last = due
        if due > now:
            self._stop.wait(due - now)


class Handoff(Generic[T]):
    """A bounded, closable hand-off between one producer and one consumer thread.

    Args:
        capacity: most items held at once (>= 1).
        policy: ``"latest"`` (a full hand-off drops its oldest item) or ``"lossless"`` (a full hand-off makes
            :meth:`put` wait).
        on_drop: called (under the hand-off's lock, keep it trivial) for every item dropped, after ``dropped``
            is counted; the pipeline feeds its stats counter from it.
    """

    def __init__(self, capacity: int, policy: str = "lossless", on_drop: Callable[[], None] | None = None) -> None:
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.policy = policy
        self.dropped = 0
        self._on_drop = on_drop
        self._items: deque[T] = deque()
        self._closed = False
        self._cv = threading.Condition()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def _drop(self) -> None:
        self.dropped += 1
        if self._on_drop is not None:
            self._on_drop()

    def put(self, item: T, until: Callable[[], bool] | None = None, timeout: float | None = None) -> bool:
        """Hand ``item`` on; True when it was taken in.

        ``"latest"`` never waits (the oldest item makes room). ``"lossless"`` waits for room until ``until()``
        turns true or ``timeout`` passes (then False, the item not taken). After :meth:`close` nothing is taken.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            if self._closed:
                return False
            if self.policy == "latest":
                while len(self._items) >= self.capacity:
                    self._items.popleft()
                    self._drop()
            else:
                while len(self._items) >= self.capacity:
                    if self._closed or (until is not None and until()):
                        return False
                    wait = POLL_S if deadline is None else min(POLL_S, deadline - time.monotonic())
                    if wait <= 0:
                        return False
                    self._cv.wait(wait)
            self._items.append(item)
            self._cv.notify_all()
            return True

    def offer(self, item: T) -> bool:
        """Hand ``item`` on only if there is room now; otherwise it is dropped (counted) and False returned."""
        with self._cv:
            if self._closed:
                return False
            if len(self._items) >= self.capacity:
                self._drop()
                return False
            self._items.append(item)
            self._cv.notify_all()
            return True

    def get(self, timeout: float | None = None) -> T | None:
        """The oldest item; ``None`` once the hand-off is closed and empty (for every later call too).

        Raises:
            TimeoutError: nothing arrived within ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            while not self._items:
                if self._closed:
                    return None
                wait = POLL_S if deadline is None else deadline - time.monotonic()
                if wait <= 0:
                    raise TimeoutError("nothing handed on in time")
                self._cv.wait(min(wait, POLL_S))
            item = self._items.popleft()
            self._cv.notify_all()
            return item

    def close(self) -> None:
        """Mark the end of the stream: items already in stay readable, then :meth:`get` returns ``None``."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()

    def drain(self) -> int:
        """Discard the items not taken yet (a seek, a stop); the end mark, if any, stays. Returns how many."""
        with self._cv:
            n = len(self._items)
            self._items.clear()
            self._cv.notify_all()
            return n


class Stage:
    """Runs ``body`` once on a named daemon thread; ``body`` loops until :attr:`stopping` is true.

    Args:
        name: the thread's name (logs, debuggers, the "did not exit" warning).
        body: the work; it should poll :attr:`stopping` (or wait with :meth:`wait`) at least every second.
        stop_event: share one stop flag between several stages that stop together (the pipeline's model and
            render stages); a new one by default.
        on_error: called on the stage's thread with the exception ``body`` raised, after ``error`` is set.
        on_exit: called on the stage's thread when ``body`` has returned or raised (after ``on_error``).
    """

    def __init__(self, name: str, body: Callable[[], None], stop_event: threading.Event | None = None,
                 on_error: Callable[[BaseException], None] | None = None,
                 on_exit: Callable[[], None] | None = None) -> None:
        self.name = name
        self.error: BaseException | None = None
        self.stop_event = stop_event if stop_event is not None else threading.Event()
        self._body = body
        self._on_error = on_error
        self._on_exit = on_exit
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        try:
            self._body()
        except BaseException as e:
            log.debug("stage %s failed", self.name, exc_info=True)
            self.error = e
            if self._on_error is not None:
                self._on_error(e)
        finally:
            if self._on_exit is not None:
                self._on_exit()

    def start(self) -> Stage:
        self._thread.start()
        return self

    @property
    def stopping(self) -> bool:
        return self.stop_event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking early on stop; True when stopping."""
        return self.stop_event.wait(seconds)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float | None = None, warn: bool = True) -> bool:
        """Wait for the thread (bounded); True when it has exited, else a warning names it (unless ``warn`` is
        False: an owner with a more specific message of its own)."""
        if self._thread.ident is None:  # never started
            return True
        self._thread.join(timeout)
        if self._thread.is_alive():
            if warn:
                log.warning("thread %s did not exit within %.1f s", self.name, timeout or 0.0)
            return False
        return True

    def stop(self, timeout: float | None = None) -> bool:
        """Ask the stage to stop and wait for it (bounded); True when it has exited."""
        self.stop_event.set()
        return self.join(timeout)

    def raise_error(self) -> None:
        """Re-raise, on the owner's thread, the exception the stage ended with (if any)."""
        if self.error is not None:
            raise self.error
