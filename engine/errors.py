"""Error types shared by the engine, exporter and app.

Every user-facing failure is an :class:`AppError` whose message is one actionable line (what was wrong, what to do).
The CLI prints ``str(err)`` and exits with ``err.exit_code``; tracebacks only appear with ``--debug``.
"""

from __future__ import annotations


class AppError(Exception):
    """Base class: a one-line, user-facing failure."""

    exit_code = 1


class ConfigError(AppError):
    """Contradictory or invalid options."""

    exit_code = 2


class ModelFileError(AppError):
    """A checkpoint, body-model file or exported artifact that is missing, malformed or of the wrong kind."""

    exit_code = 3


class BackendError(AppError):
    """An inference backend that cannot be used on this machine."""

    exit_code = 4


class CaptureError(AppError):
    """A camera, video, stream or image source that cannot be opened or read."""

    exit_code = 5


class OutputError(AppError):
    """An output path that cannot be written (checked before processing starts)."""

    exit_code = 6


class ExportError(AppError):
    """An export (ONNX / TensorRT) that failed or did not pass its parity check."""

    exit_code = 7
