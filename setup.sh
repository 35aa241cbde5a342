#!/usr/bin/env bash
# One-time set-up on a fresh Debian/Ubuntu machine (CPU): system libraries, a virtual environment in .venv,
# and the pinned CPU Python stack. Safe to re-run: it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES=(
  libusb-1.0-0                                   # import open3d
  libgl1 libegl1 libgl1-mesa-dri libegl-mesa0 libglx-mesa0 libgbm1   # Open3D / Qt through Mesa (software GL)
  libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxkbcommon-x11-0 libxcb-image0 libxcb-render-util0
  libxcb-randr0 libxcb-shape0 libxcb-xfixes0 libxcb-cursor0           # PyQt5's xcb platform plugin
  xvfb xauth x11-utils                           # virtual display for the GUI tests
  opencv-doc                                     # real multi-person footage (vtest.avi) used by tests
)

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing system packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
else
  echo "setup: not root or no apt-get; install these system packages yourself if missing: ${APT_PACKAGES[*]}"
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# requirements pin torch==2.13.0 (the CPU wheel); an unpinned torch would pull a multi-GB CUDA build
.venv/bin/python -m pip install -q -r requirements-dev.txt 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
.venv/bin/python -c "import torch, onnxruntime, cv2, PyQt5, open3d; print('setup: ok, torch', torch.__version__, '| onnxruntime', onnxruntime.__version__, '| opencv', cv2.__version__)"
