"""The per-stage benchmark (benchmarks/stages.py, formerly ``python -m export bench``) runs end to end on a real
video and reports every stage plus machine info; the exporter no longer carries it."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import needs_vtest

ROOT = Path(__file__).resolve().parent.parent


def _benchmark(name: str):
    """The script ``benchmarks/<name>.py`` as a module (the benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the file runs
    spec.loader.exec_module(mod)
    return mod


def _stages():
    return _benchmark("stages")


@needs_vtest
def test_bench_cli_reports_every_stage(tmp_path, capsys):
    stages = _stages()
    n = torch.get_num_threads()
    try:
        rc = stages.main(["--model", "mobilenetv3", "--input-size", "128", "--frames", "3", "--threads", "1",
                          "--backend", "onnxruntime", "--cache-dir", str(tmp_path), "--people", "3", "--profile-ops"])
    finally:
        torch.set_num_threads(n)
    out = capsys.readouterr().out
    assert rc == 0
    for stage in stages.STAGES:
        line = next(ln for ln in out.splitlines() if ln.strip().startswith(stage))
        assert any(c.isdigit() for c in line) or "n/a" in line, line
    assert "end-to-end" in out and "FPS" in out
    assert "machine:" in out and "onnxruntime 1." in out
    assert "ORT profile" in out and "Conv" in out
    assert "onnxruntime cpu fp32" in out


@needs_vtest
def test_bench_reports_a_missing_gpu_in_one_line(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    rc = _stages().main(["--model", "mobilenetv3", "--input-size", "128", "--frames", "1", "--backend", "torch",
                         "--device", "cuda", "--cache-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert rc == 4 and err.startswith("error: ") and "\n" not in err


def test_exporter_no_longer_imports_the_app():
    for p in (ROOT / "export").glob("*.py"):
        text = p.read_text()
        assert "from app" not in text and "import app" not in text, p.name


def _webcam_fps():
    return _benchmark("webcam_fps")


def test_webcam_clip_is_the_camera_size_and_moves(tmp_path):
    import cv2

    clip = _webcam_fps().webcam_clip(ROOT / "tests" / "data" / "closeup" / "astronaut.jpg", tmp_path / "a.mp4",
                                     320, 240, frames=12)
    cap = cv2.VideoCapture(str(clip))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f.astype(np.float32))
    cap.release()
    assert len(frames) == 12 and frames[0].shape == (240, 320, 3)
    assert np.abs(frames[0] - frames[-1]).mean() > 2.0  # the view zooms and sways: not one still frame


def test_webcam_fps_reads_the_apps_summary_and_finds_the_one_person(tmp_path):
    # The benchmark runs the user's command and parses its summary line: a change of that line's format must
    # fail here, not silently in the benchmark.
    bench = _webcam_fps()
    out = tmp_path / "r.json"
    rc = bench.main(["--photos", str(ROOT / "tests" / "data" / "closeup" / "astronaut.jpg"), "--rounds", "1",
                     "--frames", "20", "--size", "320x240", "--json", str(out)])
    assert rc == 0
    row = json.loads(out.read_text())["clips"]["astronaut"]
    assert row["fps_median"] > 0 and 0.8 <= row["people_per_frame"] <= 1.2
    assert {"landmarks", "render", "encode"} <= set(row["stages_ms_median"])
    assert bench.main(["--size", "big"]) == 2
