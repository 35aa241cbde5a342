"""The app's configuration tree: each group holds what its stage reads, the tree is frozen, and ``build_cfg`` still
refuses every contradiction with the same one line (and the CLI still turns it into ``error: <line>``, exit 2)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from app.cli import main
from app.config import (
    DEMO_CHECKPOINT,
    MAX_CAMERA,
    AppCfg,
    CaptureCfg,
    ModelChoiceCfg,
    OutputsCfg,
    RenderCfg,
    RuntimeCfg,
    build_cfg,
    build_parser,
    usable_cores,
)
from app.vmc import VmcTarget
from engine.errors import ConfigError

GROUPS = ("capture", "model", "runtime", "render", "outputs")
# parser dests stored under another name in the tree (the view flags read as what they show; the model's name)
RENAMED = {"skeleton": "show_skeleton", "centers": "show_centers", "model": "name"}


def cfg_for(*argv: object) -> AppCfg:
    return build_cfg(build_parser().parse_args([str(a) for a in argv]))


def test_a_full_command_line_lands_in_the_groups_that_read_it(tmp_path):
    """Sibling flags get different values (--skeleton without --centers, --no-3d with the mesh on), so a
    swapped mapping in build_cfg fails here."""
    d = tmp_path
    cfg = cfg_for("--input", "clip.mp4", "--headless", "--max-frames", 7, "--checkpoint", d / "w.pkl",
                  "--landmarks", "lite", "--detect-every", 3, "--landmark-budget", 4, "--detect-lag", 0,
                  "--detect-size", 640, "--fine-size", 0, "--body-model", "smpl",
                  "--smpl-dir", d / "smpl",
                  "--threshold", 0.4, "--max-people", 5, "--backend", "onnxruntime", "--device", "cpu",
                  "--threads", 1, "--no-smooth", "--smooth-strength", 2.5, "--opacity", 0.3, "--skeleton",
                  "--no-3d", "--live-faces", 900, "--record", d / "r.mp4",
                  "--save-npz", d / "npz", "--save-verts", "--npz-format", "romp", "--export-mesh", d / "mesh",
                  "--mesh-format", "ply", "--mesh-space", "camera", "--export-anim", d / "anim", "--out-dir", d / "o",
                  "--vmc", ":40001", "--vmc-track", 2, "--debug", "--quit-at-end")
    assert cfg.capture == CaptureCfg(camera=None, input="clip.mp4", max_frames=7)
    assert cfg.model == ModelChoiceCfg(name="instancehmr", checkpoint=d / "w.pkl", landmarks="lite", detect_every=3,
                                       landmark_budget=4, detect_lag=0, detect_size=640, fine_size=0,
                                       body_model="smpl",
                                       smpl_dir=d / "smpl",
                                       threshold=0.4, max_people=5)
    assert cfg.runtime == RuntimeCfg(backend="onnxruntime", device="cpu", threads=1)
    assert cfg.render == RenderCfg(smooth=False, smooth_strength=2.5, opacity=0.3, show_mesh=True, show_skeleton=True,
                                   show_centers=False, show_3d=False, live_faces=900)
    assert cfg.outputs == OutputsCfg(record=d / "r.mp4", save_npz=d / "npz", save_verts=True, npz_format="romp",
                                     export_mesh=d / "mesh", mesh_format="ply", mesh_space="camera",
                                     export_anim=d / "anim", out_dir=d / "o", vmc=VmcTarget("127.0.0.1", 40001),
                                     vmc_track=2)
    assert (cfg.headless, cfg.debug, cfg.quit_at_end) == (True, True, True)


def test_defaults_are_the_parsers_and_every_option_has_one_home():
    """A new CLI option that build_cfg forgets to store fails here (it would otherwise be parsed and ignored)."""
    parser = build_parser()
    cfg = cfg_for("--input", "clip.mp4", "--headless")
    stored: dict[str, list[object]] = {}
    for group in GROUPS:
        for f in dataclasses.fields(getattr(cfg, group)):
            stored.setdefault(f.name, []).append(getattr(getattr(cfg, group), f.name))
    for name in ("headless", "debug", "quit_at_end"):
        stored.setdefault(name, []).append(getattr(cfg, name))
    for action in parser._actions:  # argparse keeps no public list of its options
        if action.dest == "help":
            continue
        key = RENAMED.get(action.dest, action.dest)
        assert len(stored.get(key, [])) == 1, f"--{action.dest}: stored {len(stored.get(key, []))} times in the tree"
    # derived defaults (None -> the real-footage model and its landmarks) and the plain ones straight from argparse
    assert cfg.model.name == "realfootage" and cfg.model.checkpoint is None and cfg.model.landmarks == "mixed"
    assert cfg.runtime.threads == min(2, CORES)
    from engine.realfootage.detector import FINE_SIZE, MAX_SIZE

    assert (cfg.model.detect_size, cfg.model.fine_size) == (MAX_SIZE, FINE_SIZE)  # the CLI's defaults: the detector's
    for dest in ("max_people", "smooth", "smooth_strength", "opacity", "show_mesh", "show_3d", "live_faces",
                 "backend", "device", "mesh_format", "npz_format", "mesh_space", "max_frames", "out_dir"):
        assert stored[dest] == [parser.get_default(dest)], dest


def test_the_tree_is_frozen_and_changed_copies_one_group():
    cfg = cfg_for("--input", "clip.mp4", "--headless", "--model", "demo")
    for group in GROUPS:
        assert dataclasses.is_dataclass(getattr(cfg, group))
        assert type(getattr(cfg, group)).__dataclass_params__.frozen, group
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.capture.input = "other.mp4"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.outputs = cfg.outputs  # type: ignore[misc]
    on_gpu = cfg.changed(runtime={"device": "cuda"}, capture={"max_frames": 3})
    assert on_gpu.runtime.device == "cuda" and on_gpu.capture.max_frames == 3
    assert on_gpu.runtime.backend == cfg.runtime.backend and on_gpu.capture.input == "clip.mp4"
    assert on_gpu.model is cfg.model and on_gpu.outputs is cfg.outputs  # untouched groups are shared, not copied
    assert cfg.runtime.device == "auto" and cfg.capture.max_frames == 0  # the original is unchanged
    assert cfg.model.checkpoint == DEMO_CHECKPOINT
    with pytest.raises(TypeError):
        cfg.changed(runtime={"max_people": 3})  # a field of another group


CORES = usable_cores()


def test_inference_threads_default_by_model_and_an_explicit_value_wins():
    """The real-footage networks take two (sleeping) intra-op threads where two cores are usable; the InstanceHMR
    demo keeps one, as measured for it; --threads overrides both."""
    assert cfg_for("--input", "clip.mp4", "--headless").runtime.threads == min(2, CORES)
    assert cfg_for("--input", "clip.mp4", "--headless", "--model", "demo").runtime.threads == 1
    assert cfg_for("--input", "clip.mp4", "--headless", "--threads", 1).runtime.threads == 1


CONTRADICTIONS = [
    (["--camera", "0", "--input", "a.mp4", "--headless"], "pass either --camera or --input, not both"),
    (["--input", " ", "--headless"], "--input is empty; pass an image, a folder of images, a video or a stream URL"),
    (["--camera", str(MAX_CAMERA + 1), "--headless"],
     f"--camera must be a camera index in 0..{MAX_CAMERA} (usually 0), got {MAX_CAMERA + 1}"),
    (["--model", "demo", "--checkpoint", "w.pkl"],
     "pass either --model demo or --checkpoint, not both (a checkpoint runs its own system)"),
    (["--model", "demo", "--landmarks", "lite"],
     "--landmarks, --detect-every, --detect-lag, --detect-size, --fine-size and --landmark-budget apply to the "
     "realfootage model "
     "and to 3DCrowdNet/JOTR checkpoints (their 2D poses come from the same tracker), not to the demo model"),
    (["--model", "demo", "--landmark-budget", "3"],
     "--landmarks, --detect-every, --detect-lag, --detect-size, --fine-size and --landmark-budget apply to the "
     "realfootage model "
     "and to 3DCrowdNet/JOTR checkpoints (their 2D poses come from the same tracker), not to the demo model"),
    (["--landmark-budget", "-1"], "--landmark-budget must be in 0..64 (0 = every person), got -1"),
    (["--detect-lag", "-1"], "--detect-lag must be in 0..100 (0 = no detector thread), got -1"),
    (["--detect-size", "500"], "--detect-size must be a multiple of 32 in 416..1536, got 500"),
    (["--detect-size", "384"], "--detect-size must be a multiple of 32 in 416..1536, got 384"),
    (["--fine-size", "1000"], "--fine-size must be 0 (no fine pass) or a multiple of 32 in 416..2048, got 1000"),
    (["--fine-size", "-32"], "--fine-size must be 0 (no fine pass) or a multiple of 32 in 416..2048, got -32"),
    (["--backend", "torch"], "the realfootage model runs on ONNX Runtime (CPU, or CUDA with onnxruntime-gpu), not "
                             "torch; use --backend auto, or --checkpoint for an InstanceHMR model"),
    (["--threshold", "1.5"], "--threshold must be in [0, 1], got 1.5"),
    (["--detect-every", "0"], "--detect-every must be in 1..1000, got 0"),
    (["--opacity", "2"], "--opacity must be in [0, 1], got 2.0"),
    (["--smooth-strength", "0"], "--smooth-strength must be > 0, got 0.0"),
    (["--max-people", "65"], "--max-people must be in 1..64, got 65"),
    (["--max-frames", "-1"], "--max-frames must be >= 0, got -1"),
    (["--live-faces", "50"], "--live-faces must be >= 100, got 50"),
    (["--threads", "0"], f"--threads must be in 1..{CORES} (the CPU cores this process may use), got 0"),
    (["--vmc-track", "2"], "--vmc-track needs --vmc"),
    (["--vmc", "--vmc-track", "-1"], "--vmc-track must be a track id >= 0, got -1"),
    (["--save-verts"], "--save-verts needs --save-npz DIR"),
    (["--npz-format", "romp"], "--npz-format needs --save-npz DIR"),
    (["--mesh-space", "camera"], "--mesh-space needs --export-mesh DIR"),
    (["--body-model", "smpl"], "--body-model smpl needs --smpl-dir (folder with SMPL_NEUTRAL.pkl or .npz; SMPL files "
                               "are a licensed download from smpl.is.tue.mpg.de)"),
    (["--smpl-dir", "smpl"], "--smpl-dir is only used with --body-model smpl"),
    (["--camera-size", "1280x720"], "--camera-size applies to a webcam (--camera N), not to --input"),
    (["--camera", "0", "--headless", "--camera-size", "1280"],
     "--camera-size must be WIDTHxHEIGHT with sides in 16..7680, e.g. 1280x720; got '1280'"),
    (["--camera", "0", "--headless", "--camera-size", "0x720"],
     "--camera-size must be WIDTHxHEIGHT with sides in 16..7680, e.g. 1280x720; got '0x720'"),
    (["--camera", "0", "--headless", "--camera-size", "99999x720"],
     "--camera-size must be WIDTHxHEIGHT with sides in 16..7680, e.g. 1280x720; got '99999x720'"),
]


def test_camera_size_lands_in_the_capture_group():
    assert cfg_for("--camera", "1", "--headless", "--camera-size", "1280x720").capture.camera_size == (1280, 720)
    assert cfg_for("--camera-size", " 1920X1080 ", "--headless", "--camera", "0").capture.camera_size == (1920, 1080)
    assert cfg_for("--camera", "0", "--headless").capture.camera_size is None


@pytest.mark.parametrize(("argv", "line"), CONTRADICTIONS, ids=[a[0].lstrip("-") + str(k)
                                                                for k, (a, _) in enumerate(CONTRADICTIONS)])
def test_each_contradiction_is_still_one_config_error(argv, line):
    if "--headless" not in argv:
        argv = ["--input", "a.mp4", "--headless", *argv]
    with pytest.raises(ConfigError, match=f"^{re.escape(line)}$"):
        cfg_for(*argv)


def test_headless_needs_a_source_and_a_window_needs_a_display(monkeypatch):
    with pytest.raises(ConfigError, match=re.escape("--headless needs --input PATH (or --camera N with")):
        cfg_for("--headless")
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    with pytest.raises(ConfigError, match=re.escape("no display available (DISPLAY is not set); add --headless to "
                                                    "process to files, or run under xvfb-run")):
        cfg_for("--input", "a.mp4")
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert cfg_for("--input", "a.mp4").headless is False  # an offscreen Qt counts as a display


def test_the_cli_prints_the_same_error_line_and_exit_code(capsys):
    code = main(["--input", "a.mp4", "--headless", "--save-verts"])
    err = capsys.readouterr().err
    assert code == ConfigError.exit_code == 2
    assert err.splitlines() == ["error: --save-verts needs --save-npz DIR"]


def test_window_sessions_derive_from_the_tree_without_cli_outputs(tmp_path):
    """The window's later sessions (another input) keep the model, runtime and view and drop the run's files."""
    from app.ui.services import InputChoice
    from app.window_services import AppServices

    cfg = cfg_for("--input", "a.mp4", "--headless", "--record", tmp_path / "r.mp4", "--save-npz", tmp_path,
                  "--save-verts", "--export-anim", tmp_path / "anim", "--vmc", "--threads", 1)
    new = AppServices(cfg).window_cfg(cfg, InputChoice(path=str(Path("b.mp4"))))
    assert new.capture.input == "b.mp4" and new.capture.max_frames == cfg.capture.max_frames
    assert (new.outputs.record, new.outputs.save_npz, new.outputs.save_verts, new.outputs.export_anim) == (
        None, None, False, None)
    assert new.outputs.vmc == cfg.outputs.vmc  # the live link is not a file of this run: it keeps streaming
    assert (new.model, new.runtime, new.render) == (cfg.model, cfg.runtime, cfg.render)
