"""Process-level faults, through the real entry point (``run_app.py`` in a subprocess):

* SIGHUP (terminal closed) and SIGQUIT (Ctrl+\\) finalise the recording and the npz like SIGINT/SIGTERM, headless and
  in the window, and exit with 128 + the signal number; a real terminal hang-up (a pty closed under the app) too;
* a signal at any moment of start-up (seconds of torch/scipy imports, model load) ends with one line and the
  signal's exit code, never a traceback;
* a closed stdout (``run_app.py ... | head -1``) or stderr loses only that text: outputs are written, the exit code
  is the run's own and no traceback or "Exception ignored" appears.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from testing.scene import write_synthetic_video

ROOT = Path(__file__).resolve().parent.parent
VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
DEMO_CLIP = ROOT / "assets" / "demo" / "demo_crowd.mp4"
STATUS = Path("/proc/self/status")


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """Long enough that a run is still processing when the signal comes."""
    if VTEST.exists():
        return VTEST
    return write_synthetic_video(tmp_path_factory.mktemp("clip") / "long.mp4", frames=900, fps=25.0)


def popen(env: dict[str, str], *args: object, **kw) -> subprocess.Popen:
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen([sys.executable, "run_app.py", *map(str, args)], cwd=ROOT, env=env, text=True, **kw)


def collect_stderr(proc: subprocess.Popen) -> list[str]:
    """Read stderr on a thread (a full pipe would block the app), returning the list it fills."""
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True).start()  # type: ignore[arg-type]
    return lines


def wait_until(cond, timeout: float, what: str, lines: list[str] | None = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"no {what} within {timeout} s: {''.join(lines or [])[-2000:]}")


def video_frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def catches(pid: int, sig: int) -> bool:
    """Whether process ``pid`` has a handler installed for ``sig`` (the SigCgt mask of /proc/PID/status)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = next(int(ln.split()[1], 16) for ln in text.splitlines() if ln.startswith("SigCgt:"))
    return bool(mask >> (sig - 1) & 1)


def signal_after_recording_started(proc: subprocess.Popen, rec: Path, sig: int, lines: list[str]) -> None:
    wait_until(lambda: (rec.exists() and rec.stat().st_size > 20_000) or proc.poll() is not None, 180,
               "recorded frames", lines)
    assert proc.poll() is None, "".join(lines)[-2000:]
    proc.send_signal(sig)


HUP_QUIT = pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGQUIT], ids=["SIGHUP", "SIGQUIT"])


@HUP_QUIT
def test_headless_hup_and_quit_finalise_recording_and_npz(tmp_path, env, ckpt, long_clip, sig):
    rec = tmp_path / "rec.mp4"
    proc = popen(env, "--input", long_clip, "--checkpoint", ckpt, "--headless", "--record", rec, "--save-npz",
                 tmp_path)
    lines = collect_stderr(proc)
    try:
        signal_after_recording_started(proc, rec, sig, lines)
        stdout, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = "".join(lines)
    assert proc.returncode == 128 + sig, err[-2000:]
    assert "Traceback" not in err
    n = video_frames(rec)
    assert n > 5, "the recording is not playable"
    d = np.load(tmp_path / f"{long_clip.stem}.npz")
    assert int(d["num_frames"]) == n  # every processed frame is in both outputs
    assert f"{rec.name}" in stdout


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_closing_the_terminal_finalises_outputs(tmp_path, env, ckpt, long_clip):
    """The real case behind SIGHUP: the app runs on a terminal that goes away. The kernel sends SIGHUP and every
    later write to the terminal fails (EIO), so the summary must not turn into a traceback either."""
    import pty
    import select

    rec = tmp_path / "tty.mp4"
    argv = [sys.executable, str(ROOT / "run_app.py"), "--input", str(long_clip), "--checkpoint", str(ckpt),
            "--headless", "--record", str(rec), "--save-npz", str(tmp_path)]
    pid, master = pty.fork()
    if pid == 0:  # the child: session leader with the pty as its controlling terminal
        os.execve(sys.executable, argv, env)
    seen = b""
    try:
        deadline = time.time() + 180
        while time.time() < deadline and not (rec.exists() and rec.stat().st_size > 20_000):
            if select.select([master], [], [], 0.1)[0]:
                try:
                    seen += os.read(master, 65536)
                except OSError:  # the child is gone
                    break
    finally:
        os.close(master)  # hang up
    waited = 0.0
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and waited < 60:
        time.sleep(0.1)
        waited += 0.1
    if done[0] == 0:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise AssertionError(f"still running 60 s after the hang-up: {seen.decode(errors='replace')[-2000:]}")
    assert os.waitstatus_to_exitcode(done[1]) == 128 + signal.SIGHUP, seen.decode(errors="replace")[-2000:]
    n = video_frames(rec)
    assert n > 5, "the recording is not playable"
    assert int(np.load(tmp_path / f"{long_clip.stem}.npz")["num_frames"]) == n


@pytest.mark.qt
@HUP_QUIT
def test_window_hup_and_quit_close_and_keep_recording(tmp_path, env, ckpt, long_clip, xserver, sig):
    rec = tmp_path / "win.mp4"
    proc = popen(dict(env, DISPLAY=xserver), "--input", long_clip, "--checkpoint", ckpt, "--record", rec, "--no-3d",
                 "--save-npz", tmp_path)
    lines = collect_stderr(proc)
    try:
        signal_after_recording_started(proc, rec, sig, lines)
        stdout, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = "".join(lines)
    assert proc.returncode == 128 + sig, err[-2000:]
    assert "Traceback" not in err and "GUI thread busy" in stdout
    n = video_frames(rec)
    assert n > 5, "the recording is not playable"
    assert int(np.load(tmp_path / f"{long_clip.stem}.npz")["num_frames"]) >= n


@pytest.mark.skipif(not STATUS.exists(), reason="needs /proc to see when the entry point's handlers are in place")
@pytest.mark.parametrize(("sig", "delays"), [(signal.SIGINT, (0.0, 0.2, 0.6, 1.2, 2.2, 3.5)),
                                             (signal.SIGTERM, (0.3, 1.5)), (signal.SIGQUIT, (0.3, 1.5))],
                         ids=["SIGINT", "SIGTERM", "SIGQUIT"])
def test_signal_during_startup_is_one_line_and_its_exit_code(tmp_path, env, ckpt, long_clip, sig, delays):
    """From the moment ``run_app.py`` runs (its handlers are visible in /proc) through the seconds of imports and
    model load: each delay lands in another phase, and every one must end the same clean way.

    Python's own start-up (about 30 ms, before any line of ``run_app.py``) is out of reach and not tested. An entry
    point without the handlers gets the delays counted from 1 s, well inside its imports.
    """
    for delay in delays:
        proc = popen(env, "--input", long_clip, "--checkpoint", ckpt, "--headless", "--save-npz", tmp_path / "out")
        try:
            deadline = time.time() + 1.0
            while time.time() < deadline and not catches(proc.pid, signal.SIGQUIT):
                time.sleep(0.01)
            time.sleep(delay)
            proc.send_signal(sig)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 128 + sig, (delay, err[-2000:])
        assert "Traceback" not in err and "Exception ignored" not in err, (delay, err[-3000:])
        said = "interrupted" in err or f"stopped by {signal.Signals(sig).name}" in err  # start-up or a running loop
        assert said, (delay, err[-2000:])


def test_closed_stdout_keeps_outputs_and_exit_code(tmp_path, env, ckpt):
    """``run_app.py ... | head -0``: the summary has nowhere to go; the npz is written and the run still exits 0."""
    r, w = os.pipe()
    os.close(r)  # the reader is gone before the app writes anything
    proc = popen(env, "--input", DEMO_CLIP, "--checkpoint", ckpt, "--headless", "--max-frames", "3", "--save-npz",
                 tmp_path, stdout=w)
    os.close(w)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-2000:]
    assert "Traceback" not in err and "Exception ignored" not in err and "BrokenPipe" not in err, err[-2000:]
    assert int(np.load(tmp_path / f"{DEMO_CLIP.stem}.npz")["num_frames"]) == 3


def test_closed_stdout_on_help_and_closed_stderr_on_error(tmp_path, env):
    r, w = os.pipe()
    os.close(r)
    proc = popen(env, "--help", stdout=w)
    os.close(w)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and err == "", err[-2000:]
    r, w = os.pipe()
    os.close(r)
    proc = popen(env, "--input", tmp_path / "missing.mp4", "--headless", stderr=w)
    os.close(w)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 5, out  # the error's own code, though its line could not be shown
