"""The HUD's text: a compact line for users (FPS, latency, people) and, behind a toggle, per-stage timings.

A plain function of the state so it can be tested without a window. The FPS is only shown while frames flow:
paused, ended, loading and stalled inputs say so instead of showing a stale or decaying number, so the window never
presents a frozen picture as live.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..stats import SHORT, STAGES, StatsSnapshot

STALL_AFTER_S = 2.0  # no new frame for this long while playing = "no frames for N s"


@dataclass
class HudState:
    """Attributes:
    mode: "playing", "paused", "ended" or "loading".
    stalled_s: seconds without a new frame while playing (None when frames flow).
    details: show per-stage timings, drops and UI timings.
    ui_line: the UI's own timings (shown with details).
    notes: extra lines (3D view errors, load errors).
    """

    mode: str = "playing"
    stalled_s: float | None = None
    details: bool = False
    ui_line: str = ""
    notes: tuple[str, ...] = ()


def hud_lines(model_line: str, snap: StatsSnapshot, state: HudState) -> list[str]:
    people = f"people {snap.people}"
    stalled = state.stalled_s is not None and state.stalled_s >= STALL_AFTER_S
    if state.mode == "loading":
        head = "loading..."
    elif state.mode == "ended":
        head = f"ended · {people}"
    elif state.mode == "paused":
        head = f"paused (N = step) · {people}"
    elif stalled:
        head = f"NO FRAMES for {state.stalled_s:.0f} s · picture is old"
    else:
        head = f"{snap.fps:4.1f} FPS · latency {snap.latency_ms:4.0f} ms · {people}"
    lines = [model_line, head]
    status = snap.source_status
    says_only_stalled = status.startswith("no frames") and "," not in status  # the head line says it already
    if status != "ok" and not (state.mode == "playing" and stalled and says_only_stalled):
        lines.append(f"source: {status}")
    if snap.recording:
        lines.append(snap.recording)
    if state.details:
        s = snap.stage_ms
        lines.append("ms: " + " ".join(f"{SHORT[k]} {s[k]:.1f}" for k in STAGES if k in s))
        lines.append(f"drops: capture {snap.dropped_capture}, render {snap.dropped_render}, "
                     f"record {snap.dropped_record}")
        if state.ui_line:
            lines.append(state.ui_line)
    lines.extend(state.notes)
    return lines
