"""The daily market panel's fast paths equal their plain definitions: the price matrix of
prices sorted by (symbol, date), symbol batches, and the index levels on the calendar."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from engine.pipeline.market import index_levels, sorted_price_matrix, symbol_batches
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


def price_matrix(prices: pl.DataFrame, calendar: np.ndarray, symbols: np.ndarray) -> np.ndarray:
    """(days x symbols) Adj Close, NaN where a symbol has no row: a binary search per row."""
    out = np.full((len(calendar), len(symbols)), np.nan)
    day = np.searchsorted(calendar, prices[DATE].to_numpy())
    symbol = np.searchsorted(symbols.astype(str), prices[SYMBOL].to_numpy().astype(str))
    out[day, symbol] = prices[ADJ_CLOSE].to_numpy()
    return out


@pytest.mark.parametrize("rows", [30, 10_000])
def test_the_sorted_price_matrix_is_the_price_matrix(rows: int):
    for seed in range(5):
        frame = prices(seed)
        calendar, symbols, matrix = sorted_price_matrix(frame.lazy(), rows)
        assert np.array_equal(calendar, frame[DATE].unique().sort().to_numpy())
        assert np.array_equal(symbols, frame[SYMBOL].unique().sort().to_numpy())
        expected = price_matrix(frame, calendar, symbols)
        assert matrix.flags.c_contiguous
        assert np.array_equal(matrix, expected, equal_nan=True)


@pytest.mark.parametrize("rows", [1, 50, 200, 10_000])
def test_symbol_batches_are_whole_symbols_in_order(rows: int):
    frame = prices(4)
    batches = [b.collect() for b in symbol_batches(frame.lazy(), rows)]
    assert pl.concat(batches).equals(frame)
    symbols = [set(b[SYMBOL]) for b in batches]
    assert all(a.isdisjoint(b) for i, a in enumerate(symbols) for b in symbols[i + 1 :])
    if rows >= frame.height:
        assert len(batches) == 1
    elif rows > 1:
        assert 1 < len(batches) < frame[SYMBOL].n_unique()  # several symbols per batch
    else:
        assert len(batches) == frame[SYMBOL].n_unique()


def test_symbol_batches_refuse_prices_not_sorted_by_symbol():
    frame = prices(5)
    shuffled = pl.concat([frame.tail(30), frame.head(frame.height - 30)])
    with pytest.raises(ValueError, match="sorted by"):
        symbol_batches(shuffled.lazy(), 50)


def test_index_levels_fill_gaps_inside_the_file_only():
    calendar = np.arange(np.datetime64("2020-01-01"), np.datetime64("2020-01-08"))
    days = [np.datetime64("2020-01-02"), np.datetime64("2020-01-03"), np.datetime64("2020-01-05")]
    index = pl.DataFrame({"date": np.array(days), "sp500": [1.0, 2.0, 3.0]})
    np.testing.assert_array_equal(
        index_levels(index, calendar), [np.nan, 1.0, 2.0, 2.0, 3.0, np.nan, np.nan]
    )
