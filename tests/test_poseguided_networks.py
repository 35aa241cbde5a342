"""3DCrowdNet and JOTR networks: official key layout, strict loading of release-format checkpoints, refusal of other
systems, the forward contract, the rotation maths, what the inputs do, and ONNX export parity."""

from __future__ import annotations

import io
import math
from collections import Counter

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation
from torch.nn import functional as F

from engine import detect_system, load_network
from engine.checkpoint import load_checkpoint, normalise_state_dict
from engine.errors import ConfigError, ModelFileError
from engine.models import JOTR, CrowdNet, build_model
from engine.models.crowdnet import graph_adjacency
from engine.models.jotr import Attention, DecoderLayer, EncoderLayer, position_embedding_sine
from engine.models.poseguided_common import (
    axis_angle_to_matrix,
    camera_translation,
    gaussian_heatmaps,
    matrix_to_axis_angle,
    rot6d_to_axis_angle,
    rot6d_to_matrix,
    sample_volume,
    soft_argmax_3d,
)
from tests.synthetic_poseguided import crowdnet_checkpoint, crowdnet_spec, jotr_checkpoint, jotr_spec, save

DROPPED = ("human_model_layer.", "vposer.vposer.bodyprior_enc_")


@pytest.fixture(scope="module")
def crowd_ckpt() -> dict:
    return crowdnet_checkpoint(seed=1)


@pytest.fixture(scope="module")
def jotr_ckpt() -> dict:
    return jotr_checkpoint(seed=2)


@pytest.fixture(scope="module")
def crowd_path(tmp_path_factory, crowd_ckpt):
    return save(crowd_ckpt, tmp_path_factory.mktemp("crowd") / "3dcrowdnet_snapshot_6.pth.tar")


@pytest.fixture(scope="module")
def jotr_path(tmp_path_factory, jotr_ckpt):
    return save(jotr_ckpt, tmp_path_factory.mktemp("jotr") / "3dpw_best_ckpt.pth.tar")


@pytest.fixture(scope="module")
def crowd_net(crowd_path, one_torch_thread):
    return load_network(crowd_path)


@pytest.fixture(scope="module")
def jotr_net(jotr_path, one_torch_thread):
    return load_network(jotr_path)


def _inputs(b: int = 1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    img = torch.rand(b, 3, 256, 256, generator=g)
    joints = torch.rand(b, 30, 3, generator=g) * torch.tensor([48.0, 56.0, 1.0]) + torch.tensor([8.0, 4.0, 0.0])
    mask = torch.ones(b, 30, 1)
    mask[:, 22:24] = 0  # hands, as a 2D detector with COCO joints leaves them
    return img, joints, mask


def _run(net, *args):
    with torch.no_grad():
        return net(*args)


# ---------------------------------------------------------------- official layout


def _groups(keys, depth_one=("cascade_",)) -> Counter:
    out: Counter = Counter()
    for k in keys:
        top = k.split(".", 1)[0]
        out["cascade" if top.startswith(depth_one) else top] += 1
    return out


def test_release_containers_key_counts_and_groups(crowd_ckpt, jotr_ckpt):
    assert set(crowd_ckpt) == {"epoch", "network", "optimizer"}
    net = crowd_ckpt["network"]
    assert len(net) == 1311 and all(k.startswith("module.") for k in net)
    keys = [k.removeprefix("module.") for k in net]
    assert _groups(keys) == {"backbone": 318, "pose2feat": 7, "position_net": 2, "rotation_net": 953, "vposer": 24,
                             "human_model_layer": 7}
    assert sum(k.endswith("num_batches_tracked") for k in keys) == 191

    assert len(jotr_ckpt) == 538 and all(k.startswith("module.") for k in jotr_ckpt)
    keys = [k.removeprefix("module.") for k in jotr_ckpt]
    groups = _groups(keys)
    assert {k: groups[k] for k in ("backbone", "transformer", "refine_3d", "cascade", "pose2feat", "vposer",
                                   "human_model_layer")} == {
        "backbone": 318, "transformer": 114, "refine_3d": 26, "cascade": 32, "pose2feat": 7, "vposer": 24,
        "human_model_layer": 7}
    assert jotr_ckpt["module.exponent"].shape == () and jotr_ckpt["module.pos_embed_1d.pos_table"].shape == (512, 256)


@pytest.mark.parametrize("cls,spec", [(CrowdNet, crowdnet_spec), (JOTR, jotr_spec)])
def test_network_keys_and_shapes_equal_the_official_ones_minus_unused(cls, spec):
    official = {k: s for k, s, _ in spec()}
    own = {k: tuple(v.shape) for k, v in cls().state_dict().items()}
    dropped = [k for k in official if k.startswith(DROPPED)]
    assert len(dropped) == 7 + 18  # SMPL layer buffers + VPoser encoder
    assert own == {k: s for k, s in official.items() if k not in dropped}


def test_load_network_round_trip_is_strict_and_exact(crowd_net, jotr_net, crowd_ckpt, jotr_ckpt):
    for net, cls, sd in ((crowd_net, CrowdNet, crowd_ckpt["network"]), (jotr_net, JOTR, jotr_ckpt)):
        assert isinstance(net, cls) and not net.training
        own = net.state_dict()
        for k, v in sd.items():
            k = k.removeprefix("module.")
            if not k.startswith(DROPPED):
                assert torch.equal(own[k], v), k


def test_detect_system(crowd_ckpt, jotr_ckpt):
    assert detect_system(normalise_state_dict(crowd_ckpt)[0]) == "crowdnet"
    assert detect_system(normalise_state_dict(jotr_ckpt)[0]) == "jotr"
    assert detect_system(build_model("mobilenetv3").state_dict()) == "instancehmr"


@pytest.fixture(scope="module")
def instancehmr_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("ihmr") / "instancehmr.pth"
    torch.save({"module." + k: v for k, v in build_model("mobilenetv3").state_dict().items()}, path)
    return path


def test_other_systems_are_refused_with_a_reason(crowd_path, jotr_path, instancehmr_path):
    cases = [(crowd_path, "jotr", "holds 3DCrowdNet weights, not JOTR"),
             (jotr_path, "crowdnet", "holds JOTR weights, not 3DCrowdNet"),
             (instancehmr_path, "crowdnet", "holds InstanceHMR weights, not 3DCrowdNet"),
             (instancehmr_path, "jotr", "holds InstanceHMR weights, not JOTR"),
             (crowd_path, "instancehmr", "holds 3DCrowdNet weights, not InstanceHMR")]
    for path, system, match in cases:
        with pytest.raises(ModelFileError, match=match) as e:
            load_network(path, system=system)
        assert "\n" not in str(e.value)
    with pytest.raises(ModelFileError, match="holds JOTR weights, not InstanceHMR"):
        load_checkpoint(jotr_path)  # the training/eval loader stays InstanceHMR-only
    assert load_network(instancehmr_path, system="instancehmr").cfg.backbone == "mobilenetv3"
    with pytest.raises(ConfigError, match="unknown network system 'vibe'"):
        load_network(instancehmr_path, system="vibe")


def test_misshaped_missing_and_unexpected_keys_are_named(tmp_path, crowd_ckpt, jotr_ckpt):
    net = dict(crowd_ckpt["network"])
    net["module.rotation_net.cam_out.0.weight"] = torch.zeros(4, 15 * 128)
    del net["module.position_net.conv.0.bias"]
    path = save({**crowd_ckpt, "network": net}, tmp_path / "broken_crowd.pth.tar")
    with pytest.raises(ModelFileError) as e:
        load_network(path)
    msg = str(e.value)
    assert "does not match the 3DCrowdNet network" in msg and "\n" not in msg
    assert "rotation_net.cam_out.0.weight (4, 1920) != (3, 1920)" in msg and "position_net.conv.0.bias" in msg

    three_layers = {k: v for k, v in jotr_ckpt.items() if ".decoder.layers.3." not in k}  # a 3-layer decoder
    three_layers["module.refine_3d.layers.2.linear1.weight"] = torch.zeros(1024, 256)
    path = save(three_layers, tmp_path / "broken_jotr.pth.tar")
    with pytest.raises(ModelFileError) as e:
        load_network(path)
    msg = str(e.value)
    assert "does not match the JOTR network" in msg and "18 missing" in msg and "transformer.decoder.layers.3." in msg
    assert "1 unexpected: refine_3d.layers.2.linear1.weight" in msg


# ---------------------------------------------------------------- forward contract


@pytest.fixture(params=["crowd_net", "jotr_net"])
def net(request):
    return request.getfixturevalue(request.param)


def test_output_contract_and_determinism(net):
    args = _inputs(2)
    out = _run(net, *args)
    names = {"smpl_pose", "smpl_shape", "cam_param", "joint_img"} | ({"joint_score"} if isinstance(net, CrowdNet)
                                                                      else set())
    assert set(out) == names
    shapes = {"smpl_pose": (2, 72), "smpl_shape": (2, 10), "cam_param": (2, 3), "joint_img": (2, 15, 3),
              "joint_score": (2, 15, 1)}
    for k, v in out.items():
        assert v.shape == shapes[k] and v.dtype == torch.float32 and torch.isfinite(v).all(), k
    assert torch.equal(out["smpl_pose"][:, 66:], torch.zeros(2, 6))  # hands
    assert (out["smpl_pose"][:, 3:66].abs() > 0).all()
    assert ((out["joint_img"] >= 0) & (out["joint_img"] <= 64)).all()
    if isinstance(net, CrowdNet):
        assert ((out["joint_score"] > 0) & (out["joint_score"] <= 1)).all()
        assert (out["joint_img"] <= 56).all()  # soft-argmax over 0..7, times 8
    again = _run(net, *args)
    for k in out:
        assert torch.equal(out[k], again[k]), k


def test_batch_of_three_equals_single_forwards(net):
    """Batch 3 (where the official ``torch.cross`` without ``dim`` goes wrong) equals three single forwards."""
    args = _inputs(3, seed=5)
    out = _run(net, *args)
    for i in range(3):
        one = _run(net, *(a[i:i + 1] for a in args))
        for k in out:
            assert torch.allclose(out[k][i:i + 1], one[k], atol=2e-5, rtol=1e-4), k


def test_joints_and_mask_drive_the_output(net):
    """Six variants in one batch (batch independence is tested above): the pose and the mask matter, a masked joint
    contributes nothing wherever it lies (the official code multiplies its heatmap by the mask)."""
    img, joints, mask = _inputs(1, seed=3)
    imgs, poses, masks = img.repeat(6, 1, 1, 1), joints.repeat(6, 1, 1), mask.repeat(6, 1, 1)
    poses[1, 20, :2] += 3.0  # 1: L_Wrist (valid) moved by 3 heatmap pixels
    masks[2, 20] = 0  # 2: L_Wrist masked
    masks[3, 20] = 0  # 3: L_Wrist masked and parked at (0, 0), where preprocessing puts invalid joints
    poses[3, 20, :2] = 0.0
    poses[4, 22:24, :2] = 33.0  # 4: the (masked) hands moved
    imgs[5] = torch.flip(img[0], dims=[2])  # 5: another image, same pose
    out = _run(net, imgs, poses, masks)

    def diff(a: int, b: int) -> float:
        return max((out[k][a] - out[k][b]).abs().max().item() for k in out)

    def same(a: int, b: int) -> bool:  # up to rounding between batch positions (~1e-5 on joint_img)
        return all(torch.allclose(out[k][a], out[k][b], rtol=1e-5, atol=1e-5) for k in out)

    assert diff(0, 1) > 1e-3 and diff(0, 2) > 1e-3 and diff(0, 5) > 1e-3
    assert same(2, 3) and same(0, 4)


def test_gaussian_heatmaps_and_mask():
    joints = torch.tensor([[[10.0, 20.0, 0.9], [30.5, 7.25, 0.1]]])
    mask = torch.tensor([[[1.0], [0.0]]])
    heat = gaussian_heatmaps(joints, mask)
    assert heat.shape == (1, 2, 64, 64)
    ys, xs = np.mgrid[0:64, 0:64]
    want = np.exp(-((xs - 10.0) ** 2 + (ys - 20.0) ** 2) / (2 * 2.5 ** 2))
    assert np.allclose(heat[0, 0].numpy(), want, atol=1e-6)
    assert heat[0, 0, 20, 10] == 1.0  # peak 1 at the joint (row y, column x)
    assert math.isclose(heat[0, 0, 20, 12].item(), math.exp(-(2**2) / (2 * 2.5**2)), rel_tol=1e-5)
    assert torch.equal(heat[0, 1], torch.zeros(64, 64))


# ---------------------------------------------------------------- rotation maths


def test_rot6d_batch_of_three_equals_per_person():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 6, generator=g)
    batch = rot6d_to_axis_angle(x)
    single = torch.cat([rot6d_to_axis_angle(x[i:i + 1]) for i in range(3)])
    assert torch.allclose(batch, single, atol=1e-7)
    r = rot6d_to_matrix(x)
    assert torch.allclose(r.transpose(1, 2) @ r, torch.eye(3).expand(3, 3, 3), atol=1e-6)
    assert torch.allclose(torch.linalg.det(r), torch.ones(3), atol=1e-6)
    # the first two columns are the Gram-Schmidt of the 3x2 reading of the 6 numbers
    a = x.reshape(3, 3, 2)
    assert torch.allclose(r[:, :, 0], F.normalize(a[:, :, 0], dim=1), atol=1e-6)
    # crossing over the batch axis (the official bug at batch 3) would not give these rotations
    b1, b2 = r[:, :, 0], r[:, :, 1]
    assert not torch.allclose(torch.linalg.cross(b1, b2, dim=0), r[:, :, 2], atol=1e-3)


def test_axis_angle_round_trip_against_scipy():
    rng = np.random.default_rng(0)
    axes = rng.normal(size=(500, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angles = rng.uniform(1e-3, math.pi - 1e-2, size=(500, 1))
    aa = torch.from_numpy(axes * angles).float()
    mats = axis_angle_to_matrix(aa)
    assert np.allclose(mats.numpy(), Rotation.from_rotvec(aa.numpy()).as_matrix(), atol=1e-5)
    back = matrix_to_axis_angle(mats)
    assert torch.allclose(back, aa, atol=2e-4)
    # every case of the quaternion formula: diagonal patterns of near-180-degree turns and the identity
    special = np.stack([np.eye(3)] + [Rotation.from_rotvec(math.pi * 0.999 * np.array(v)).as_matrix()
                                      for v in ((1, 0, 0), (0, 1, 0), (0, 0, 1))]
                       + list(Rotation.random(200, random_state=1).as_matrix()))
    r = torch.from_numpy(special).float()
    cases = {(bool(m[2, 2] < 1e-6), bool(m[0, 0] > m[1, 1]), bool(m[0, 0] < -m[1, 1])) for m in special}
    assert {c[:2] for c in cases if c[0]} == {(True, True), (True, False)}
    assert {c[2] for c in cases if not c[0]} == {True, False}
    got = matrix_to_axis_angle(r)
    assert (got.norm(dim=1) <= math.pi + 1e-5).all()
    assert torch.allclose(axis_angle_to_matrix(got), r, atol=5e-4)
    assert torch.equal(matrix_to_axis_angle(torch.eye(3)[None]), torch.zeros(1, 3))


def test_volume_sampling_equals_grid_sample_and_soft_argmax():
    g = torch.Generator().manual_seed(0)
    vol = torch.randn(2, 5, 8, 8, 8, generator=g)
    pts = torch.rand(2, 40, 3, generator=g) * 9 - 1  # includes points outside the volume
    grid = (pts / 7 * 2 - 1)[:, None, None]  # B,1,1,N,3
    want = F.grid_sample(vol, grid, mode="bilinear", padding_mode="zeros", align_corners=True)[:, :, 0, 0]
    assert torch.allclose(sample_volume(vol, pts), want.transpose(1, 2), atol=1e-5)

    logits = torch.full((1, 2, 8, 8, 8), -50.0)
    logits[0, 0, 6, 2, 5] = 50.0  # d, h, w
    logits[0, 1, 1, 7, 0] = 50.0
    coords, prob = soft_argmax_3d(logits)
    assert torch.allclose(coords[0], torch.tensor([[5.0, 2.0, 6.0], [0.0, 7.0, 1.0]]), atol=1e-4)
    assert torch.allclose(prob.sum(dim=(2, 3, 4)), torch.ones(1, 2))


def test_graph_adjacency_by_hand():
    adj = graph_adjacency()
    assert torch.allclose(adj, adj.T)
    # pelvis: self + L_Hip, R_Hip, Neck -> degree 4; L_Hip: self + pelvis, L_Knee, R_Hip (flip pair) -> 4
    assert math.isclose(adj[0, 0].item(), 1 / 4, rel_tol=1e-6)
    assert math.isclose(adj[0, 1].item(), 1 / 4, rel_tol=1e-6)
    # head top (8): self + neck -> 2; neck (7): self + pelvis, head top, both shoulders -> 5
    assert math.isclose(adj[7, 8].item(), 1 / math.sqrt(10), rel_tol=1e-6)
    assert adj[0, 8] == 0


def test_camera_translation():
    cam = torch.tensor([[0.1, -0.2, 0.0]])
    k = 5000 * 2.5 / 256
    assert torch.allclose(camera_translation(cam), torch.tensor([[0.1, -0.2, k / 2]]))
    assert torch.allclose(camera_translation(cam, torch.tensor([[512.0, 512.0]])), torch.tensor([[0.1, -0.2, k / 4]]))


# ---------------------------------------------------------------- JOTR transformer parts vs torch's own layers


def test_attention_and_layers_match_torch_modules():
    torch.manual_seed(0)
    q, kv = torch.randn(18, 2, 256), torch.randn(79, 2, 256)
    mine = Attention().eval()
    ref = torch.nn.MultiheadAttention(256, 8).eval()
    ref.load_state_dict(mine.state_dict())
    with torch.no_grad():
        assert torch.allclose(mine(q, kv, kv), ref(q, kv, kv, need_weights=False)[0], atol=1e-5)
        enc = EncoderLayer(1024).eval()
        ref_enc = torch.nn.TransformerEncoderLayer(256, 8, 1024, dropout=0.1, norm_first=False).eval()
        ref_enc.load_state_dict(enc.state_dict())
        assert torch.allclose(enc(kv, torch.zeros_like(kv)), ref_enc(kv), atol=1e-4)
        dec = DecoderLayer(2048).eval()
        ref_dec = torch.nn.TransformerDecoderLayer(256, 8, 2048, dropout=0.1, norm_first=False).eval()
        ref_dec.load_state_dict(dec.state_dict())
        assert torch.allclose(dec(q, kv, torch.zeros_like(kv), torch.zeros_like(q)), ref_dec(q, kv), atol=1e-4)
        # positions go to queries/keys only, never to the values
        pos = torch.randn_like(kv)
        assert not torch.allclose(enc(kv, pos), enc(kv, torch.zeros_like(kv)), atol=1e-3)


def test_jotr_position_encodings(jotr_net):
    pe = position_embedding_sine(8, 8).numpy()  # [64, 256], tokens row-major
    i, j = np.divmod(np.arange(64), 8)
    y = (i + 1) / (8 + 1e-6) * 2 * math.pi
    x = (j + 1) / (8 + 1e-6) * 2 * math.pi
    for c in (0, 1, 2, 3, 126, 127):
        freq = 10000 ** (2 * (c // 2) / 128)
        fn = np.sin if c % 2 == 0 else np.cos
        assert np.allclose(pe[:, c], fn(y / freq), atol=1e-5)
        assert np.allclose(pe[:, 128 + c], fn(x / freq), atol=1e-5)
    table = jotr_net.pos_embed_1d.pos_table.numpy()
    n, c = 300, 17
    assert math.isclose(table[n, c], math.cos(n / 10000 ** (2 * (c // 2) / 256)), abs_tol=1e-5)


# ---------------------------------------------------------------- ONNX


@pytest.mark.slow  # ~25-40 s each on one core: export of a ResNet-50 plus heads and an ORT session
@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export:DeprecationWarning")
@pytest.mark.parametrize("which", ["crowd", "jotr"])
def test_onnx_export_and_runtime_parity(which, crowd_net, jotr_net):
    ort = pytest.importorskip("onnxruntime")
    net = crowd_net if which == "crowd" else jotr_net
    args = _inputs(2, seed=9)
    args[2][1, 5] = 0
    ref = _run(net, *args)
    names = list(ref)
    buf = io.BytesIO()
    inputs = ["img", "joints", "joints_mask"]
    torch.onnx.export(net, args, buf, dynamo=False, opset_version=17, input_names=inputs, output_names=names,
                      dynamic_axes={k: {0: "batch"} for k in inputs + names})
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])
    outs = sess.run(names, {k: a.numpy() for k, a in zip(inputs, args)})
    for name, got in zip(names, outs):
        assert np.allclose(got, ref[name].numpy(), atol=2e-4, rtol=1e-4), name
    one = sess.run(names, {k: a[:1].numpy() for k, a in zip(inputs, args)})  # dynamic batch
    assert np.allclose(one[0], ref[names[0]][:1].numpy(), atol=2e-4)
