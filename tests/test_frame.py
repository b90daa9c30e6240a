"""The model boundary's fast paths equal their plain definitions: the date-major sort of
the panel and the price matrix of prices sorted by (symbol, date)."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl

from engine.pipeline.frame import by_date, price_matrix, sorted_price_matrix
from engine.schema import ADJ_CLOSE, DATE, SYMBOL


def prices(seed: int) -> pl.DataFrame:
    """Sorted by (symbol, date): late listings, early delistings, missing days."""
    rng = np.random.default_rng(seed)
    days = [date(2021, 1, 4) + timedelta(days=d) for d in range(60)]
    rows = []
    for s in range(12):
        alive = sorted(rng.choice(len(days), size=int(rng.integers(1, 60)), replace=False))
        rows += [(f"S{s:02d}", days[d], float(rng.uniform(1, 100))) for d in alive]
    return pl.DataFrame(rows, schema=[SYMBOL, DATE, ADJ_CLOSE], orient="row")


def test_the_sorted_price_matrix_is_the_price_matrix():
    for seed in range(5):
        frame = prices(seed)
        calendar, symbols, matrix = sorted_price_matrix(frame)
        assert np.array_equal(calendar, frame[DATE].unique().sort().to_numpy())
        assert np.array_equal(symbols, frame[SYMBOL].unique().sort().to_numpy())
        expected = price_matrix(frame, calendar, symbols)
        assert matrix.flags.c_contiguous
        assert np.array_equal(matrix, expected, equal_nan=True)


def test_by_date_is_the_sort_by_date_and_symbol():
    frame = prices(3).with_columns(x=pl.int_range(pl.len()))
    assert by_date(frame.clone()).equals(frame.sort(DATE, SYMBOL))
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=2)  # not symbol-major
    assert by_date(shuffled).equals(frame.sort(DATE, SYMBOL))
    moved = frame.clone()
    assert by_date(moved).columns == frame.columns and moved.width == 0  # moved out
