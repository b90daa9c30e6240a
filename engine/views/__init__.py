"""DuckDB views over the Parquet cache and the run outputs.

The view definitions are the ``*.sql`` files of this package, applied in file-name order
(``database``); this module only lists them, so that recording them (an MLflow artifact)
imports nothing heavy.
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable


def sql_files() -> list[Traversable]:
    """The view definitions shipped in this package (``engine/views/*.sql``), by name."""
    found = (f for f in resources.files(__name__).iterdir() if f.name.endswith(".sql"))
    return sorted(found, key=lambda f: f.name)
