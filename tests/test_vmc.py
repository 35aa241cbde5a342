"""The VMC live link (app/vmc.py), checked from the receiving end: packets are caught on a local UDP socket and
decoded with python-osc's parser (an independent OSC implementation), then checked against poses whose meaning is
known (an elbow bent forward, an arm raised, a person turned away), worked out here with plain rotation matrices."""

from __future__ import annotations

import logging
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from app.config import build_cfg, build_parser
from app.vmc import (
    BONES,
    DEFAULT_PORT,
    PerformerPicker,
    VmcSink,
    VmcSkeleton,
    VmcTarget,
    osc_bundle,
    osc_message,
    parse_target,
)
from engine.errors import ConfigError
from engine.types import People

# python-osc is a test-only dependency (requirements-dev.txt): the independent parser the packets are read with
OscBundle = pytest.importorskip("pythonosc.osc_bundle").OscBundle
OscMessage = pytest.importorskip("pythonosc.osc_message").OscMessage
osc_types = pytest.importorskip("pythonosc.parsing.osc_types")

ROOT = Path(__file__).resolve().parent.parent
VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
HUMANOID_BONES = {"Hips", "Spine", "Chest", "UpperChest", "Neck", "Head",
                  "LeftUpperLeg", "LeftLowerLeg", "LeftFoot", "LeftToes",
                  "RightUpperLeg", "RightLowerLeg", "RightFoot", "RightToes",
                  "LeftShoulder", "LeftUpperArm", "LeftLowerArm", "LeftHand",
                  "RightShoulder", "RightUpperArm", "RightLowerArm", "RightHand"}
UPRIGHT = np.array([math.pi, 0.0, 0.0])  # camera space (y down): upright, facing the camera
# A rest skeleton in SMPL body axes (y up, left = +x) with the pelvis exactly at the hip midpoint.
REST = np.array([[0, 0.9, 0], [0.1, 0.9, 0], [-0.1, 0.9, 0], [0, 1.0, 0], [0.1, 0.5, 0], [-0.1, 0.5, 0],
                 [0, 1.15, 0], [0.1, 0.08, 0], [-0.1, 0.08, 0], [0, 1.3, 0], [0.1, 0.0, 0.12], [-0.1, 0.0, 0.12],
                 [0, 1.5, 0], [0.05, 1.42, 0], [-0.05, 1.42, 0], [0, 1.6, 0], [0.18, 1.42, 0], [-0.18, 1.42, 0],
                 [0.45, 1.42, 0], [-0.45, 1.42, 0], [0.7, 1.42, 0], [-0.7, 1.42, 0], [0.8, 1.42, 0],
                 [-0.8, 1.42, 0]], np.float64)


# ------------------------------------------------------------------------------------------------ helpers
def quat_matrix(q) -> np.ndarray:
    """(x, y, z, w) -> 3x3 rotation matrix (the textbook formula, independent of app/vmc.py)."""
    x, y, z, w = np.asarray(q, np.float64) / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def people(n: int = 1, orient=UPRIGHT, pose: dict[int, tuple] | None = None, trans=(0.3, -0.2, 4.0),
           ids=None, scales=None) -> People:
    """``n`` people with the given root rotation, ``pose`` {SMPL joint: axis-angle}, translation and track ids."""
    body_pose = np.zeros((n, 69), np.float32)
    for j, aa in (pose or {}).items():
        body_pose[:, 3 * (j - 1):3 * j] = aa
    cam = np.zeros((n, 3), np.float32)
    cam[:, 0] = scales if scales is not None else 0.5
    return People(center_preds=np.zeros((n, 2), np.float32), center_confs=np.ones(n, np.float32), cam=cam,
                  global_orient=np.tile(np.asarray(orient, np.float32), (n, 1)), body_pose=body_pose,
                  betas=np.zeros((n, 10), np.float32), cam_trans=np.tile(np.asarray(trans, np.float32), (n, 1)),
                  track_ids=np.asarray(ids if ids is not None else range(n), np.int64))


@pytest.fixture
def receiver():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2.0)
    yield sock
    sock.close()


def sink_for(receiver, track_id=None, skeleton=None) -> VmcSink:
    return VmcSink(VmcTarget("127.0.0.1", receiver.getsockname()[1]), skeleton or VmcSkeleton.from_joints(REST),
                   track_id)


def receive(sock) -> list:
    """One datagram -> its messages, parsed by python-osc (which also checks that it is a well-formed bundle)."""
    data = sock.recv(65536)
    assert OscBundle.dgram_is_bundle(data)
    assert data[8:16] == (1).to_bytes(8, "big")  # OSC timetag 1: "immediately"
    return list(OscBundle(data))


def type_tags(msg) -> str:
    _, i = osc_types.get_string(msg.dgram, 0)
    tags, _ = osc_types.get_string(msg.dgram, i)
    return tags


def bones(msgs) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {m.params[0]: (np.array(m.params[1:4]), np.array(m.params[4:8]))
            for m in msgs if m.address == "/VMC/Ext/Bone/Pos"}


# ------------------------------------------------------------------------------------------------ OSC encoding
def test_osc_encoder_is_read_back_by_python_osc():
    m = OscMessage(osc_message("/a/b", "hello", 7, -2, 1.5, "x" * 4))
    assert m.address == "/a/b"
    assert m.params == ["hello", 7, -2, 1.5, "xxxx"]
    assert type_tags(m) == ",siifs"
    assert len(m.dgram) % 4 == 0
    b = OscBundle(osc_bundle([osc_message("/one", 1), osc_message("/two", 2.0)]))
    assert [(x.address, x.params) for x in b] == [("/one", [1]), ("/two", [2.0])]
    with pytest.raises(TypeError):
        osc_message("/x", [1, 2])


# ------------------------------------------------------------------------------------------------ the frame
def test_frame_has_the_vmc_messages_types_and_bones(receiver):
    sink = sink_for(receiver)
    assert sink.add(0, "f", people(), None)
    msgs = receive(receiver)
    addrs = [m.address for m in msgs]
    assert addrs[0] == "/VMC/Ext/Root/Pos" and addrs.count("/VMC/Ext/Root/Pos") == 1
    assert addrs.count("/VMC/Ext/Bone/Pos") == 22 and addrs[-2:] == ["/VMC/Ext/OK", "/VMC/Ext/T"]
    for m in msgs:
        if m.address in ("/VMC/Ext/Root/Pos", "/VMC/Ext/Bone/Pos"):
            assert type_tags(m) == ",sfffffff"
            assert abs(np.linalg.norm(m.params[4:8]) - 1.0) < 1e-5, m.params
    assert msgs[0].params[0] == "root"
    assert set(bones(msgs)) == HUMANOID_BONES
    names = [m.params[0] for m in msgs if m.address == "/VMC/Ext/Bone/Pos"]
    assert names.index("Hips") == 0 and names.index("LeftUpperArm") < names.index("LeftLowerArm")
    ok = msgs[-2]
    assert type_tags(ok) == ",iiii" and ok.params == [1, 3, 0, 1]  # loaded, calibrated, normal mode, tracking ok
    assert type_tags(msgs[-1]) == ",f" and 0.0 <= msgs[-1].params[0] < 5.0
    sink.close()


def test_root_plus_hips_is_the_persons_translation(receiver):
    trans = np.array([0.4, -0.3, 3.5])
    sink = sink_for(receiver)
    sink.add(0, "f", people(trans=trans), None)
    msgs = receive(receiver)
    root, hips = np.array(msgs[0].params[1:4]), bones(msgs)["Hips"][0]
    # camera (x right, y down, z away) -> Unity (x mirrored, y up): the camera sits at the origin, the performer
    # stands in front of it at negative z, to its left when they are to the camera's right, hips up when y is down
    np.testing.assert_allclose(root + hips, [-0.4, 0.3, -3.5], atol=1e-5)
    np.testing.assert_allclose(hips, [0.0, 0.9, 0.0], atol=1e-6)  # rest hip height above the lowest joint
    assert msgs[0].params[4:8] == [0.0, 0.0, 0.0, 1.0]
    # other bones carry the rest offsets, mirrored: the left upper arm hangs off the shoulder towards -x in Unity
    np.testing.assert_allclose(bones(msgs)["LeftLowerArm"][0], [-(0.45 - 0.18), 0.0, 0.0], atol=1e-6)
    sink.close()


def test_pelvis_offset_is_rotated_with_the_body(receiver):
    rest = REST.copy()
    rest[0] += (0.0, 0.05, -0.03)  # pelvis joint above and behind the hip midpoint, as in real bodies
    sink = sink_for(receiver, skeleton=VmcSkeleton.from_joints(rest))
    trans = np.array([0.0, 0.0, 3.0])
    sink.add(0, "f", people(trans=trans), None)
    msgs = receive(receiver)
    hips_world = np.array(msgs[0].params[1:4]) + bones(msgs)["Hips"][0]
    # facing the camera the body's up is the camera's -y and its back the camera's +z: pelvis at (0, -0.05, 3.03)
    np.testing.assert_allclose(hips_world, -(trans + np.array([0.0, -0.05, 0.03])), atol=1e-5)
    sink.close()


def test_upright_facing_camera_is_the_rest_pose(receiver):
    sink = sink_for(receiver)
    sink.add(0, "f", people(), None)
    for name, (_, q) in bones(receiver_msgs := receive(receiver)).items():
        np.testing.assert_allclose(quat_matrix(q), np.eye(3), atol=1e-6, err_msg=name)
    assert receiver_msgs
    sink.close()


def test_known_poses_arrive_as_the_expected_rotations(receiver):
    """In Unity's humanoid rest the avatar faces +z, its left arm points along -x, its up is +y."""
    sink = sink_for(receiver)
    elbow_forward = (0.0, -math.pi / 2, 0.0)  # SMPL left elbow: -90 deg about the body's up: forearm forward
    arm_up = (0.0, 0.0, math.pi / 2)  # SMPL left shoulder: +90 deg about the body's forward: arm raised
    sink.add(0, "f", people(pose={18: elbow_forward, 16: arm_up}), None)
    got = bones(receive(receiver))
    q = got["LeftLowerArm"][1]
    np.testing.assert_allclose(quat_matrix(q) @ [-1, 0, 0], [0, 0, 1], atol=1e-6)  # forearm now points forward
    np.testing.assert_allclose(q, [0, math.sqrt(0.5), 0, math.sqrt(0.5)], atol=1e-6)  # 90 deg about Unity's +y
    np.testing.assert_allclose(quat_matrix(got["LeftUpperArm"][1]) @ [-1, 0, 0], [0, 1, 0], atol=1e-6)  # raised
    np.testing.assert_allclose(quat_matrix(got["RightLowerArm"][1]), np.eye(3), atol=1e-6)  # untouched side

    # turned round (facing away from the camera): 180 deg about the camera's z axis in y-down camera space
    sink.add(1, "f", people(orient=(0.0, 0.0, math.pi)), None)
    hips = quat_matrix(bones(receive(receiver))["Hips"][1])
    np.testing.assert_allclose(hips @ [0, 0, 1], [0, 0, -1], atol=1e-6)  # faces -z: away from the camera
    np.testing.assert_allclose(hips @ [0, 1, 0], [0, 1, 0], atol=1e-6)  # still upright
    sink.close()


def test_body_model_skeleton_is_humanoid():
    torch = pytest.importorskip("torch")
    from engine.body import create_body_model

    torch.set_num_threads(1)
    sk = VmcSkeleton.from_body(create_body_model("anny"))
    assert 0.75 < sk.hip_height < 1.15  # an adult's hip height, metres
    off = dict(zip([n for _, n in BONES], sk.offsets, strict=True))
    assert off["LeftUpperArm"][0] < 0 < off["RightUpperArm"][0]  # left is -x in Unity
    assert off["LeftLowerLeg"][1] < 0 < off["Spine"][1]  # knees below the hips, spine above
    assert np.linalg.norm(sk.pelvis_from_midhip) < 0.15


# ------------------------------------------------------------------------------------------------ performer
def test_performer_is_the_largest_and_stays_while_tracked():
    pick = PerformerPicker(grace=2)
    assert pick.pick(people(3, ids=[4, 7, 9], scales=[0.3, 0.6, 0.4])) == 1  # track 7, largest on screen
    assert pick.pick(people(3, ids=[9, 4, 7], scales=[0.9, 0.3, 0.5])) == 2  # 9 grew, 7 still performs
    assert pick.pick(people(2, ids=[9, 4], scales=[0.9, 0.3])) is None  # 7 hidden: nothing sent, no switch
    assert pick.pick(people(3, ids=[9, 4, 7], scales=[0.9, 0.3, 0.5])) == 2  # 7 back within the grace
    for _ in range(2):
        assert pick.pick(people(1, ids=[9], scales=[0.9])) is None
    assert pick.pick(people(1, ids=[9], scales=[0.9])) == 0  # 7 gone for longer than the grace: 9 takes over
    assert pick.current == 9
    assert pick.pick(People.empty()) is None


def test_fixed_track_id_is_followed_only():
    pick = PerformerPicker(track_id=4, grace=1)
    assert pick.pick(people(2, ids=[3, 4], scales=[0.9, 0.1])) == 1
    for _ in range(5):
        assert pick.pick(people(1, ids=[3], scales=[0.9])) is None  # never falls back to someone else
    assert pick.pick(people(2, ids=[4, 3])) == 0


def test_nothing_is_sent_without_a_performer(receiver):
    sink = sink_for(receiver, track_id=5)
    receiver.settimeout(0.3)
    assert not sink.add(0, "f", People.empty(), None)
    assert not sink.add(1, "f", people(2, ids=[1, 2]), None)
    with pytest.raises(TimeoutError):
        receiver.recv(65536)
    assert sink.stats.sent == 0 and sink.stats.idle_frames == 2
    assert sink.add(2, "f", people(2, ids=[1, 5]), None)
    assert receive(receiver)
    sink.close()


# ------------------------------------------------------------------------------------------------ sending
def test_send_errors_warn_once_and_never_stop_the_run(caplog):
    # a broadcast address without SO_BROADCAST makes every sendto fail (EACCES) on Linux and macOS
    sink = VmcSink(VmcTarget("255.255.255.255", DEFAULT_PORT), VmcSkeleton.from_joints(REST))
    with caplog.at_level(logging.WARNING, logger="app.vmc"):
        for i in range(3):
            assert not sink.add(i, "f", people(), None)
    assert sink.stats.errors == 3 and sink.stats.sent == 0
    assert len([r for r in caplog.records if "VMC link" in r.getMessage()]) == 1
    assert "3 send errors" in sink.close()
    assert not sink.add(3, "f", people(), None)  # closed: ignored, no exception


def test_no_listener_is_not_an_error():
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nobody listens there now
    sink = VmcSink(VmcTarget("127.0.0.1", port), VmcSkeleton.from_joints(REST))
    for i in range(5):
        sink.add(i, "f", people(), None)
    assert sink.stats.sent + sink.stats.errors == 5
    sink.close()


def test_send_cost_is_far_below_a_frame(receiver):
    """The link's own cost per frame (pick + convert + encode + sendto) is what it adds to the latency."""
    sink = sink_for(receiver)
    receiver.settimeout(0.5)
    crowd = people(6, ids=range(6), scales=np.linspace(0.2, 0.7, 6),
                   pose={j: (0.1 * j, -0.05 * j, 0.02 * j) for j in range(1, 22)})
    for i in range(300):
        sink.add(i, "f", crowd, None)
        receiver.recv(65536)
    st = sink.stats
    build, total = st.percentile("build_us", 50), st.percentile("total_us", 50)
    print(f"\nVMC per frame: median {build:.0f} us to the send (p99 {st.percentile('build_us', 99):.0f}), "
          f"{total:.0f} us in all (p99 {st.percentile('total_us', 99):.0f}), {st.sent} frames")
    assert st.sent == 300 and len(st.build_us) == 300 and all(b <= t for b, t in zip(st.build_us, st.total_us))
    assert build < 2000  # a frame at 30 fps is 33,000 us; measured 60-150 us on a loaded 2-core machine
    sink.close()


# ------------------------------------------------------------------------------------------------ config
@pytest.mark.parametrize("text,host,port", [
    ("", "127.0.0.1", 39539), ("10.0.0.2:40000", "10.0.0.2", 40000), (":39540", "127.0.0.1", 39540),
    ("studio-pc", "studio-pc", 39539), ("[::1]:41000", "::1", 41000), ("::1", "::1", 39539),
])
def test_vmc_target_forms(text, host, port):
    assert parse_target(text) == VmcTarget(host, port)


@pytest.mark.parametrize("text,words", [
    ("host:0", "1..65535"), ("host:70000", "1..65535"), ("host:abc", "1..65535"), ("host:", "missing"),
    ("[::1", "IPv6"), ("my host:3", "spaces"),
])
def test_bad_vmc_values_are_one_line_config_errors(text, words):
    with pytest.raises(ConfigError) as e:
        parse_target(text)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_vmc_flags_reach_the_config():
    parse = build_parser().parse_args
    base = ["--headless", "--input", "x.mp4"]
    cfg = build_cfg(parse([*base, "--vmc"]))
    assert cfg.outputs.vmc == VmcTarget("127.0.0.1", 39539) and cfg.outputs.vmc_track is None
    cfg = build_cfg(parse([*base, "--vmc", ":40001", "--vmc-track", "3"]))
    assert cfg.outputs.vmc == VmcTarget("127.0.0.1", 40001) and cfg.outputs.vmc_track == 3
    assert build_cfg(parse(base)).outputs.vmc is None
    with pytest.raises(ConfigError, match="needs --vmc"):
        build_cfg(parse([*base, "--vmc-track", "2"]))
    with pytest.raises(ConfigError, match=">= 0"):
        build_cfg(parse([*base, "--vmc", "--vmc-track", "-1"]))


# ------------------------------------------------------------------------------------------------ end to end
@pytest.mark.slow  # loads the default model (~10-20 s on 2 cores) to prove the wiring through run_app.py
@pytest.mark.skipif(not VTEST.exists(), reason="apt-get install -y opencv-doc")
def test_headless_run_streams_at_the_clip_rate(receiver, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env.update(INSTANCEHMR_CACHE_DIR=str(tmp_path), PYTHONPATH=str(ROOT))
    port = receiver.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "run_app.py", "--input", str(VTEST), "--headless", "--max-frames", "15",
                             "--vmc", f"127.0.0.1:{port}"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    receiver.settimeout(120)
    arrivals, times = [], []
    try:
        while len(arrivals) < 15:
            try:
                msgs = receive(receiver)
            except TimeoutError:
                break
            arrivals.append(time.monotonic())
            times.append(msgs[-1].params[0])
            assert set(bones(msgs)) == HUMANOID_BONES
            receiver.settimeout(5)
    finally:
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "vmc:" in out and "frames sent to 127.0.0.1:" in out, out
    assert len(arrivals) >= 5, (out, err)  # vtest.avi has people in every frame
    assert times == sorted(times)
    # paced at the clip's 10 fps even headless: never faster than real time (5% slack for timer jitter)
    assert arrivals[-1] - arrivals[0] >= 0.095 * (len(arrivals) - 1)
