"""End to end, as users run it: ``run_app.py --headless`` on images, folders, a whole clip and a real video; bad
input gives one line and a distinct exit code; SIGINT/SIGTERM finalise the recording and the npz."""

from __future__ import annotations

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
NEEDS_VTEST = pytest.mark.skipif(not VTEST.exists(), reason=f"{VTEST} missing: apt-get install opencv-doc")
FLAT_KEYS = {"center_preds": (2,), "center_confs": (), "cam": (3,), "global_orient": (3,), "body_pose": (69,),
             "betas": (10,), "smpl_thetas": (72,), "cam_trans": (3,), "track_ids": ()}


def run_app(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "run_app.py", *map(str, args)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def video_info(path: Path) -> tuple[int, float]:
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS)
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n, fps


def check_npz(d: np.lib.npyio.NpzFile) -> int:
    n = len(d["center_confs"])
    for k, tail in FLAT_KEYS.items():
        assert d[k].shape == (n, *tail), (k, d[k].shape)
    assert d["joints"].shape[0] == n and d["joints"].shape[2] == 3
    assert d["pj2d_org"].shape == (*d["joints"].shape[:2], 2)
    np.testing.assert_allclose(d["smpl_thetas"], np.concatenate([d["global_orient"], d["body_pose"]], 1))
    return n


def test_image_writes_npz(tmp_path, env, ckpt):
    img = tmp_path / "street.jpg"
    cv2.imwrite(str(img), np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8))
    p = run_app(env, "--input", img, "--checkpoint", ckpt, "--save-npz", tmp_path / "out", "--headless",
                "--threshold", "0.2")
    assert p.returncode == 0, p.stderr[-2000:]
    d = np.load(tmp_path / "out" / "street.npz")
    assert check_npz(d) > 0
    assert sorted(d["track_ids"].tolist()) == list(range(len(d["track_ids"])))


def test_folder_writes_one_npz_per_image(tmp_path, env, ckpt):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("a.png", "b.jpg"):
        cv2.imwrite(str(folder / name), np.full((120, 160, 3), 128, np.uint8))
    (folder / "notes.txt").write_text("ignored")
    p = run_app(env, "--input", folder, "--checkpoint", ckpt, "--save-npz", tmp_path / "o", "--headless")
    assert p.returncode == 0, p.stderr[-2000:]
    assert sorted(f.name for f in (tmp_path / "o").iterdir()) == ["a.npz", "b.npz"]


def test_whole_clip_record_npz_and_meshes(tmp_path, env, ckpt):
    clip = write_synthetic_video(tmp_path / "walk.mp4", frames=30, fps=25.0)
    out = tmp_path / "annotated.mp4"
    p = run_app(env, "--input", clip, "--checkpoint", ckpt, "--headless", "--record", out, "--save-npz",
                tmp_path / "npz", "--export-mesh", tmp_path / "meshes", "--mesh-format", "ply", "--skeleton")
    assert p.returncode == 0, p.stderr[-2000:]
    assert video_info(out) == (30, 25.0)  # same frame count and duration as the source
    d = np.load(tmp_path / "npz" / "walk.npz")
    rows = check_npz(d)
    assert int(d["num_frames"]) == 30 and d["frame_ids"].shape == (rows,)
    assert np.all(np.diff(d["frame_ids"]) >= 0) and d["frame_ids"].max() < 30
    assert len(list((tmp_path / "meshes").glob("walk_f*_id*.ply"))) == rows
    assert "30 frames" in p.stdout and "FPS" in p.stdout


@NEEDS_VTEST
def test_real_video(tmp_path, env, ckpt):
    out = tmp_path / "vtest.mp4"
    p = run_app(env, "--input", VTEST, "--checkpoint", ckpt, "--headless", "--record", out, "--save-npz",
                tmp_path, "--max-frames", "60", "--centers")
    assert p.returncode == 0, p.stderr[-2000:]
    src_fps = cv2.VideoCapture(str(VTEST)).get(cv2.CAP_PROP_FPS)
    n, fps = video_info(out)
    assert n == 60 and fps == pytest.approx(src_fps)  # 60 frames at the source rate: the same 6 s
    d = np.load(tmp_path / "vtest.npz")
    rows = check_npz(d)
    assert rows > 0 and int(d["num_frames"]) == 60
    # 2D joints are the weak-perspective projection of the 3D joints through the letterbox
    h, w = cv2.VideoCapture(str(VTEST)).read()[1].shape[:2]
    side = max(h, w)
    norm = d["joints"][..., :2] * d["cam"][:, None, :1] + d["cam"][:, None, 1:3]
    px = (norm + 1) * side / 2 - np.array([(side - w) // 2, (side - h) // 2])
    np.testing.assert_allclose(d["pj2d_org"], px, atol=0.05)
    # every track appears in consecutive frames (tracking, not fresh IDs per frame)
    assert len(np.unique(d["track_ids"])) < rows / 5


DEMO_CLIPS = sorted((ROOT / "assets" / "demo").glob("*.mp4"))


@pytest.mark.skipif(not DEMO_CLIPS, reason="no bundled demo clip in assets/demo/ yet")
def test_bundled_demo_clip(tmp_path, env, ckpt):
    """The whole demo clip, with the bundled demo model when it is there (else the synthetic scene model)."""
    from app.config import DEMO_CHECKPOINT

    model = DEMO_CHECKPOINT if DEMO_CHECKPOINT.exists() else ckpt
    clip = DEMO_CLIPS[0]
    out = tmp_path / "demo.mp4"
    p = run_app(env, "--input", clip, "--checkpoint", model, "--headless", "--record", out, "--save-npz", tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    cap = cv2.VideoCapture(str(clip))
    src = (int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), cap.get(cv2.CAP_PROP_FPS))
    n, fps = video_info(out)
    assert (n, fps) == (src[0], pytest.approx(src[1]))
    d = np.load(tmp_path / f"{clip.stem}.npz")
    check_npz(d)
    assert int(d["num_frames"]) == src[0]


BAD_INPUTS = [  # (args, exit code, words in the one-line message)
    (["--input", "{tmp}/missing.mp4", "--headless"], 5, "not found"),
    (["--input", "{tmp}/corrupt.mp4", "--headless"], 5, "corrupt"),
    (["--input", "{tmp}/emptydir", "--headless"], 5, "no images"),
    (["--camera", "7", "--headless", "--max-frames", "5"], 5, "camera 7"),
    (["--input", "{img}", "--headless", "--checkpoint", "{tmp}/nope.pt"], 3, "checkpoint not found"),
    (["--input", "{img}", "--headless", "--checkpoint", "{img}"], 3, "checkpoint"),
    (["--input", "{img}", "--headless", "--save-npz", "/proc/forbidden"], 6, "--save-npz"),
    (["--input", "{img}", "--headless", "--record", "/proc/out.mp4"], 6, "--record"),
    (["--input", "{img}", "--headless", "--body-model", "smpl", "--smpl-dir", "{tmp}/nosmpl"], 3, "SMPL"),
    (["--input", "{img}"], 2, "no display"),
    (["--input", "{img}", "--camera", "0"], 2, "either --camera or --input"),
    (["--input", "{img}", "--headless", "--threshold", "3"], 2, "--threshold"),
]


@pytest.mark.parametrize(("args", "code", "words"), BAD_INPUTS, ids=[w for _, _, w in BAD_INPUTS])
def test_bad_input_one_line_and_exit_code(tmp_path, env, ckpt, args, code, words, capsys, monkeypatch):
    """In-process (``cli.main``) to keep the suite fast; the subprocess tests above cover the real entry point."""
    from app.cli import main

    img = tmp_path / "img.png"
    cv2.imwrite(str(img), np.zeros((64, 64, 3), np.uint8))
    (tmp_path / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x13" * 5000)
    (tmp_path / "emptydir").mkdir()
    for k in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("INSTANCEHMR_CACHE_DIR", env["INSTANCEHMR_CACHE_DIR"])
    argv = [a.format(tmp=tmp_path, img=img) for a in args]
    if "--checkpoint" not in argv:
        argv += ["--checkpoint", str(ckpt)]
    rc = main(argv)
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert rc == code, err[-2000:]
    assert len(errors) == 1 and words in errors[0], err[-2000:]
    assert not Path("/proc/out.mp4").exists()


def test_bad_input_through_the_real_entry_point(tmp_path, env, ckpt):
    p = run_app(env, "--input", tmp_path / "missing.mp4", "--headless", "--checkpoint", ckpt, timeout=120)
    assert p.returncode == 5 and p.stderr.strip().splitlines()[-1].startswith("error: input not found")
    assert "Traceback" not in p.stderr


def wait_for_line(proc: subprocess.Popen, text: str, timeout: float) -> list[str]:
    lines: list[str] = []
    done = threading.Event()

    def pump() -> None:
        for ln in proc.stderr:  # type: ignore[union-attr]
            lines.append(ln)
            if text in ln:
                done.set()
        done.set()

    threading.Thread(target=pump, daemon=True).start()
    assert done.wait(timeout), f"no {text!r} in time: {''.join(lines)[-2000:]}"
    return lines


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_finalises_recording_and_npz(tmp_path, env, ckpt, sig):
    src = VTEST if VTEST.exists() else write_synthetic_video(tmp_path / "long.mp4", frames=900, fps=25.0)
    out = tmp_path / "rec.mp4"
    proc = subprocess.Popen([sys.executable, "run_app.py", "--input", str(src), "--checkpoint", str(ckpt),
                             "--headless", "--record", str(out), "--save-npz", str(tmp_path)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = wait_for_line(proc, "recording to", 120)
        time.sleep(2.0)
        proc.send_signal(sig)
        stdout, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + sig, "".join(lines)[-2000:]
    n, _ = video_info(out)
    assert n > 5, "recording is not playable"
    d = np.load(tmp_path / f"{src.stem}.npz")
    assert int(d["num_frames"]) == n  # every processed frame is in both outputs
    assert f"saved {out}" in stdout


@pytest.mark.skipif(not VTEST.exists(), reason="apt-get install -y opencv-doc")
def test_default_model_on_real_video_and_the_demo_names_itself(tmp_path, env):
    """No --checkpoint: the real-footage model finds vtest's walkers and writes valid npz rows (with pj2d_org and
    frame_ids); --model demo warns that it is a synthetic demo."""
    p = run_app(env, "--input", VTEST, "--headless", "--save-npz", tmp_path, "--max-frames", "8")
    assert p.returncode == 0, p.stderr
    d = np.load(tmp_path / "vtest.npz")
    n = check_npz(d)
    assert n >= 3 * 8 and set(d["frame_ids"].tolist()) == set(range(8))  # 3-4 walkers in every frame
    assert np.isfinite(d["pj2d_org"]).all()
    p = run_app(env, "--input", VTEST, "--headless", "--model", "demo", "--max-frames", "2")
    assert p.returncode == 0, p.stderr
    assert "WARNING" in p.stderr and "synthetic demo model" in p.stderr
