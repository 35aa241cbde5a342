"""The InstanceHMR network: official key names/shapes/counts, official-checkpoint loading, forward contract."""

from __future__ import annotations

import math
import os
import pickle

import pytest
import torch
from torch.nn import functional as F

from engine import load_network
from engine.checkpoint import load_checkpoint, save_checkpoint
from engine.errors import ModelFileError
from engine.models import build_model
from engine.models.instancehmr import coord_maps, position_encoding_sine
from tests.conftest import official_container


# Exact facts from the official classes.
@pytest.mark.parametrize("name,keys,nbt,params,backbone_params", [
    ("resnet50", 568, 90, 35_643_627, 32_552_896),
    ("hrnet32", 1984, 326, 31_478_827, 28_535_552),
])
def test_official_key_counts_and_parameters(name, keys, nbt, params, backbone_params):
    model = build_model(name)
    sd = model.state_dict()
    assert len(sd) == keys
    assert sum(k.endswith("num_batches_tracked") for k in sd) == nbt
    assert sum(p.numel() for p in model.parameters()) == params
    assert sum(p.numel() for n, p in model.named_parameters() if n.startswith("backbone.")) == backbone_params


def test_official_key_shapes():
    r50 = build_model("resnet50").state_dict()
    hr = build_model("hrnet32").state_dict()
    expect = {
        "final_layers.1.0.0.weight": (64, 66, 3, 3), "final_layers.2.0.1.running_var": (64,),
        "final_layers.3.1.1.0.conv2.weight": (64, 64, 3, 3), "final_layers.1.2.weight": (1, 64, 1, 1),
        "final_layers.2.2.weight": (3, 64, 1, 1), "final_layers.3.2.weight": (24, 64, 1, 1),
        "centerid_trans1.conv.weight": (128, 66, 3, 3), "jointid_trans2.conv.weight": (128, 153, 3, 3),
        "centerid_resblock2.bn2.weight": (128,), "jointid_outconv.weight": (64, 128, 1, 1),
        "ct_projector.4.weight": (64, 64), "jt_projector.2.weight": (64, 64),
        "params_trans1.conv.weight": (64, 66, 3, 3), "params_trans_c.conv.weight": (64, 129, 3, 3),
        "params_trans_j.conv.weight": (64, 152, 3, 3), "params_resblock2.conv1.weight": (128, 128, 3, 3),
        "params_outconv.weight": (79, 128, 1, 1), "params_outconv.bias": (79,),
        "backbone.conv1.weight": (64, 3, 7, 7), "backbone.layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "backbone.layer2.0.downsample.0.weight": (512, 256, 1, 1), "backbone.layer4.2.conv3.weight": (2048, 512, 1, 1),
        "backbone.deconv_layers.0.weight": (2048, 256, 4, 4), "backbone.deconv_layers.3.weight": (256, 128, 4, 4),
        "backbone.deconv_layers.6.weight": (128, 64, 4, 4), "backbone.deconv_layers.7.running_mean": (64,),
    }
    for k, shape in expect.items():
        assert tuple(r50[k].shape) == shape, k
    hexpect = {
        "final_layers.1.0.0.weight": (64, 34, 3, 3), "backbone.conv1.weight": (64, 3, 3, 3),
        "backbone.conv2.weight": (64, 64, 3, 3), "backbone.layer1.3.conv3.weight": (256, 64, 1, 1),
        "backbone.transition1.0.0.weight": (32, 256, 3, 3), "backbone.transition1.1.0.0.weight": (64, 256, 3, 3),
        "backbone.transition2.2.0.0.weight": (128, 64, 3, 3), "backbone.transition3.3.0.0.weight": (256, 128, 3, 3),
        "backbone.stage2.0.branches.0.0.conv1.weight": (32, 32, 3, 3),
        "backbone.stage2.0.fuse_layers.1.0.0.0.weight": (64, 32, 3, 3),
        "backbone.stage4.2.fuse_layers.0.1.0.weight": (32, 64, 1, 1),
    }
    for k, shape in hexpect.items():
        assert tuple(hr[k].shape) == shape, k
    assert not any(k.startswith("backbone.stage4.2.fuse_layers.1") for k in hr)


def test_positional_encoding_check_values():
    pe = position_encoding_sine(64, 64, 64)[0]
    want = torch.tensor([0.098017, 0.995185, 0.055180, 0.998476])
    assert torch.allclose(pe[0:4, 0, 0], want, atol=1e-6)
    assert torch.allclose(pe[32:36, 0, 0], want, atol=1e-6)
    assert torch.allclose(pe[32:34, 63, 5], torch.tensor([0.555570, 0.831470]), atol=1e-6)
    # independent formula: y part at row r uses (r+1)/(64+1e-6)*2pi / 10000^(2*floor(d/2)/32)
    r, c, d = 17, 40, 6
    v = (r + 1) / (64 + 1e-6) * 2 * math.pi / 10000 ** (2 * (d // 2) / 32)
    assert pe[d, r, c].item() == pytest.approx(math.sin(v), abs=1e-6)
    v = (c + 1) / (64 + 1e-6) * 2 * math.pi / 10000 ** (2 * (d // 2) / 32)
    assert pe[32 + d + 1, r, c].item() == pytest.approx(math.cos(v), abs=1e-6)


def test_coord_maps_are_column_then_row():
    cm = coord_maps(128, 128)[0]
    assert cm[0, 5, 0].item() == -1.0 and cm[0, 5, 127].item() == 1.0  # x varies along columns
    assert cm[1, 0, 9].item() == -1.0 and cm[1, 127, 9].item() == 1.0  # y varies along rows
    assert cm[0, 0, 64].item() == pytest.approx(64 / 127 * 2 - 1)


def _bn(x, sd, p):
    return F.batch_norm(x, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"], sd[p + ".bias"],
                        False, 0.0, 1e-5)


def _head_reference(x, sd, p):
    """The ROMP head computed from raw state-dict tensors, independently of the module code."""
    y = F.relu(_bn(F.conv2d(x, sd[p + ".0.0.weight"], sd[p + ".0.0.bias"], stride=2, padding=1), sd, p + ".0.1"))
    for b in range(2):
        q = f"{p}.1.{b}.0"
        z = F.relu(_bn(F.conv2d(y, sd[q + ".conv1.weight"], padding=1), sd, q + ".bn1"))
        z = _bn(F.conv2d(z, sd[q + ".conv2.weight"], padding=1), sd, q + ".bn2")
        y = F.relu(z + y)
    return F.conv2d(y, sd[p + ".2.weight"], sd[p + ".2.bias"])


def test_official_checkpoint_loads_strictly_and_forward_matches(official_r50_ckpt, resnet50_model):
    net = load_network(official_r50_ckpt)
    assert not net.training and net.cfg.name == "resnet50"
    for k, v in resnet50_model.state_dict().items():
        assert torch.equal(net.state_dict()[k], v), k
    torch.manual_seed(1)
    img = torch.rand(1, 3, 512, 512) * 255
    with torch.no_grad():
        out = net(img)
        feats = net.forward_features(img)
    assert out["center_map"].shape == (1, 1, 64, 64)
    assert out["joint_maps"].shape == (1, 24, 64, 64)
    assert out["params_maps"].shape == (1, 82, 64, 64)
    assert feats.shape == (1, 66, 128, 128)
    sd = net.state_dict()
    with torch.no_grad():
        center = _head_reference(feats, sd, "final_layers.1")
        cam = _head_reference(feats, sd, "final_layers.2")
        joints = _head_reference(feats, sd, "final_layers.3")
    assert torch.allclose(out["center_map"], center, rtol=1e-4, atol=1e-5)
    assert torch.allclose(out["joint_maps"], joints, rtol=1e-4, atol=1e-5)
    assert torch.allclose(out["params_maps"][:, 0], torch.pow(1.1, cam[:, 0]), rtol=1e-4, atol=1e-6)
    assert torch.allclose(out["params_maps"][:, 1:3], cam[:, 1:3], rtol=1e-4, atol=1e-5)
    assert (out["params_maps"][:, 0] > 0).all()


def test_normalisation_is_inside_the_network(resnet50_model):
    """x/255 then ImageNet mean/std: a constant image equal to the mean (in 0..255) is all-zero after it."""
    bb = resnet50_model.backbone
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
    assert torch.allclose((mean.expand(1, 3, 4, 4) / 255 - bb.mean) / bb.std, torch.zeros(1, 3, 4, 4), atol=1e-6)
    white = (torch.full((1, 3, 1, 1), 255.0) / 255 - bb.mean) / bb.std
    want = (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(white.flatten(), want)


def test_bare_state_dict_with_and_without_prefix(tmp_path):
    model = build_model("mobilenetv3").eval()
    plain = tmp_path / "plain.pth"
    torch.save(model.state_dict(), plain)
    prefixed = tmp_path / "prefixed.pth"
    torch.save({"module." + k: v for k, v in model.state_dict().items()}, prefixed)
    for path in (plain, prefixed):
        net = load_network(path)
        assert net.cfg.backbone == "mobilenetv3"
        assert torch.equal(net.params_outconv.weight, model.params_outconv.weight)


def test_hrnet_detected_and_forward_shapes(tmp_path):
    model = build_model("hrnet32").eval()
    path = tmp_path / "hrnet.pkl"
    torch.save(official_container(model, with_extras=False), path)
    net = load_network(path)
    assert net.cfg.backbone == "hrnet32"
    with torch.no_grad():
        assert net.backbone(torch.zeros(1, 3, 256, 256)).shape == (1, 32, 64, 64)


def test_our_checkpoint_roundtrip_keeps_cfg(tmp_path):
    model = build_model("mobilenetv3", input_size=320)
    path = save_checkpoint(model, tmp_path / "m.pt", step=12)
    net, extra = load_checkpoint(path)
    assert net.cfg.input_size == 320 and net.cfg.map_size == 40
    assert extra["step"] == 12


def test_romp_checkpoint_is_refused_with_reason(tmp_path, resnet50_model):
    sd = {k: v for k, v in resnet50_model.state_dict().items() if not k.startswith(("params_", "centerid", "jointid"))}
    sd["final_layers.1.2.weight"] = torch.zeros(142, 64, 1, 1)
    sd["final_layers.1.2.bias"] = torch.zeros(142)
    path = tmp_path / "ROMP_ResNet50_V1.pkl"
    torch.save(sd, path)
    with pytest.raises(ModelFileError, match="ROMP checkpoint"):
        load_network(path)


def test_missing_unexpected_and_misshaped_keys_are_named(tmp_path, resnet50_model):
    sd = dict(resnet50_model.state_dict())
    del sd["centerid_trans2.conv.bias"]
    sd["extra_head.weight"] = torch.zeros(3)
    sd["jointid_outconv.weight"] = torch.zeros(32, 128, 1, 1)
    path = tmp_path / "broken.pth"
    torch.save(sd, path)
    with pytest.raises(ModelFileError) as e:
        load_network(path)
    msg = str(e.value)
    assert "centerid_trans2.conv.bias" in msg and "extra_head.weight" in msg and "jointid_outconv.weight" in msg
    assert "\n" not in msg


def test_malicious_checkpoint_never_executes(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    for protocol in (2, 4):
        path = tmp_path / f"evil{protocol}.pkl"
        with open(path, "wb") as f:
            pickle.dump({"model_state_dict": Payload()}, f, protocol=protocol)
        with pytest.raises(ModelFileError, match="never unpickled"):
            load_network(path)
    assert not marker.exists()


@pytest.mark.parametrize("content,match", [(None, "not found"), (b"garbage" * 10, "not a plain weights checkpoint"),
                                           ({"foo": 1}, "no state dict")])
def test_bad_files(tmp_path, content, match):
    path = tmp_path / "x.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(ModelFileError, match=match):
        load_network(path)


@pytest.mark.parametrize("name", ["resnet18", "mobilenetv3"])
def test_light_variants_same_heads_and_contract(name):
    model = build_model(name).eval()
    s, m = model.cfg.input_size, model.cfg.map_size
    assert s // m == 8
    with torch.no_grad():
        out = model(torch.rand(2, 3, s, s) * 255, return_id_maps=True)
    assert out["params_maps"].shape == (2, 82, m, m)
    assert out["centerid_map"].shape == (2, 64, m, m)
    # the centre ID map carries the positional encoding of its own grid
    assert torch.equal(model.pos_encoding, position_encoding_sine(m, m, 64))
