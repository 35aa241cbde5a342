"""Command line entry point (``python run_app.py``).

Every user-facing failure is an :class:`~engine.errors.AppError`: one line on stderr, a distinct exit code, and
tracebacks only with ``--debug``. Outputs are finalised before an error is reported.
"""

from __future__ import annotations

import logging
import sys

from engine.errors import AppError

from .config import build_cfg, build_parser

log = logging.getLogger("app")


def _setup_logging(debug: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("torch", "onnxscript", "onnx_ir", "PIL", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.debug)
    cfg = build_cfg(args)
    if cfg.headless:
        from .headless import run_headless
        from .session import build_session

        session = build_session(cfg, render=cfg.record is not None)
        return run_headless(session)
    from .gui import run_gui

    return run_gui(cfg, quit_at_end=args.quit_at_end)


def main(argv: list[str] | None = None) -> int:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        return run(argv)
    except AppError as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
