"""benchmarks/gpu_check.py, the one-command GPU check, proven end to end on the CPU with ``--cpu-smoke`` (toy sizes,
the CUDA-graph rows through the eager stand-in): every section runs and lands in the JSON report."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import needs_vtest

ROOT = Path(__file__).resolve().parent.parent


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the file runs
    spec.loader.exec_module(mod)
    return mod


@needs_vtest
def test_cpu_smoke_writes_every_section(tmp_path, capsys):
    out = tmp_path / "report.json"
    threads = torch.get_num_threads()
    try:
        rc = _gpu_check().main(["--cpu-smoke", "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    assert rc == 0, capsys.readouterr()
    report = json.loads(out.read_text())
    assert report["smoke"] is True
    for name in ("environment", "network", "parity", "end_to_end", "realfootage"):
        assert name in report and "error" not in report[name], (name, report.get(name))
    assert report["environment"]["device"] == "cpu" and "ort_providers" in report["environment"]
    rows = report["network"]
    assert {r["mode"] for r in rows} == {"fp32 eager", "fp16 + CUDA graph"}
    assert all(r["ms"] > 0 and r["captures"] == 1 for r in rows)
    par = report["parity"]
    assert par["matched"] > 0 and par["same_people"] is True, par
    assert set(par["max_rel_map_error"]) == {"center_map", "joint_maps", "params_maps"}
    e2e = report["end_to_end"]
    cases = [k for k in e2e if k != "clip"]
    assert len(cases) == 3
    for k in cases:
        assert e2e[k]["rc"] == 0 and e2e[k]["frames"] == 3 and e2e[k]["fps"] > 0, (k, e2e[k])
        assert {"inference", "render", "encode"} <= set(e2e[k]["stages_ms"]), e2e[k]
        assert "torch cpu" in e2e[k]["model"]
    assert {"nanodet", "blazepose_full"} <= set(report["realfootage"])
    assert all(r["ms"] > 0 for r in report["realfootage"].values())
    assert report["realfootage"]["nanodet"]["input"] == [1, 3, 256, 416]  # the detector's input for that frame


def test_the_realfootage_rows_time_the_detector_at_a_real_frame_s_inputs():
    """At 1280x720 the detector runs a 512 first pass and a 704 fine pass: both are timed, at those shapes (a
    size-free graph fed 1x1 would time nothing), and the landmark networks at their fixed crop."""
    from dataclasses import replace

    mod = _gpu_check()
    rows = mod.realfootage(replace(mod.SMOKE, frame_size=(1280, 720)))
    assert rows["nanodet"]["input"] == [1, 3, 288, 512] and rows["nanodet_fine"]["input"] == [1, 3, 416, 704]
    assert rows["blazepose_full"]["input"] == rows["blazepose_lite"]["input"] == [1, 256, 256, 3]
    assert all(r["ms"] > 0 for r in rows.values())


def test_without_a_gpu_the_full_check_refuses_in_one_line(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    rc = _gpu_check().main(["--out", str(tmp_path / "r.json")])
    err = capsys.readouterr().err.strip()
    assert rc == 4 and err.startswith("error: no CUDA device") and "--cpu-smoke" in err and "\n" not in err
    assert not (tmp_path / "r.json").exists()


def test_unknown_section_is_refused(tmp_path, capsys):
    rc = _gpu_check().main(["--cpu-smoke", "--sections", "network,bogus", "--out", str(tmp_path / "r.json")])
    assert rc == 2 and "bogus" in capsys.readouterr().err
