"""Bad options and inputs through ``run_app.py``: each ends with exactly one ``error:`` line on stderr, the error's
exit code and no traceback. Plus the model_cfg validation of our own checkpoints and ``train.eval`` without its
held-out set.

Every case runs ``run_app.py`` as ``__main__`` in a process of its own with its own stdout/stderr, but the processes
are forked from one harness that has already imported the app: a fresh interpreter spends 4.5 s (10 s on a loaded
2-core box) importing torch before it can even parse the options, which made 50 cases cost minutes. Only cases that
fail before a model is loaded belong here; a few real ``python run_app.py`` runs guard the fork shortcut.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from engine.errors import ModelFileError
from engine.models import build_model

ROOT = Path(__file__).resolve().parent.parent

# (id, argv, exit code, words in the error line); {tmp} is a scratch folder, {img} a small image there
CASES = [
    # usage mistakes (argparse), now one line like everything else
    ("int-threads", ["--threads", "x"], 2, "invalid int value: 'x'"),
    ("int-camera", ["--camera", "abc"], 2, "--camera"),
    ("int-max-frames-float", ["--input", "{img}", "--headless", "--max-frames", "1e3"], 2, "--max-frames"),
    ("choice-model", ["--model", "nope"], 2, "invalid choice: 'nope'"),
    ("choice-backend", ["--backend", "cuda"], 2, "--backend"),
    ("choice-mesh-format", ["--mesh-format", "stl"], 2, "--mesh-format"),
    ("choice-body-model", ["--body-model", "xyz"], 2, "--body-model"),
    ("unknown-option", ["--bogus", "1"], 2, "unrecognized arguments: --bogus"),
    ("missing-value", ["--input"], 2, "expected one argument"),
    # values out of range
    ("threshold-nan", ["--input", "{img}", "--headless", "--threshold", "nan"], 2, "--threshold"),
    ("threshold-negative", ["--input", "{img}", "--headless", "--threshold", "-0.1"], 2, "--threshold"),
    ("opacity-inf", ["--input", "{img}", "--headless", "--opacity", "inf"], 2, "--opacity"),
    ("smooth-strength-negative", ["--input", "{img}", "--headless", "--smooth-strength", "-1"], 2,
     "--smooth-strength"),
    ("smooth-strength-nan", ["--input", "{img}", "--headless", "--smooth-strength", "nan"], 2, "--smooth-strength"),
    ("max-people-0", ["--input", "{img}", "--headless", "--max-people", "0"], 2, "--max-people"),
    ("max-people-65", ["--input", "{img}", "--headless", "--max-people", "65"], 2, "--max-people"),
    ("max-frames-negative", ["--input", "{img}", "--headless", "--max-frames", "-1"], 2, "--max-frames"),
    ("live-faces-low", ["--input", "{img}", "--headless", "--live-faces", "10"], 2, "--live-faces"),
    ("threads-0", ["--input", "{img}", "--headless", "--threads", "0"], 2, "--threads must be in 1.."),
    ("threads-1000", ["--input", "{img}", "--headless", "--threads", "1000"], 2, "--threads must be in 1.."),
    ("detect-every-0", ["--input", "{img}", "--headless", "--detect-every", "0"], 2, "--detect-every"),
    ("detect-every-huge", ["--input", "{img}", "--headless", "--detect-every", "1001"], 2, "--detect-every"),
    ("camera-negative", ["--camera", "-1", "--headless"], 2, "--camera"),
    ("camera-2**40", ["--camera", "1099511627776", "--headless", "--max-frames", "1"], 2, "--camera"),
    # contradictory or incomplete options
    ("camera-and-input", ["--camera", "0", "--input", "{img}"], 2, "either --camera or --input"),
    ("model-and-checkpoint", ["--input", "{img}", "--headless", "--model", "demo", "--checkpoint", "x.pt"], 2,
     "either --model demo or --checkpoint"),
    ("landmarks-with-demo", ["--input", "{img}", "--headless", "--landmarks", "lite", "--model", "demo"], 2,
     "--landmarks, --detect-every"),
    ("detect-every-with-demo", ["--input", "{img}", "--headless", "--detect-every", "3", "--model", "demo"], 2,
     "--detect-every"),
    ("realfootage-on-torch", ["--input", "{img}", "--headless", "--backend", "torch"], 2, "ONNX Runtime"),
    ("save-verts-alone", ["--input", "{img}", "--headless", "--save-verts"], 2, "--save-verts needs --save-npz"),
    ("smpl-without-dir", ["--input", "{img}", "--headless", "--body-model", "smpl"], 2, "needs --smpl-dir"),
    ("smpl-dir-with-anny", ["--input", "{img}", "--headless", "--smpl-dir", "{tmp}"], 2, "--smpl-dir is only"),
    ("headless-without-input", ["--headless"], 2, "--headless needs --input"),
    ("window-without-display", ["--input", "{img}"], 2, "no display"),
    ("input-empty-string", ["--input", "", "--headless"], 2, "--input is empty"),
    # inputs that are not there or not what they claim
    ("input-missing", ["--input", "{tmp}/missing.mp4", "--headless"], 5, "input not found"),
    ("input-empty-folder", ["--input", "{tmp}/emptydir", "--headless"], 5, "no images"),
    ("input-folder-without-images", ["--input", "{tmp}/txtdir", "--headless"], 5, "no images"),
    ("input-empty-file", ["--input", "{tmp}/empty.mp4", "--headless"], 5, "empty.mp4"),
    ("input-text-as-mp4", ["--input", "{tmp}/text.mp4", "--headless"], 5, "text.mp4"),
    ("camera-absent", ["--camera", "7", "--headless", "--max-frames", "1"], 5, "camera 7"),
    # outputs that cannot be written
    ("record-is-folder", ["--input", "{img}", "--headless", "--record", "{tmp}/recdir.mp4"], 6, "is a folder"),
    ("record-no-extension", ["--input", "{img}", "--headless", "--record", "{tmp}"], 6, "extension"),
    ("record-txt", ["--input", "{img}", "--headless", "--record", "{tmp}/out.txt"], 6, "extension .txt"),
    ("record-under-a-file", ["--input", "{img}", "--headless", "--record", "{tmp}/file/x.mp4"], 6, "--record"),
    ("record-proc", ["--input", "{img}", "--headless", "--record", "/proc/x.mp4"], 6, "--record"),
    ("npz-is-a-file", ["--input", "{img}", "--headless", "--save-npz", "{tmp}/file"], 6, "--save-npz"),
    ("npz-proc", ["--input", "{img}", "--headless", "--save-npz", "/proc/forbidden"], 6, "--save-npz"),
    ("meshes-is-a-file", ["--input", "{img}", "--headless", "--export-mesh", "{tmp}/file"], 6, "--export-mesh"),
    ("meshes-proc", ["--input", "{img}", "--headless", "--export-mesh", "/proc/forbidden"], 6, "--export-mesh"),
    # model files (refused on reading, before any network is built)
    ("checkpoint-missing", ["--input", "{img}", "--headless", "--checkpoint", "{tmp}/missing.pt"], 3,
     "checkpoint not found"),
    ("checkpoint-folder", ["--input", "{img}", "--headless", "--checkpoint", "{tmp}/emptydir"], 3, "emptydir"),
    ("checkpoint-empty", ["--input", "{img}", "--headless", "--checkpoint", "{tmp}/empty.pt"], 3, "empty.pt"),
    ("checkpoint-is-an-image", ["--input", "{img}", "--headless", "--checkpoint", "{img}"], 3, "img.png"),
    ("cfg-unknown-backbone", ["--input", "{img}", "--headless", "--checkpoint", "{tmp}/cfg_backbone.pt"], 3,
     "unknown backbone 'vgg'"),
    ("cfg-input-size-0", ["--input", "{img}", "--headless", "--checkpoint", "{tmp}/cfg_zero.pt"], 3,
     "input_size must be in"),
    ("cfg-input-size-str", ["--input", "{img}", "--headless", "--checkpoint", "{tmp}/cfg_str.pt"], 3,
     "input_size must be an integer"),
    ("smpl-dir-missing", ["--input", "{img}", "--headless", "--body-model", "smpl", "--smpl-dir", "{tmp}/nosmpl"], 3,
     "SMPL"),
    ("smpl-dir-empty", ["--input", "{img}", "--headless", "--body-model", "smpl", "--smpl-dir", "{tmp}/emptydir"], 3,
     "SMPL"),
]

HARNESS = r"""
import json, os, runpy, signal, sys, traceback
import app.cli, app.headless, app.session  # the seconds of imports, paid once
cases, out_dir = json.load(sys.stdin), sys.argv[1]
codes = []
for i, argv in enumerate(cases):
    pid = os.fork()
    if pid == 0:
        for fd, name in ((1, "out"), (2, "err")):
            os.dup2(os.open(f"{out_dir}/{i}.{name}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
        signal.alarm(120)  # a hung case fails alone instead of stalling the sweep
        sys.argv = ["run_app.py", *argv]
        code = 0
        try:
            runpy.run_path("run_app.py", run_name="__main__")
        except SystemExit as e:  # what the interpreter does with it
            if e.code is None or isinstance(e.code, int):
                code = e.code or 0
            else:
                print(e.code, file=sys.stderr)
                code = 1
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    codes.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
print(json.dumps(codes))
"""


def bad_cfg_checkpoint(path: Path, **cfg) -> Path:
    model = build_model("mobilenetv3", input_size=64)
    torch.save({"model_state_dict": model.state_dict(), "model_cfg": {**model.cfg.to_dict(), **cfg}}, path)
    return path


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("sweep")
    cv2.imwrite(str(tmp / "img.png"), np.zeros((64, 64, 3), np.uint8))
    (tmp / "empty.mp4").write_bytes(b"")
    (tmp / "empty.pt").write_bytes(b"")
    (tmp / "text.mp4").write_text("not a video\n" * 100)
    (tmp / "file").write_text("a file where a folder is expected")
    for d in ("emptydir", "txtdir", "recdir.mp4"):
        (tmp / d).mkdir()
    (tmp / "txtdir" / "notes.txt").write_text("no images here")
    bad_cfg_checkpoint(tmp / "cfg_backbone.pt", backbone="vgg")
    bad_cfg_checkpoint(tmp / "cfg_zero.pt", input_size=0)
    bad_cfg_checkpoint(tmp / "cfg_str.pt", input_size="256")
    return tmp


def child_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env.update(INSTANCEHMR_CACHE_DIR=str(tmp / "cache"), PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1",
               OMP_NUM_THREADS="1")  # a single-threaded harness forks cleanly
    return env


@pytest.fixture(scope="module")
def sweep(scratch) -> dict[str, tuple[int, str, str]]:
    """Run every case; returns id -> (exit code, stdout, stderr)."""
    argvs = [[a.format(tmp=scratch, img=scratch / "img.png") for a in argv] for _, argv, _, _ in CASES]
    logs = scratch / "logs"
    logs.mkdir()
    proc = subprocess.run([sys.executable, "-c", HARNESS, str(logs)], input=json.dumps(argvs), cwd=ROOT,
                          env=child_env(scratch), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    codes = json.loads(proc.stdout.strip().splitlines()[-1])
    return {case[0]: (code, (logs / f"{i}.out").read_text(errors="replace"),
                      (logs / f"{i}.err").read_text(errors="replace"))
            for i, (case, code) in enumerate(zip(CASES, codes))}


def assert_one_error_line(code: int, err: str, want_code: int, words: str) -> None:
    lines = err.strip().splitlines()
    errors = [ln for ln in lines if "error:" in ln]
    assert code == want_code, err[-2000:]
    assert "Traceback" not in err, err[-3000:]
    assert len(errors) == 1 and errors[0] == lines[-1] and errors[0].startswith("error: "), err[-2000:]
    assert words in errors[0], errors[0]


@pytest.mark.parametrize(("case", "argv", "code", "words"), CASES, ids=[c[0] for c in CASES])
def test_bad_option_or_input(sweep, case, argv, code, words):
    got, _, err = sweep[case]
    assert_one_error_line(got, err, code, words)


@pytest.mark.parametrize(("argv", "code", "words"), [
    (["--threads", "x"], 2, "invalid int value"),
    (["--input", "{img}", "--headless", "--threads", "1000"], 2, "--threads must be in 1.."),
    (["--input", "{tmp}/missing.mp4", "--headless"], 5, "input not found"),
], ids=["usage", "config", "input"])
def test_the_real_entry_point_agrees(scratch, argv, code, words):
    """The same contract from a fresh interpreter (what the fork harness stands in for)."""
    argv = [a.format(tmp=scratch, img=scratch / "img.png") for a in argv]
    p = subprocess.run([sys.executable, "run_app.py", *argv], cwd=ROOT, env=child_env(scratch), capture_output=True,
                       text=True, timeout=300)
    assert_one_error_line(p.returncode, p.stderr, code, words)


# ------------------------------------------------------------------------------------------- model_cfg validation
@pytest.mark.parametrize(("cfg", "words"), [
    ({"backbone": "vgg"}, "unknown backbone 'vgg'"),
    ({"input_size": 0}, "input_size must be in 32..4096, got 0"),
    ({"input_size": "256"}, "input_size must be an integer, got '256'"),
    ({"input_size": 100}, "multiple of 32"),
    ({"id_dim": 6}, "id_dim must be a multiple of 4"),
    ({"head_stride": True}, "head_stride must be an integer"),
    ({"layers": 3}, "unknown keys: layers"),
], ids=["backbone", "input-size-0", "input-size-str", "input-size-100", "id-dim", "bool", "unknown-key"])
def test_bad_model_cfg_is_one_model_file_error(tmp_path, cfg, words):
    from engine.checkpoint import load_checkpoint

    path = bad_cfg_checkpoint(tmp_path / "bad.pt", **cfg)
    with pytest.raises(ModelFileError) as e:
        load_checkpoint(path)
    msg = str(e.value)
    assert words in msg and "invalid model_cfg" in msg and "\n" not in msg, msg


def test_valid_model_cfg_still_loads(tmp_path):
    from engine.checkpoint import load_checkpoint

    path = bad_cfg_checkpoint(tmp_path / "ok.pt")  # no change: the saved cfg of a 64 px mobilenetv3
    model, _ = load_checkpoint(path)
    assert model.cfg.input_size == 64 and model.cfg.map_size == 8
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 64, 64))["params_maps"].shape == (1, 82, 8, 8)


# ------------------------------------------------------------------------------------------------- train.eval
def test_eval_without_test_set_names_the_command(tmp_path, capsys):
    from train.eval import main

    code = main(["--data", str(tmp_path / "synth" / "test")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: "), err
    assert "python -m train.dataset --split test" in err and str(tmp_path / "synth" / "test") in err
