#!/usr/bin/env python3
"""Real-time multi-person 3D human mesh app. See README.md; ``python run_app.py --help``."""

import os
import sys

# OpenCV's own warnings (e.g. probing a missing camera) would bury the app's one-line errors
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

from app.cli import main

if __name__ == "__main__":
    sys.exit(main())
