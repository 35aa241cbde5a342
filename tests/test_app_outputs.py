"""Result files (``--save-npz``): the flat layout is unchanged, a run's file is checkpointed while it runs (a killed
run keeps a loadable file), a full disk stops only this output with a clear error and no partial file, and
``--npz-format romp`` is read by a reader written from simple-romp's documented format."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import numpy as np
import pytest

import app.paths as app_paths
from app.outputs import NPZ_KEYS, NpzSink
from engine.errors import OutputError
from engine.types import Meshes, People

J, V = 24, 50  # joints and vertices of a stand-in body


def person_rows(n: int, seed: int, first_id: int = 0) -> tuple[People, Meshes]:
    rng = np.random.default_rng(seed)
    f32 = np.float32
    people = People(center_preds=rng.random((n, 2), f32) * 64, center_confs=rng.random(n, f32),
                    cam=rng.random((n, 3), f32), global_orient=rng.random((n, 3), f32),
                    body_pose=rng.random((n, 69), f32), betas=rng.random((n, 10), f32),
                    cam_trans=rng.random((n, 3), f32), track_ids=np.arange(first_id, first_id + n, dtype=np.int64))
    meshes = Meshes(rng.random((n, V, 3), f32), rng.random((n, J, 3), f32), np.zeros((1, 3), np.int32),
                    rng.random((n, J, 2), f32))
    return people, meshes


def feed(sink: NpzSink, counts: list[int]) -> list[tuple[People, Meshes]]:
    fed = []
    for i, n in enumerate(counts):
        people, meshes = person_rows(n, seed=i)
        sink.add(i, f"img{i}", people, meshes)
        fed.append((people, meshes))
    return fed


# ------------------------------------------------------------------------------------------------- flat layout
def test_flat_video_file_keeps_its_format(tmp_path):
    sink = NpzSink(tmp_path, per_frame=False, stem="clip", save_verts=True, flush_every=0)
    fed = feed(sink, [2, 0, 3])
    assert sink.close() == [tmp_path / "clip.npz"] and sink.error is None
    with np.load(tmp_path / "clip.npz") as d:  # no pickles needed
        assert set(d.files) == {*NPZ_KEYS, "verts", "frame_ids", "num_frames"}
        assert d["frame_ids"].tolist() == [0, 0, 2, 2, 2] and int(d["num_frames"]) == 3
        np.testing.assert_array_equal(d["betas"], np.concatenate([p.betas for p, _ in fed]))
        np.testing.assert_array_equal(d["verts"], np.concatenate([m.vertices for _, m in fed]))


def test_video_file_is_checkpointed_while_the_run_goes_on(tmp_path):
    """What a SIGKILL leaves: the last checkpoint, a complete file in the normal format."""
    sink = NpzSink(tmp_path, per_frame=False, stem="clip", flush_every=0.05)
    feed(sink, [1, 2])
    time.sleep(0.1)
    feed(sink, [1])  # this add is due for a checkpoint: frames 0..2 go to disk in the background
    deadline = time.monotonic() + 10
    while sink.checkpoint_frames < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    with np.load(tmp_path / "clip.npz") as d:
        assert int(d["num_frames"]) == 3 and len(d["center_confs"]) == 4
    assert not list(tmp_path.glob("*.tmp*"))
    sink.close()


# --------------------------------------------------------------------------------------------------- disk full
class FullDisk:
    """A file that takes ``room`` bytes, then fails as a full disk does (the bytes written stay on disk)."""

    def __init__(self, path: Path, room: int) -> None:
        self.f = open(path, "wb")  # noqa: SIM115
        self.room = room

    def write(self, b) -> int:
        data = bytes(memoryview(b))
        if len(data) > self.room:
            self.f.write(data[:self.room])
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.f.close()


def test_full_disk_removes_the_partial_file_keeps_the_last_checkpoint_and_says_so(tmp_path, monkeypatch):
    sink = NpzSink(tmp_path, per_frame=False, stem="clip", flush_every=0)
    feed(sink, [2])
    sink._write(list(sink._frames))  # a checkpoint with one frame
    feed(sink, [1, 1])
    monkeypatch.setattr(app_paths, "open", lambda p, mode="r": FullDisk(p, 300), raising=False)
    assert sink.close() == []
    assert isinstance(sink.error, OutputError)
    assert "disk full" in str(sink.error) and "first 1 of 3 frames" in str(sink.error)
    assert [f.name for f in tmp_path.iterdir()] == ["clip.npz"]  # the partial temporary file is gone
    with np.load(tmp_path / "clip.npz") as d:
        assert int(d["num_frames"]) == 1


def test_full_disk_with_images_stops_this_output_only(tmp_path, monkeypatch):
    sink = NpzSink(tmp_path, per_frame=True, stem="imgs")
    feed(sink, [1])
    monkeypatch.setattr(app_paths, "open", lambda p, mode="r": FullDisk(p, 100), raising=False)
    feed(sink, [1, 1])  # no exception: the pipeline and the other outputs go on
    assert "disk full" in str(sink.error) and "1 of 2 result files" in str(sink.error)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["img0.npz"]


# ------------------------------------------------------------------------------------------------- romp layout
def romp_results(path: Path):
    """simple-romp's documented way to read its results (the only place pickles are read: our own file)."""
    return np.load(path, allow_pickle=True)["results"][()]


def check_romp_frame(r: dict, people: People, meshes: Meshes) -> None:
    n = len(people)
    assert r["smpl_betas"].shape == (n, 10) and "betas" not in r
    assert r["smpl_thetas"].shape == (n, 72) and r["body_pose"].shape == (n, 69)
    assert r["cam"].shape == (n, 3) and r["cam_trans"].shape == (n, 3) and r["global_orient"].shape == (n, 3)
    assert r["center_preds"].shape == (n, 2) and r["center_confs"].shape == (n, 1)
    assert r["joints"].shape == (n, J, 3) and r["pj2d_org"].shape == (n, J, 2)
    assert r["track_ids"].dtype == np.int32
    np.testing.assert_array_equal(r["smpl_betas"], people.betas)
    np.testing.assert_array_equal(r["smpl_thetas"], people.smpl_thetas)
    np.testing.assert_array_equal(r["pj2d_org"], meshes.pj2d_org)


def test_romp_layout_for_images(tmp_path):
    sink = NpzSink(tmp_path, per_frame=True, stem="imgs", fmt="romp")
    fed = feed(sink, [2, 1])
    sink.close()
    for i, (people, meshes) in enumerate(fed):
        check_romp_frame(romp_results(tmp_path / f"img{i}.npz"), people, meshes)


def test_romp_layout_for_a_video(tmp_path):
    sink = NpzSink(tmp_path, per_frame=False, stem="clip", fmt="romp", save_verts=True, flush_every=0)
    fed = feed(sink, [2, 3])
    sink.close()
    results = romp_results(tmp_path / "clip.npz")
    assert sorted(results) == ["00000000.png", "00000001.png"]
    for name, (people, meshes) in zip(sorted(results), fed):
        check_romp_frame(results[name], people, meshes)
        np.testing.assert_array_equal(results[name]["verts"], meshes.vertices)
    seq = np.load(tmp_path / "clip.npz", allow_pickle=True)["sequence_results"][()]
    assert sorted(seq) == [0, 1, 2]  # track ids
    assert seq[0]["frame_id"] == [0, 1] and seq[2]["frame_id"] == [1]
    np.testing.assert_array_equal(seq[1]["smpl_betas"][1], fed[1][0].betas[1])


def test_npz_format_flag(tmp_path):
    from app.config import build_cfg, build_parser
    from engine.errors import ConfigError

    args = build_parser().parse_args(["--input", "x.mp4", "--headless", "--npz-format", "romp"])
    with pytest.raises(ConfigError, match="--npz-format needs --save-npz"):
        build_cfg(args)
    args = build_parser().parse_args(["--input", "x.mp4", "--headless", "--save-npz", str(tmp_path),
                                      "--npz-format", "romp"])
    assert build_cfg(args).outputs.npz_format == "romp"
