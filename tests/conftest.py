"""Shared fixtures: small checkpoints in official and in our own format, built on the fly (no downloads)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.body import create_body_model
from engine.models import build_model
from testing.xvfb import start_xvfb


@pytest.fixture(scope="module")
def body():
    """The Anny body model (bundled, no SMPL files), one per test module; torch on one thread like the app's body
    stage."""
    torch.set_num_threads(1)
    return create_body_model("anny")


def official_container(model: torch.nn.Module, with_extras: bool = True) -> dict:
    """What the official trainer saves: DataParallel keys ('module.'), parser/loss buffers, optimizer + scaler."""
    sd = {"module." + k: v.clone() for k, v in model.state_dict().items()}
    if with_extras:
        p = "module._result_parser.params_map_parser.smpl_model."
        sd[p + "v_template"] = torch.zeros(6890, 3)
        sd[p + "faces_tensor"] = torch.zeros(13776, 3, dtype=torch.int64)
        sd[p + "parents"] = torch.arange(24) - 1
        sd["module._calc_loss.gmm_prior.means"] = torch.zeros(8, 69)
        sd["module._calc_loss.gmm_prior.weights"] = torch.ones(1, 8) / 8
    return {"model_state_dict": sd,
            "optimizer_state_dict": {"state": {}, "param_groups": [{"lr": 5e-5, "params": [0, 1, 2]}]},
            "scaler_state_dict": {"scale": 65536.0, "_growth_tracker": 0}}


def randomise_bn(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial BN statistics so that eval-mode parity tests exercise them."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model


@pytest.fixture(scope="session")
def resnet50_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return randomise_bn(build_model("resnet50")).eval()


@pytest.fixture(scope="session")
def official_r50_ckpt(tmp_path_factory, resnet50_model) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "resnet_cm64_V1_resnet_epoch_26.pkl"
    torch.save(official_container(resnet50_model), path)
    return path


VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")  # Debian opencv-doc: real street, many people
needs_vtest = pytest.mark.skipif(not VTEST.is_file(), reason=f"{VTEST} missing: apt-get install -y opencv-doc")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Two torch threads on a 2-core box shared with other jobs ran 4x slower than one (measured)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """Four real frames of vtest.avi (skips with the reason when opencv-doc is not installed)."""
    if not VTEST.is_file():
        pytest.skip(f"{VTEST} missing: apt-get install -y opencv-doc")
    from export.compare import load_frames

    return load_frames(str(VTEST), 4, step=25)


ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    """Environment for running ``run_app.py`` in a child: no display (headless unless a test gives one), a private
    artifact cache, the repository importable."""
    e = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    e.update(INSTANCEHMR_CACHE_DIR=str(tmp_path_factory.mktemp("cache")), PYTHONPATH=str(ROOT))
    return e


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """A small InstanceHMR checkpoint that finds people in the synthetic scene videos (overridden where a module
    needs another)."""
    from testing.scene import make_scene_checkpoint

    return make_scene_checkpoint(tmp_path_factory.mktemp("ckpt") / "scene.pt")


@pytest.fixture(scope="session")
def xserver():
    """One private Xvfb for the whole run (``:N``); window tests skip with a reason where it cannot start."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb not installed: apt-get install xvfb")
    proc, shown = start_xvfb("1280x800x24")
    if shown is None:
        pytest.skip("Xvfb did not start")
    yield shown
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="session")
def qapp(xserver):
    """The one QApplication of the run, on the private display.

    Qt means one application object per process. Each window test used to build its own and drop it at the end;
    building the ninth of a run aborted the interpreter inside QApplication's constructor on one CI machine, so
    the in-process window tests now share this one, and their windows come and go on it.
    """
    from PyQt5 import QtWidgets

    with pytest.MonkeyPatch.context() as env:  # the display only while the application connects to it
        env.setenv("DISPLAY", xserver)
        env.delenv("QT_QPA_PLATFORM", raising=False)
        app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(["pytest"])
    yield app
    app.closeAllWindows()
    app.processEvents()


@pytest.fixture
def display(xserver, qapp, monkeypatch) -> str:
    """DISPLAY for one in-process window test (the app checks it before opening a window)."""
    monkeypatch.setenv("DISPLAY", xserver)
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    return xserver
