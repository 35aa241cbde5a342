"""The window's parts that need no display: HUD text, the 3D view's self-framing camera and floor, the export
history, the seek API of the capture thread and the pipeline, and the window's session configuration."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.capture import CaptureThread, ImageListSource, VideoSource
from app.pipeline import LiveSettings, Pipeline, PipelineCfg
from app.stats import StatsSnapshot
from app.ui.history import ClipHistory
from app.ui.hud import HudState, hud_lines
from app.ui.seekbar import format_time
from app.ui.services import InputChoice, ModelChoice
from app.ui.view3d_worker import OrbitCamera
from engine.errors import ConfigError
from engine.frame_models.base import FramePeople, ModelInfo, PeopleModel
from engine.types import Letterbox, People
from testing.scene import write_synthetic_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_synthetic_video(tmp_path_factory.mktemp("clip") / "walk.mp4", frames=60, fps=25.0)


def snap(**kw) -> StatsSnapshot:
    base = dict(stage_ms={"capture": 1.0, "inference": 20.0, "render": 5.0}, fps=24.5, latency_ms=80.0,
                frames_out=100, people=3)
    base.update(kw)
    return StatsSnapshot(**base)


# ---------------------------------------------------------------- HUD
def test_hud_is_compact_and_never_shows_a_stale_fps():
    lines = hud_lines("Model · backend", snap(), HudState("playing", stalled_s=0.1))
    assert lines[0] == "Model · backend"
    assert "24.5 FPS" in lines[1] and "80 ms" in lines[1] and "people 3" in lines[1]
    assert not any(line.startswith("ms:") for line in lines)  # timings are behind the toggle
    detailed = hud_lines("m", snap(dropped_capture=2), HudState("playing", details=True, ui_line="ui: paint 1 ms"))
    assert any(line.startswith("ms: cap 1.0") and "infer 20.0" in line for line in detailed)
    assert "drops: capture 2, render 0, record 0" in detailed and "ui: paint 1 ms" in detailed
    for mode in ("paused", "ended", "loading"):
        head = hud_lines("m", snap(), HudState(mode))[1]
        assert "FPS" not in head and head.startswith(mode[:5])
    stalled = hud_lines("m", snap(), HudState("playing", stalled_s=3.4))[1]
    assert stalled.startswith("NO FRAMES for 3 s") and "FPS" not in stalled
    assert "FPS" in hud_lines("m", snap(), HudState("playing", stalled_s=1.0))[1]  # under the 2 s threshold
    assert "source: reconnecting 2/8" in hud_lines("m", snap(source_status="reconnecting 2/8"), HudState())
    # the capture's own "no frames" status is not repeated under the head line; what it adds is kept
    dead = hud_lines("m", snap(source_status="no frames for 3 s"), HudState("playing", stalled_s=3.0))
    assert dead[1].startswith("NO FRAMES") and not any(line.startswith("source:") for line in dead)
    both = hud_lines("m", snap(source_status="no frames for 9 s, reconnecting 2/8"), HudState("playing", stalled_s=9))
    assert "source: no frames for 9 s, reconnecting 2/8" in both


def test_format_time():
    assert [format_time(s) for s in (0, 59.9, 61, 3599, 3600 + 62)] == ["0:00", "0:59", "1:01", "59:59", "1:01:02"]


# ---------------------------------------------------------------- 3D view camera
def people_at(centres: list[tuple[float, float, float]], height: float = 1.8) -> np.ndarray:
    """Box-shaped people [N, 8, 3] standing with their feet at y = centre_y - height / 2 (Open3D axes, y up)."""
    box = np.array([[x, y, z] for x in (-0.25, 0.25) for y in (-height / 2, height / 2) for z in (-0.15, 0.15)])
    return np.stack([box + np.array(c) for c in centres])


def test_orbit_camera_frames_the_people_and_follows_smoothly():
    cam = OrbitCamera(tau=0.5)
    group = people_at([(-1.0, 0.0, -6.0), (1.0, 0.0, -8.0)])
    cam.update(group, now=0.0)
    np.testing.assert_allclose(cam.target, [0.0, 0.0, -7.0], atol=1e-6)
    assert cam.floor == pytest.approx(-0.9) and np.allclose(cam.up, [0, 1, 0])  # two people: no plane fit
    near = cam.distance
    # the target projects to the image centre, in front of the camera
    p = cam.extrinsic() @ np.append(cam.target, 1.0)
    assert abs(p[0]) < 1e-9 and abs(p[1]) < 1e-9 and p[2] == pytest.approx(near)
    # the camera is on the video camera's side (larger z), a little above
    assert cam.eye()[2] > cam.target[2] and cam.eye()[1] > cam.target[1]
    # everyone is inside the view
    for v in group.reshape(-1, 3):
        q = cam.extrinsic() @ np.append(v, 1.0)
        assert q[2] > 0 and abs(q[0] / q[2]) < np.tan(cam.fov_y / 2) * cam.aspect and abs(q[1] / q[2]) < np.tan(
            cam.fov_y / 2)
    # people spread wider: the camera backs off
    cam2 = OrbitCamera()
    cam2.update(people_at([(-4.0, 0.0, -7.0), (4.0, 0.0, -7.0)]), now=0.0)
    assert cam2.distance > 2 * near
    # a jump of the group moves the view only part of the way per frame, then converges
    moved = people_at([(2.0, 0.5, -10.0), (4.0, 0.5, -12.0)])
    before = cam.target.copy()
    cam.update(moved, now=1 / 12)
    step = np.linalg.norm(cam.target - before)
    assert 0 < step < 0.25 * np.linalg.norm(np.array([3.0, 0.5, -11.0]) - before)
    for k in range(2, 60):
        cam.update(moved, now=k / 12)
    np.testing.assert_allclose(cam.target, [3.0, 0.5, -11.0], atol=1e-3)
    assert cam.floor == pytest.approx(-0.4, abs=1e-3)
    # no people: the view stays
    t = cam.target.copy()
    cam.update(np.zeros((0, 8, 3)), now=10.0)
    np.testing.assert_array_equal(cam.target, t)


def projected_x(cam: OrbitCamera, verts: np.ndarray) -> np.ndarray:
    """Horizontal image positions of points [M, 3], in half-widths of the view (-1 left edge, 1 right edge)."""
    q = (cam.extrinsic() @ np.c_[verts, np.ones(len(verts))].T)[:3]
    return q[0] / q[2] / (np.tan(cam.fov_y / 2) * cam.aspect)


def test_orbit_camera_centres_an_uneven_group_and_never_loses_a_newcomer():
    # four people on the right, one on the left: the middle of the extent is centred, not the mean of the centres
    cam = OrbitCamera()
    group = people_at([(-3.0, 0.0, -8.0), (2.0, 0.0, -8.0), (2.5, 0.0, -8.5), (3.0, 0.0, -8.0), (2.5, 0.0, -7.5)])
    cam.update(group, now=0.0)
    x = projected_x(cam, group.reshape(-1, 3))
    assert abs(x.min() + x.max()) < 0.1 and x.max() < 1.0
    # someone walks in far to the side: on that very frame everyone is in view (the target still glides)
    cam = OrbitCamera(tau=0.6)
    one = people_at([(0.0, 0.0, -7.0)])
    for k in range(10):
        cam.update(one, now=k / 12)
    two = people_at([(0.0, 0.0, -7.0), (9.0, 0.0, -7.0)])
    before = cam.target.copy()
    cam.update(two, now=10 / 12)
    assert np.linalg.norm(cam.target - before) < 0.3 * 4.5  # the view glides towards the new middle...
    assert np.abs(projected_x(cam, two.reshape(-1, 3))).max() < 1.0  # ...but nobody is outside it
    # the newcomer leaves: the camera comes back in slowly, not at once
    far = cam.distance
    cam.update(one, now=11 / 12)
    assert cam.distance > 0.8 * far
    for k in range(12, 80):
        cam.update(one, now=k / 12)
    assert cam.distance < 0.6 * far


def test_orbit_camera_user_controls_and_reset():
    cam = OrbitCamera()
    cam.update(people_at([(0.0, 0.0, -5.0)]), now=0.0)
    d0, e0 = cam.distance, cam.eye()
    cam.rotate(100, 0)
    assert cam.eye()[0] != pytest.approx(e0[0])  # orbited sideways
    assert np.linalg.norm(cam.eye() - cam.target) == pytest.approx(d0)  # around the target
    cam.zoom_by(2)
    assert cam.distance < d0
    cam.reset()
    assert cam.distance == pytest.approx(d0) and np.allclose(cam.eye(), e0)


def tilted_people(tilt_deg: float, n: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """People standing upright on a ground tilted by ``tilt_deg`` about x (a camera looking down at a street),
    spread over it; returns (verts [N, 8, 3], ground normal)."""
    a = np.radians(tilt_deg)
    rot = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rng = np.random.default_rng(seed)
    on_ground = np.stack([rng.uniform(-4, 4, n), np.full(n, 0.9), rng.uniform(-6, 6, n)], axis=1)
    people = people_at([tuple(c) for c in on_ground])  # feet at y = 0 in ground coordinates
    return (people @ rot.T) + np.array([0.0, -1.5, -15.0]), rot @ np.array([0.0, 1.0, 0.0])


def test_floor_follows_the_ground_under_the_feet_of_a_tilted_camera():
    verts, normal = tilted_people(25.0)
    cam = OrbitCamera(tau_up=1.0)
    cam.update(verts, now=0.0)  # the first scene sets the view at once
    assert np.degrees(np.arccos(np.clip(cam.up @ normal, -1, 1))) < 1.0
    pts, lines = cam.floor_grid()
    feet = OrbitCamera.feet(verts, cam.up)
    assert np.allclose((pts - pts[0]) @ cam.up, 0.0, atol=1e-9)  # the grid is flat on the fitted ground
    assert np.allclose(feet @ cam.up, cam.floor, atol=0.02)  # every person stands on it
    assert lines.shape[1] == 2 and lines.max() < len(pts)
    right, back, _ = cam.basis()
    c = cam.target
    assert (pts @ right).min() < c @ right - cam.radius and (pts @ back).max() > c @ back + cam.radius
    # the up of the view is the ground's: the camera's own y axis (down) is opposite the ground normal's side
    assert cam.extrinsic()[1, :3] @ cam.up < 0
    # a ground steeper than 45 degrees is a bad fit, and people on one line define no plane: up stays
    steep = OrbitCamera()
    steep.update(tilted_people(60.0)[0], now=0.0)
    assert np.allclose(steep.up, [0, 1, 0])
    line = OrbitCamera()
    line.update(people_at([(x, 0.0, -8.0) for x in (-2.0, 0.0, 2.0, 4.0)]), now=0.0)
    assert np.allclose(line.up, [0, 1, 0])
    three = OrbitCamera()  # three feet always fit a plane: not evidence of a ground
    three.update(tilted_people(25.0, n=3)[0], now=0.0)
    assert np.allclose(three.up, [0, 1, 0])
    bumpy = tilted_people(0.0, n=6)[0]
    bumpy[::2, :, 1] += 1.0  # half the people a metre higher: no single floor
    off = OrbitCamera()
    off.update(bumpy, now=0.0)
    assert np.allclose(off.up, [0, 1, 0])
    # once found, up turns towards a new ground slowly (estimated depths are noisy)
    flat = people_at([(x, 0.0, z) for x, z in ((-3, -10), (3, -10), (-3, -16), (3, -16))])
    cam.update(flat, now=1 / 12)
    assert 0 < np.degrees(np.arccos(np.clip(cam.up @ normal, -1, 1))) < 25.0 / 5


def test_floor_grid_lines_stay_put_while_people_move():
    cam = OrbitCamera()
    cam.update(people_at([(0.3, 0.0, -7.2)]), now=0.0)
    pts, _ = cam.floor_grid()
    cam2 = OrbitCamera()
    cam2.update(people_at([(0.35, 0.0, -7.1)]), now=0.0)
    pts2, _ = cam2.floor_grid()
    xs = lambda p: set(np.round(p[:, 0], 6))  # noqa: E731
    assert xs(pts) & xs(pts2) and all(abs(x / 0.5 - round(x / 0.5)) < 1e-9 for x in xs(pts))
    assert np.allclose(pts[:, 1], -0.9)


# ---------------------------------------------------------------- history
def person(track_id: int, x: float = 0.0) -> People:
    return People(center_preds=np.zeros((1, 2), np.float32), center_confs=np.ones(1, np.float32),
                  cam=np.array([[0.5, x, 0.0]], np.float32), global_orient=np.zeros((1, 3), np.float32),
                  body_pose=np.zeros((1, 69), np.float32), betas=np.zeros((1, 10), np.float32),
                  cam_trans=np.array([[x, 0.0, 4.0]], np.float32), track_ids=np.array([track_id], np.int64))


def test_history_keeps_source_order_replaces_replayed_frames_and_is_bounded():
    h = ClipHistory("clip", 25.0, max_frames=5)
    for i in (0, 1, 2):
        h.add(i, "clip", person(1), None)
    h.add(1, "clip", person(7), None)  # seeking back and playing frame 1 again replaces it
    assert [f.index for f in h.frames()] == [0, 1, 2] and h.tracks() == {1: 2, 7: 1}
    for i in range(3, 9):
        h.add(i, "clip", person(1), None)
    assert len(h) == 5 and [f.index for f in h.frames()] == [4, 5, 6, 7, 8] and h.dropped == 4


# ---------------------------------------------------------------- seeking
def frames_of(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, f = cap.read()
        if not ok:
            return out
        out.append(f)


def test_capture_seek_repositions_a_video_and_drops_frames_read_before(clip):
    ref = frames_of(clip)
    cap = CaptureThread(VideoSource(str(clip)), mode="queue", queue_size=4).start()
    try:
        first = [cap.read(5).index for _ in range(3)]
        assert first == [0, 1, 2]
        time.sleep(0.2)  # the queue fills with frames 3..
        cap.seek(40)
        got = []
        while not got or got[-1] < 42:
            f = cap.read(5)
            got.append(f.index)
            if f.index == 40:
                diff = np.abs(f.image.astype(int) - ref[40].astype(int)).mean()
                assert diff < 2.0, f"frame after the seek is not frame 40 (mean diff {diff:.1f})"
        after = got[got.index(40):]
        assert after == [40, 41, 42]
        assert len(got) - len(after) <= 1  # at most the one frame the thread held while seeking
        cap.seek(5)
        while (f := cap.read(5)).index != 5:
            assert f.index > 42
        assert cap.read(5).index == 6
    finally:
        cap.stop()


def test_capture_seek_in_an_image_list(tmp_path):
    files = []
    for i in range(4):
        p = tmp_path / f"img{i}.png"
        cv2.imwrite(str(p), np.full((20, 30, 3), 40 * i, np.uint8))
        files.append(p)
    cap = CaptureThread(ImageListSource(files), mode="queue", queue_size=1)
    cap.seek(2)
    cap.start()
    try:
        f = cap.read(5)
        assert (f.index, f.name, int(f.image[0, 0, 0])) == (2, "img2", 80)
        assert cap.read(5).index == 3 and cap.read(5) is None
    finally:
        cap.stop()


class OnePerson(PeopleModel):
    """One person per frame at a fixed place; counts resets (a seek must reset the model's state)."""

    info = ModelInfo("fake", "fake", "cpu")

    def __init__(self) -> None:
        self.resets = 0

    def __call__(self, frame_bgr, query) -> FramePeople:
        h, w = frame_bgr.shape[:2]
        return FramePeople(person(-1), Letterbox.for_frame(h, w, 256))

    def reset(self) -> None:
        self.resets += 1


def test_pipeline_seek_restarts_tracking_and_shows_one_frame_while_paused(clip):
    model = OnePerson()
    got: list[tuple[int, int]] = []
    lock = threading.Lock()

    def on_output(out) -> None:
        with lock:
            got.append((out.frame.index, int(out.people.track_ids[0])))

    pipe = Pipeline(VideoSource(str(clip)), model, None, LiveSettings(),
                    PipelineCfg(live=False, pace=True, render=False), on_output=on_output)
    pipe.start()
    try:
        deadline = time.time() + 20
        while len(got) < 5 and time.time() < deadline:
            time.sleep(0.01)
        pipe.seek(30)
        while not any(i == 30 for i, _ in got) and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        with lock:
            seq = list(got)
        k = [i for i, _ in seq].index(30)
        assert [i for i, _ in seq[k:k + 3]] == [30, 31, 32][:len(seq[k:k + 3])]
        before_ids = {t for _, t in seq[:k]}
        assert seq[k][1] not in before_ids and seq[k][1] > max(before_ids)  # tracking restarted, IDs not reused
        assert model.resets == 1
        # paused: a seek shows exactly that frame
        pipe.set_paused(True)
        time.sleep(0.3)
        n = len(got)
        pipe.seek(10)
        while len(got) == n and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(0.5)
        assert [i for i, _ in got[n:]] == [10]
    finally:
        pipe.stop()
    assert pipe.error is None


# ---------------------------------------------------------------- the window's sessions
def test_window_sessions_drop_command_line_outputs_and_check_the_model(tmp_path):
    from app.config import build_cfg, build_parser
    from app.window_services import AppServices, free_stem, model_fields

    cfg = build_cfg(build_parser().parse_args(["--input", "a.mp4", "--headless", "--save-npz", str(tmp_path),
                                               "--record", str(tmp_path / "r.mp4"), "--live-faces", "900"]))
    services = AppServices(cfg)
    services.live_faces = 700
    new = services.window_cfg(cfg, InputChoice(path="b.mp4"))
    assert (new.capture.input, new.capture.camera, new.outputs.record, new.outputs.save_npz, new.outputs.export_mesh,
            new.render.live_faces) == ("b.mp4", None, None, None, None, 700)
    assert new.model == cfg.model and new.runtime == cfg.runtime
    cam = services.window_cfg(cfg, InputChoice(camera=2))
    assert (cam.capture.input, cam.capture.camera) == (None, 2)
    demo = services.window_cfg(cfg, model=ModelChoice("demo", backend="onnxruntime"))
    assert demo.model.name == "demo" and demo.model.checkpoint.is_file() and demo.runtime.backend == "onnxruntime"
    assert demo.model.threshold is None and demo.capture == cfg.capture  # the model's own threshold; same input
    with pytest.raises(ConfigError, match="ONNX Runtime"):
        model_fields(ModelChoice("realfootage", backend="tensorrt"))
    with pytest.raises(ConfigError, match="checkpoint"):
        model_fields(ModelChoice("instancehmr"))
    assert cfg.outputs.out_dir == Path()  # R and S write under the current folder unless --out-dir says otherwise
    other = build_cfg(build_parser().parse_args(["--input", "a.mp4", "--headless", "--out-dir", str(tmp_path)]))
    assert other.outputs.out_dir == tmp_path
    (tmp_path / "clip.npz").write_bytes(b"x")
    (tmp_path / "clip-2.npz").write_bytes(b"x")
    assert free_stem(tmp_path, "clip", (".npz",)) == "clip-3" and free_stem(tmp_path, "new", (".npz",)) == "new"


def test_a_source_that_cannot_seek_plays_on(clip):
    class Unseekable(VideoSource):
        def seek(self, frame_index: int) -> bool:
            return False

    got: list[int] = []
    pipe = Pipeline(Unseekable(str(clip)), OnePerson(), None, LiveSettings(),
                    PipelineCfg(live=False, pace=True, render=False), on_output=lambda out: got.append(out.frame.index))
    pipe.start()
    try:
        deadline = time.time() + 20
        while len(got) < 3 and time.time() < deadline:
            time.sleep(0.01)
        pipe.seek(40)
        n = len(got)
        while len(got) < n + 5 and time.time() < deadline:
            time.sleep(0.01)
        assert len(got) >= n + 5 and got == sorted(got)  # frames keep coming, in order, from where it was
    finally:
        pipe.stop()


def test_qt_runtime_dir_is_one_private_dir_per_user_reused_by_every_run(tmp_path, monkeypatch):
    """Without XDG_RUNTIME_DIR (containers) the window makes one for Qt: the same private one on every run (a new
    temporary directory per run piled up), and a fresh one where that path is not this user's alone."""
    import tempfile

    from app.gui import runtime_dir

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    first = Path(runtime_dir())
    assert first == tmp_path / f"instancehmr-xdg-{os.getuid()}" and first.is_dir()
    assert first.stat().st_mode & 0o777 == 0o700
    assert Path(runtime_dir()) == first and len(list(tmp_path.iterdir())) == 1
    first.chmod(0o755)  # readable by others: Qt refuses it, and so does this
    other = Path(runtime_dir())
    assert other != first and other.parent == tmp_path and other.stat().st_mode & 0o777 == 0o700
    first.rmdir()
    first.symlink_to(other)  # someone else's link in a shared /tmp
    assert Path(runtime_dir()) not in (first, other)
