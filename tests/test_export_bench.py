"""The per-stage benchmark (benchmarks/stages.py, formerly ``python -m export bench``) runs end to end on a real
video and reports every stage plus machine info; the exporter no longer carries it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import needs_vtest

ROOT = Path(__file__).resolve().parent.parent


def _stages():
    spec = importlib.util.spec_from_file_location("bench_stages", ROOT / "benchmarks" / "stages.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the file runs
    spec.loader.exec_module(mod)
    return mod


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
