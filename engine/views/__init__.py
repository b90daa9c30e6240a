"""DuckDB views over the Parquet cache and the run outputs.

The view definitions are the ``*.sql`` files of this package, applied in file-name order
(``database``); this module only lists them, so that recording them (an MLflow artifact)
imports nothing heavy, and holds the default row cap of ad hoc queries, so that the
command line can show it without importing DuckDB.
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable

DEFAULT_MAX_ROWS = 10_000  # rows an ad hoc query returns unless told otherwise


def sql_files() -> list[Traversable]:
    """The view definitions shipped in this package (``engine/views/*.sql``), by name."""
    found = (f for f in resources.files(__name__).iterdir() if f.name.endswith(".sql"))
    return sorted(found, key=lambda f: f.name)
