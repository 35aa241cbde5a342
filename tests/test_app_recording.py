"""Recording and the outputs' safety (issue 11): an output never replaces an input, any file name works, a full or
read-only disk gives one clear line and a non-zero exit while the part kept stays playable, a killed run keeps its
video and results, and a 1x1 image records and saves its npz."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

import app.recording as recording
from app.config import build_cfg, build_parser
from app.recording import VideoRecorder, check_record_path
from app.session import check_outputs
from engine.errors import OutputError

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "assets" / "demo" / "demo_crowd.mp4"
needs_demo = pytest.mark.skipif(not DEMO.is_file(), reason="assets/demo/demo_crowd.mp4 missing")


def decoded_frames(path: str | Path) -> int:
    """Frames a player gets: decode every packet with FFmpeg; any decoding error fails the test."""
    with open(path, "rb") as f, av.open(f) as c:
        return sum(1 for _ in c.decode(video=0))


def looped(src: Path, dst: Path, times: int) -> Path:
    """``src`` played ``times`` times over, written to ``dst`` (mp4v): a longer clip of the same frames."""
    cap = cv2.VideoCapture(str(src))
    clip = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        clip.append(frame)
    cap.release()
    h, w = clip[0].shape[:2]
    writer = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (w, h))
    for _ in range(times):
        for frame in clip:
            writer.write(frame)
    writer.release()
    return dst


def frames(n: int, size: tuple[int, int] = (96, 64)) -> list[np.ndarray]:
    w, h = size
    out = []
    for i in range(n):
        img = np.full((h, w, 3), (i * 7) % 255, np.uint8)
        cv2.circle(img, (i % w, h // 2), 8, (255, 255, 255), -1)
        out.append(img)
    return out


def run_app(env: dict[str, str], *args: object, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "run_app.py", *map(str, args)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("error:")]


# ---------------------------------------------------------------------------------------------- the input is safe
def cfg_for(*argv: object):
    return build_cfg(build_parser().parse_args([*map(str, argv), "--headless"]))


def test_record_that_resolves_to_the_input_is_refused(tmp_path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"precious input")
    (tmp_path / "sub").mkdir()
    os.symlink(clip, tmp_path / "link.mp4")
    os.link(clip, tmp_path / "hard.mp4")
    for out in (clip, tmp_path / "sub" / ".." / "clip.mp4", tmp_path / "link.mp4", tmp_path / "hard.mp4"):
        with pytest.raises(OutputError, match="is the input file"):
            check_outputs(cfg_for("--input", clip, "--record", out))
    check_outputs(cfg_for("--input", clip, "--record", tmp_path / "other.mp4"))  # a different file is fine
    assert clip.read_bytes() == b"precious input"


def test_npz_named_like_an_input_in_a_folder_is_refused(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.zeros((8, 8, 3), np.uint8))
    (folder / "b.npz").write_bytes(b"not ours")  # a file of the input folder that a result would replace
    with pytest.raises(OutputError, match="is the input file"):
        check_outputs(cfg_for("--input", folder, "--save-npz", folder))
    (folder / "b.npz").unlink()
    check_outputs(cfg_for("--input", folder, "--save-npz", folder))


def test_cli_refuses_to_record_over_its_input_and_leaves_it_untouched(tmp_path, env):
    clip = tmp_path / "clip.mp4"
    shutil.copy(DEMO if DEMO.is_file() else __file__, clip)
    before = clip.read_bytes()
    p = run_app(env, "--input", clip, "--model", "demo", "--headless", "--record", clip, timeout=120)
    assert p.returncode == OutputError.exit_code, p.stderr[-2000:]
    assert len(error_lines(p.stderr)) == 1 and "is the input file" in p.stderr and "Traceback" not in p.stderr
    assert clip.read_bytes() == before


# --------------------------------------------------------------------------------------------- any file name
def test_non_utf8_record_path_is_written_in_a_subprocess(tmp_path):
    """opencv 5.0's VideoWriter segfaults on such a name; the recorder hands FFmpeg a Python file object instead.
    Run in a child so a crash fails this test instead of killing pytest."""
    folder = os.fsencode(tmp_path)
    code = (
        "import os, sys, numpy as np\n"
        "from app.recording import VideoRecorder\n"
        "path = os.fsdecode(os.path.join(sys.argv[1].encode(), b'caf\\xe9.mp4'))\n"
        "rec = VideoRecorder(path, 10.0, (64, 48))\n"
        "[rec.write(np.full((48, 64, 3), i * 20, np.uint8)) for i in range(12)]\n"
        "rec.close()\n"
        "print(rec.frames_written, rec.error)\n")
    p = subprocess.run([sys.executable, "-c", code, tmp_path], cwd=ROOT, capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 0, (p.returncode, p.stderr[-2000:])
    assert p.stdout.split() == ["12", "None"]
    name = os.path.join(folder, b"caf\xe9.mp4")
    assert os.path.isfile(name) and decoded_frames(name) == 12


# ------------------------------------------------------------------------------------------- a disk that fills
def fill_after(monkeypatch, limit: int) -> None:
    """Make the recorder's file raise ENOSPC once ``limit`` bytes were written (as a full disk does)."""
    original = recording._OutputFile.write
    written = [0]

    def write(self, b):
        n = memoryview(b).nbytes
        if written[0] + n > limit:
            self.failure = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            raise self.failure
        written[0] += n
        return original(self, b)

    monkeypatch.setattr(recording._OutputFile, "write", write)


def test_disk_full_mid_recording_keeps_a_playable_part_and_says_so(tmp_path, monkeypatch):
    fill_after(monkeypatch, 60_000)
    out = tmp_path / "full.mp4"
    rec = VideoRecorder(out, 10.0, (96, 64))
    for f in frames(400):
        rec.write(f)
    rec.close()
    assert isinstance(rec.error, OutputError) and "disk full" in str(rec.error)
    assert 0 < rec.frames_kept < rec.frames_written
    assert f"first {rec.frames_kept} of" in str(rec.error)
    assert decoded_frames(out) == rec.frames_kept  # the cut file decodes cleanly, to its last whole fragment


def test_disk_full_before_the_first_fragment_removes_the_file(tmp_path, monkeypatch):
    fill_after(monkeypatch, 2_000)  # room for the header only
    out = tmp_path / "none.mp4"
    rec = VideoRecorder(out, 10.0, (96, 64))
    for f in frames(40):
        rec.write(f)
    rec.close()
    assert rec.frames_kept == 0 and "nothing playable was left" in str(rec.error)
    assert not out.exists()


def test_low_disk_guard_stop_is_a_lost_output_with_a_playable_part(tmp_path):
    """The free-space guard keeps room for the other outputs; stopping early still means frames were lost."""
    checks = []

    def free(_: Path) -> int:
        checks.append(1)
        return 10**12 if len(checks) <= 1 else 1 << 20  # the second check (frame 30) sees 1 MiB left

    out = tmp_path / "low.mp4"
    rec = VideoRecorder(out, 10.0, (96, 64), disk_free=free)
    for f in frames(80):
        rec.write(f)
    rec.close()
    assert isinstance(rec.error, OutputError) and "disk almost full" in str(rec.error)
    assert "stopped after 30 frames (kept, playable)" in str(rec.error)
    assert decoded_frames(out) == 30


def test_trim_cuts_a_partial_fragment(tmp_path):
    from app.recording import _boxes, trim_to_whole_fragments

    out = tmp_path / "whole.mp4"
    rec = VideoRecorder(out, 10.0, (96, 64))
    for f in frames(35):
        rec.write(f)
    rec.close()
    data = out.read_bytes()
    assert trim_to_whole_fragments(out) == 35 and out.read_bytes() == data  # a whole file is left as it is
    last_mdat = [(start, end) for kind, start, end in _boxes(data) if kind == b"mdat"][-1]
    out.write_bytes(data[:(last_mdat[0] + last_mdat[1]) // 2])  # a write that stopped inside the last fragment
    kept = trim_to_whole_fragments(out)
    assert kept == 30  # three whole one-second fragments of 10 frames
    assert decoded_frames(out) == kept


def try_mount(folder: Path, options: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    folder.mkdir(parents=True, exist_ok=True)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    return p.returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs (needs root and mount; skipped with the reason otherwise)."""
    folder = tmp_path / "small"
    if not try_mount(folder, "size=2m"):
        pytest.skip("cannot mount a small tmpfs here (needs root and mount); the injected-ENOSPC tests cover it")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@needs_demo
def test_cli_on_a_full_disk_exits_6_with_one_line_and_keeps_valid_parts(tmp_path, env, small_disk):
    p = run_app(env, "--input", DEMO, "--model", "demo", "--headless", "--max-frames", "60",
                "--record", small_disk / "rec.mp4", "--save-npz", small_disk / "npz",
                "--export-mesh", small_disk / "mesh", "--mesh-format", "glb")
    assert p.returncode == OutputError.exit_code, p.stderr[-3000:]
    assert len(error_lines(p.stderr)) == 1 and "disk" in error_lines(p.stderr)[0], p.stderr[-3000:]
    assert "Traceback" not in p.stderr
    left = [f for f in small_disk.rglob("*") if f.is_file()]
    assert not [f for f in left if ".tmp" in f.name], left  # no partial file left behind
    if (small_disk / "rec.mp4").exists():
        assert decoded_frames(small_disk / "rec.mp4") > 0
    for f in left:
        if f.suffix == ".npz":
            with np.load(f) as d:
                assert len(d["frame_ids"]) == len(d["center_confs"])
        if f.suffix == ".glb":
            assert f.read_bytes()[:4] == b"glTF" and len(f.read_bytes()) == int.from_bytes(f.read_bytes()[8:12],
                                                                                            "little")


# ------------------------------------------------------------------------------------------ read-only folders
def test_read_only_record_path_reports_the_real_cause(tmp_path, monkeypatch):
    """The clean-up after the failed probe used to raise EROFS itself and hide the message."""
    def refuse(*_a, **_k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(recording, "open", refuse, raising=False)
    monkeypatch.setattr(Path, "unlink", refuse)
    with pytest.raises(OutputError, match=r"not writable \(Read-only file system"):
        check_record_path(tmp_path / "out.mp4")


def test_read_only_mount(tmp_path):
    folder = tmp_path / "ro"
    if not try_mount(folder, "ro,size=1m"):
        pytest.skip("cannot mount a read-only tmpfs here (needs root and mount); the injected EROFS test covers it")
    try:
        with pytest.raises(OutputError, match=r"not writable \(Read-only file system"):
            check_record_path(folder / "out.mp4")
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


# ------------------------------------------------------------------------------------------------ tiny frames
def test_odd_and_tiny_frames_are_padded_not_refused(tmp_path):
    rec = VideoRecorder(tmp_path / "tiny.mp4", 5.0, (1, 1))
    for v in (0, 128, 255):
        rec.write(np.full((1, 1, 3), v, np.uint8))
    rec.close()
    assert rec.error is None and rec.frame_size == (2, 2)
    assert decoded_frames(tmp_path / "tiny.mp4") == 3


@needs_demo
def test_cli_1x1_image_records_and_writes_its_npz(tmp_path, env):
    img = tmp_path / "dot.png"
    cv2.imwrite(str(img), np.full((1, 1, 3), 200, np.uint8))
    p = run_app(env, "--input", img, "--model", "demo", "--headless", "--record", tmp_path / "dot.mp4",
                "--save-npz", tmp_path / "npz")
    assert p.returncode == 0, p.stderr[-3000:]
    assert decoded_frames(tmp_path / "dot.mp4") == 1
    with np.load(tmp_path / "npz" / "dot.npz") as d:
        assert "center_confs" in d.files


# ------------------------------------------------------------------------------------------- killed outright
@needs_demo
def test_sigkill_keeps_a_playable_recording_and_the_results_so_far(tmp_path, env):
    out, npz_dir = tmp_path / "rec.mp4", tmp_path / "npz"
    clip = looped(DEMO, tmp_path / "long.mp4", 4)  # long enough that a fast machine is still running it when killed
    npz = npz_dir / f"{clip.stem}.npz"
    proc = subprocess.Popen([sys.executable, "run_app.py", "--input", str(clip), "--model", "demo", "--headless",
                             "--record", str(out), "--save-npz", str(npz_dir)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            if npz.exists() and out.exists() and out.stat().st_size > 200_000:  # a few fragments and a checkpoint
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(1.0)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    n = decoded_frames(out)
    with np.load(npz) as d:  # the last checkpoint: a complete file in the normal format, no pickles
        rows, done = len(d["center_confs"]), int(d["num_frames"])
        assert d["frame_ids"].shape == (rows,) and set(d["frame_ids"].tolist()) <= set(range(done))
    total = int(cv2.VideoCapture(str(clip)).get(cv2.CAP_PROP_FRAME_COUNT))
    assert 10 <= n < total and 10 <= done < total, (n, done, total)  # killed mid-run, with most of it kept
