"""Download the photos of the two extra hand-boxed sets (group photos, wheel photos) next to their boxes.

Why a download and not files in the repository: these photos ship as sample images inside registry packages whose
licences do not clearly cover redistribution, so only their boxes are kept here. The photos are taken from the exact
package versions the boxes were drawn on and checked by sha256, so a score on them means the same images.
It needs ``npm`` (for the npm package) and this Python's ``pip``; the app itself never downloads anything.

    python benchmarks/photo_sets/fetch.py
    .venv/bin/python benchmarks/realfootage_eval.py --modes cold --zoom 1 1.3 \
        --annotations benchmarks/photo_sets/group_boxes.json
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Photo:
    folder: str  # next to the boxes: the boxes file's images_dir
    name: str
    registry: str  # "npm" or "pypi"
    package: str  # name==version (pypi) or name@version (npm)
    member: str  # path inside the package archive
    sha256: str


PHOTOS: tuple[Photo, ...] = (
    *(Photo("group", f"sample{i}.jpg", "npm", "@vladmandic/face-api@1.7.15", f"package/demo/sample{i}.jpg", h)
      for i, h in enumerate((
          "8ecae4b267b2d3169e06e00c7dee97097aa2a94635d45216f7732a5f4943cb51",
          "7d2b60ae6f13bf30f422e04df87451081a02c83de469056f25afb44b7000c691",
          "8eb081c9efb14370fa94d9feab9e5fbeafd19a627491853a80c2bf67f7ffa936",
          "729efa5923061d40eb4ed5f267a18cc7b8ba6f852bb2757b16d8b7e4937476fc",
          "6d45095ebb182d8f975c0790e0e4eefd86fbb40609cf4b271776d92e12662938",
          "9baad80f9d5e306fb9b8c0913d44445f1e95848df317530efb03d0934c57ba87"), start=1)),
    Photo("wheel", "bus.jpg", "pypi", "ultralytics==8.4.190", "ultralytics/assets/bus.jpg",
          "c02019c4979c191eb739ddd944445ef408dad5679acab6fd520ef9d434bfbc63"),
    Photo("wheel", "zidane.jpg", "pypi", "ultralytics==8.4.190", "ultralytics/assets/zidane.jpg",
          "16d73869e3267a7d4ed00de8e860833bd1657c1b252e94c0c348277adc7b6edb"),
    Photo("wheel", "t1.jpg", "pypi", "insightface==2.1", "insightface/data/images/t1.jpg",
          "47f682e945b659f93a9e490b9c9c4a2a864abe64dace9e1a2893845ddfd69489"),
)


def _download(photo: Photo, into: Path) -> Path:
    """The package archive (npm tarball or wheel) in ``into``."""
    if photo.registry == "npm":
        cmd = ["npm", "pack", photo.package, "--loglevel=error", "--pack-destination", str(into)]
    else:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-q", "-d", str(into),
               photo.package]
    run = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if run.returncode != 0:  # the tool's own last words say why (no network, no npm, no such version)
        lines = [ln.strip() for ln in run.stderr.splitlines() if ln.strip() and "complete log" not in ln]
        said = next((ln for ln in lines if "error" in ln.lower()), lines[-1] if lines else "no message")
        raise RuntimeError(f"could not download {photo.package} ({' '.join(cmd[:3])}): {said}")
    found = sorted(p for p in into.iterdir() if p.suffix in (".tgz", ".whl"))
    if len(found) != 1:
        raise RuntimeError(f"expected one archive for {photo.package}, got {[p.name for p in found]}")
    return found[0]


def _member(archive: Path, member: str) -> bytes:
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z:
            return z.read(member)
    with tarfile.open(archive) as t:
        f = t.extractfile(member)
        if f is None:
            raise RuntimeError(f"{member} is not a file in {archive.name}")
        return f.read()


def fetch(root: Path = HERE) -> list[Path]:
    """Put every photo under ``root``/<folder>/ (skipping those already there with the right sha256)."""
    written, archives = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for photo in PHOTOS:
            out = root / photo.folder / photo.name
            if out.is_file() and hashlib.sha256(out.read_bytes()).hexdigest() == photo.sha256:
                continue
            if photo.package not in archives:
                folder = Path(tmp) / str(len(archives))
                folder.mkdir()
                archives[photo.package] = _download(photo, folder)
            data = _member(archives[photo.package], photo.member)
            if hashlib.sha256(data).hexdigest() != photo.sha256:
                raise RuntimeError(f"{photo.package}:{photo.member} is not the photo the boxes were drawn on "
                                   f"(sha256 differs)")
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(data)
            written.append(out)
    return written


def main() -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    try:
        written = fetch()
    except (RuntimeError, OSError) as e:
        print(f"fetch.py: {e}", file=sys.stderr)
        return 1
    print(f"{len(written)} photos written, {len(PHOTOS) - len(written)} already there, under {HERE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
