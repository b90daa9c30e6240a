"""DuckDB views over the Parquet cache and the run outputs.

The view definitions are the ``*.sql`` files of this package and the ``feature_panel``
view, generated from the feature set's expressions (``FEATURE_VIEW_FILE``, between the
staging views and the views that read the panel), applied in file-name order
(``database``); this module only lists them, so that recording them (an MLflow artifact)
imports nothing heavy, and holds the default row cap of ad hoc queries, so that the
command line can show it without importing DuckDB.
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.features.sets import FeatureSet

DEFAULT_MAX_ROWS = 10_000  # rows an ad hoc query returns unless told otherwise
FEATURE_VIEW_FILE = "20_feature_panel.sql"  # the generated view's name among the SQL files


def sql_files() -> list[Traversable]:
    """The view definitions shipped in this package (``engine/views/*.sql``), by name."""
    found = (f for f in resources.files(__name__).iterdir() if f.name.endswith(".sql"))
    return sorted(found, key=lambda f: f.name)


def feature_view_sql(features: FeatureSet) -> str:
    """The ``feature_panel`` view of ``features``: date, symbol, adj_close, history_rows,
    the factors, the labels and their end dates (``engine.features.sql_compiler.panel_sql``
    over the staging views ``prices`` and ``index``)."""
    body = feature_panel_sql(features)
    return (
        f"-- The feature panel of the feature set {features.source!r}, compiled from its "
        "expressions\n-- by engine.features.sql_compiler.panel_sql (docs/features.md).\n\n"
        f"create or replace view feature_panel as\n{body};\n"
    )


def feature_panel_sql(features: FeatureSet, symbol_range: bool = False) -> str:
    """The SELECT of the ``feature_panel`` view; with ``symbol_range``, of the symbols
    between the parameters ``$first`` and ``$last`` only (a batch)."""
    from engine.features import DEFAULT_LABEL_HORIZONS
    from engine.features.panel import panel_outputs
    from engine.features.sql_compiler import panel_sql

    outputs = panel_outputs(features, DEFAULT_LABEL_HORIZONS)
    return panel_sql(outputs, DEFAULT_LABEL_HORIZONS, symbol_range=symbol_range)
