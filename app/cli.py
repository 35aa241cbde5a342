"""Command line entry point (``python run_app.py``).

Every user-facing failure is an :class:`~engine.errors.AppError`: one line on stderr, a distinct exit code, and
tracebacks only with ``--debug``. Outputs are finalised before an error is reported.

stdout carries only the summary, so a reader that goes away (``| head -1``, a terminal closed with SIGHUP) must not
turn a finished run into a traceback: the text is dropped and the exit code stays the run's own (0 when every output
was written), which is what pipelines with ``set -o pipefail`` expect.
"""

from __future__ import annotations

import logging
import os
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

        session = build_session(cfg, render=cfg.outputs.record is not None)
        return run_headless(session)
    from .gui import run_gui

    return run_gui(cfg)


class ReaderSafeStream:
    """A text stream whose writes never raise because the reader is gone (EPIPE, or EIO from a hung-up terminal).

    The first failed write points the file descriptor at /dev/null, so the interpreter's own flush at exit does not
    print "Exception ignored ... BrokenPipeError" either.
    """

    def __init__(self, stream) -> None:
        self._stream = stream
        self.lost = False

    def _drop(self) -> None:
        self.lost = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):  # no real descriptor (an in-memory stream)
            pass

    def write(self, text: str) -> int:
        if not self.lost:
            try:
                return self._stream.write(text)
            except (OSError, ValueError):
                self._drop()
        return len(text)

    def flush(self) -> None:
        if not self.lost:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                self._drop()

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def main(argv: list[str] | None = None) -> int:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = ReaderSafeStream(out), ReaderSafeStream(err)
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
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = out, err
