"""Point-in-time features from factor expressions, and forward-return labels.

A feature is one expression in Qlib's syntax (``Mean($close, 5) / $close``), parsed once
(``parser``) into a tree of operators (``operators``, ``windows``) and compiled for each
engine: lazy Polars (``polars_compiler``, the run's path, ``panel.expression_panel``) and
DuckDB SQL (``sql_compiler.panel_sql``, the ``features`` view of ``engine sql``). Sets of
expressions (``sets``): ``core``, ``alpha158`` and a user's TOML file.

Windows are counted in rows of a symbol's own trading history and a value is null until
its window is full. A feature dated t uses only rows dated <= t; labels (``fwd_ret_*``)
look forward by construction and are never features.
"""

from __future__ import annotations

# The Polars engine that collects feature panels. The in-memory engine rolls each window
# over the whole column; the streaming engine (Polars' default) rolls morsel by morsel, so
# its last bits, and the panel, would change with the number of threads.
ENGINE = "in-memory"
DEFAULT_LABEL_HORIZONS: tuple[int, ...] = (5, 21, 63)


class FeatureError(ValueError):
    """A feature set or expression the engine cannot use; the message names it."""


def label_name(horizon: int) -> str:
    """The label column of ``horizon`` trading days: ``fwd_ret_{h}d``."""
    return f"fwd_ret_{horizon}d"
