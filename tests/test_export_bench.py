"""The per-stage benchmark runs end to end on a real video and reports every stage plus machine info."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from export.__main__ import main
from export.bench import STAGES

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


@pytest.mark.skipif(not VTEST.is_file(), reason=f"{VTEST} missing: apt-get install -y opencv-doc")
def test_bench_cli_reports_every_stage(tmp_path, capsys):
    n = torch.get_num_threads()
    try:
        rc = main(["bench", "--model", "mobilenetv3", "--input-size", "128", "--frames", "3", "--threads", "1",
                   "--backend", "onnxruntime", "--cache-dir", str(tmp_path), "--people", "3", "--profile-ops"])
    finally:
        torch.set_num_threads(n)
    out = capsys.readouterr().out
    assert rc == 0
    for stage in STAGES:
        line = next(ln for ln in out.splitlines() if ln.strip().startswith(stage))
        assert any(c.isdigit() for c in line) or "n/a" in line, line
    assert "end-to-end" in out and "FPS" in out
    assert "machine:" in out and "onnxruntime 1." in out
    assert "ORT profile" in out and "Conv" in out
