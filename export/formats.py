"""The export formats: the runtime's table (:mod:`engine.runtime.formats`), re-exported for the exporter CLI."""

from engine.runtime.formats import FORMATS, Format, format_for_path

__all__ = ["FORMATS", "Format", "format_for_path"]
