"""The report's user error, importable without the report's libraries."""

from __future__ import annotations


class ReportError(ValueError):
    """A report cannot be rendered from the output folder (a file is missing); one line."""
