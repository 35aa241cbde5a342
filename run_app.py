#!/usr/bin/env python3
"""Real-time multi-person 3D human mesh app. See README.md; ``python run_app.py --help``."""

import sys

from app.cli import main

if __name__ == "__main__":
    sys.exit(main())
