"""The feature panel of a set, lazily in Polars: the engine's features and labels.

Columns: date, symbol, adj_close, history_rows, the set's factors, then per horizon h the
label ``fwd_ret_{h}d`` (itself an expression, ``Ref($close, -h) / $close - 1``) and
``label_end_{h}d`` (the date of row t+h, null when the symbol has none); sorted by
(symbol, date) like ``prices``.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from engine.features import DEFAULT_LABEL_HORIZONS, FeatureError, label_name
from engine.features.operators import Node
from engine.features.parser import parse
from engine.features.plan import Plan, build_plan
from engine.features.polars_compiler import (
    POSITION,
    ROW,
    ROWS_LEFT,
    compile_level,
    field_column,
)
from engine.features.sets import FeatureSet
from engine.schema import ADJ_CLOSE, CLOSE, DATE, HIGH, INDEX_LEVEL, LOW, OPEN, SYMBOL, VOLUME

HISTORY = "history_rows"
DEFAULT_HORIZONS = DEFAULT_LABEL_HORIZONS
# A panel is computed one batch of whole symbols at a time (a window never crosses a
# symbol): BATCH_ROWS rows a batch for a plan of up to BATCH_COLUMNS columns (core: ~40),
# proportionally fewer for a wider one (Alpha158: ~300), so that a batch holds about as
# many values whatever the set.
BATCH_ROWS = 500_000
BATCH_COLUMNS = 80


def label_expression(horizon: int) -> str:
    """fwd_ret_{h}d: the simple return from t to t+h rows, P_{t+h} / P_t - 1."""
    return f"Ref($close, -{horizon}) / $close - 1"


def label_end_name(horizon: int) -> str:
    return f"label_end_{horizon}d"


def panel_outputs(features: FeatureSet, horizons: Sequence[int]) -> list[tuple[str, Node]]:
    """(column, tree) of every factor, then of every label."""
    if any(h <= 0 for h in horizons):
        raise FeatureError(f"label horizons must be > 0, got {list(horizons)}")
    labels = [(label_name(h), parse(label_name(h), label_expression(h), label=True))
              for h in horizons]  # fmt: skip
    return [*((f.name, f.tree) for f in features.factors), *labels]


def plan_width(features: FeatureSet) -> int:
    """Columns the panel of ``features`` computes (its plan's, outputs and intermediate
    columns): what a batch of rows costs in memory, per row, in units of 8 bytes."""
    return len(build_plan(panel_outputs(features, DEFAULT_HORIZONS)).columns)


def batch_rows(features: FeatureSet) -> int:
    """Rows of whole symbols per batch of ``features``' panel (Polars or DuckDB)."""
    return max(1, BATCH_ROWS * BATCH_COLUMNS // max(plan_width(features), BATCH_COLUMNS))


def expression_panel(
    prices: pl.LazyFrame,
    index: pl.LazyFrame,
    features: FeatureSet,
    horizons: Sequence[int] = DEFAULT_HORIZONS,
    min_history: int = 1,
) -> pl.LazyFrame:
    """The panel of ``features`` over ``prices`` (sorted by (symbol, date); the cache's
    columns) and ``index`` (date, sp500), lazy. ``min_history`` keeps the rows with
    ``history_rows >= min_history``."""
    plan = build_plan(panel_outputs(features, horizons))
    frame = with_fields(with_positions(prices), index, plan)
    for level in range(len(plan.levels)):
        frame = frame.with_columns(compile_level(plan, level))
    outputs = [pl.col(plan.columns[node]).alias(name) for name, node in plan.outputs]
    ends = [pl.when(pl.col(ROWS_LEFT) >= h).then(pl.col(DATE).shift(-h)).alias(label_end_name(h))
            for h in horizons]  # fmt: skip
    columns = [pl.col(DATE), pl.col(SYMBOL), pl.col(ADJ_CLOSE), (pl.col(ROW) + 1).alias(HISTORY),
               *outputs, *ends]  # fmt: skip
    if min_history > 1:
        return frame.select(c.filter(pl.col(ROW) + 1 >= min_history) for c in columns)
    return frame.select(columns)


def with_positions(prices: pl.LazyFrame) -> pl.LazyFrame:
    """Add _pos (row in the panel), _row (row in the symbol) and _rows_left (rows after
    it in the symbol), from the symbol boundaries of the sorted column."""
    position = pl.int_range(pl.len(), dtype=pl.Int64)
    starts = pl.col(SYMBOL) != pl.col(SYMBOL).shift(1)
    ends = pl.col(SYMBOL) != pl.col(SYMBOL).shift(-1)
    return prices.with_columns(
        position.alias(POSITION),
        (position - pl.when(starts.fill_null(True)).then(position).forward_fill()).alias(ROW),
        (pl.when(ends.fill_null(True)).then(position).backward_fill() - position).alias(ROWS_LEFT),
    )


def with_fields(frame: pl.LazyFrame, index: pl.LazyFrame, plan: Plan) -> pl.LazyFrame:
    """Add the columns of the fields ``plan`` reads: adjusted OHLC, volume, index level."""
    adjust = pl.col(ADJ_CLOSE) / pl.col(CLOSE)
    sources = {
        "open": pl.col(OPEN) * adjust,
        "high": pl.col(HIGH) * adjust,
        "low": pl.col(LOW) * adjust,
        "close": pl.col(ADJ_CLOSE),
        "volume": pl.col(VOLUME),
    }
    exprs = [sources[f].alias(field_column(f)) for f in plan.fields if f != "index"]
    if "index" in plan.fields:
        exprs.append(index_level(index).alias(field_column("index")))
    return frame.with_columns(exprs) if exprs else frame


def index_level(index: pl.LazyFrame) -> pl.Expr:
    """The index level of each row's date, null where the index has none: looked up by
    date (the index has ~4k rows; a join would gather the whole panel again)."""
    levels = index.select(DATE, INDEX_LEVEL).drop_nulls().unique(DATE).collect()
    return pl.col(DATE).replace_strict(
        levels[DATE], levels[INDEX_LEVEL], default=None, return_dtype=pl.Float64
    )
