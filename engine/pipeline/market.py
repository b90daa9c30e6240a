"""The daily market panel: every symbol's daily returns, its sector, and both benchmarks'
daily returns (the S&P 500 price index and the equal-weight universe), on the archive's
trading calendar. The portfolio and the backtest read it; the model frame does not.
"""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl

from engine.data.archive import Archive
from engine.features import ENGINE
from engine.research import backtest as bt
from engine.schema import ADJ_CLOSE, DATE, INDEX_LEVEL, SECTOR, SYMBOL

UNKNOWN_SECTOR = "Unknown"
PRICE_BATCH_ROWS = 500_000  # price rows of whole symbols collected at once


def market(archive: Archive) -> bt.Market:
    """The daily returns panel, sectors and both benchmarks' daily returns."""
    calendar, symbols, matrix = sorted_price_matrix(archive.prices)  # the archive's order
    returns = bt.simple_returns(matrix)
    del matrix
    sectors = (
        pl.DataFrame({SYMBOL: symbols})
        .join(archive.companies.select(SYMBOL, SECTOR), on=SYMBOL, how="left", maintain_order="left")[SECTOR]
        .fill_null(UNKNOWN_SECTOR)
    )  # fmt: skip
    names = tuple(sorted(set(sectors.to_list())))
    return bt.Market(
        calendar=calendar,
        symbols=symbols,
        returns=returns,
        sector_code=np.searchsorted(np.array(names), sectors.to_numpy()),
        sector_names=names,
        index=bt.simple_returns(index_levels(archive.index.collect(), calendar)[:, None])[:, 0],
        universe=bt.equal_weight_universe(returns),
    )


def sorted_price_matrix(
    prices: pl.LazyFrame, rows: int = PRICE_BATCH_ROWS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(calendar, symbols, prices) of ``prices`` sorted by (symbol, date): the sorted
    trading days (datetime64[D]), the symbols in order, and the (days x symbols) Adj Close,
    NaN where a symbol has no row.

    Days are placed by their offset from the first day and symbols by their run, without
    sorting or searching. The matrix is filled one batch of whole symbols at a time
    (``symbol_batches``), so the collected columns (~28 bytes a price row) never all
    exist at once.
    """
    days = prices.select(pl.col(DATE).unique().to_physical()).collect(engine=ENGINE)
    days = days.to_series().to_numpy()
    if days.size == 0:
        return np.array([], "datetime64[D]"), np.array([], object), np.empty((0, 0))
    first = int(days.min())
    present = np.zeros(int(days.max()) - first + 1, dtype=bool)
    present[days - first] = True
    position = np.cumsum(present) - 1  # index in the calendar of each day since ``first``
    calendar = (np.flatnonzero(present) + first).astype("datetime64[D]")
    blocks, symbols = [], []
    for batch in symbol_batches(prices, rows):
        part = batch.select(pl.col(DATE).to_physical(), SYMBOL, ADJ_CLOSE).collect(engine=ENGINE)
        runs = part[SYMBOL].rle_id().to_numpy()  # sorted: run i = the batch's symbol i
        names = part[SYMBOL].gather(np.flatnonzero(np.r_[True, runs[1:] != runs[:-1]]))
        block = np.full((len(names), len(calendar)), np.nan)
        block[runs, position[part[DATE].to_numpy() - first]] = part[ADJ_CLOSE].to_numpy()
        blocks.append(block)
        symbols.extend(names.to_list())
    matrix = np.ascontiguousarray(np.concatenate(blocks).T)
    return calendar, np.array(symbols, dtype=object), matrix


def symbol_batches(prices: pl.LazyFrame, rows: int) -> list[pl.LazyFrame]:
    """``prices`` (sorted by (symbol, date)) as slices of whole symbols of about ``rows``
    rows each, in order; one slice when it is smaller. Only the symbol column is read here;
    each slice reads its own rows of the Parquet cache when collected."""
    runs = prices.select(pl.col(SYMBOL).rle().struct.field("len"), pl.col(SYMBOL).n_unique())
    lengths, symbols = runs.collect(engine=ENGINE).get_columns()
    if len(lengths) != (symbols[0] if len(symbols) else 0):  # a symbol in two runs
        raise ValueError("prices must be sorted by (symbol, date): a symbol's rows are apart")
    ends = np.cumsum(lengths.to_numpy())
    if ends.size == 0 or ends[-1] <= rows:
        return [prices]
    cuts = np.unique(np.searchsorted(ends, np.arange(rows, ends[-1], rows), side="left"))
    bounds = [0, *(int(ends[c]) for c in cuts if ends[c] < ends[-1]), int(ends[-1])]
    return [prices.slice(a, b - a) for a, b in itertools.pairwise(bounds)]


def index_levels(index: pl.DataFrame, calendar: np.ndarray) -> np.ndarray:
    """Index level on each calendar day; NaN outside the index file's date range. A day
    missing inside the range carries the previous level (flat that day, the move lands
    on the next), so the index's total return over its range is kept."""
    levels = pl.DataFrame({DATE: calendar}).join(index, on=DATE, how="left", maintain_order="left")
    inside = (pl.col(DATE) >= index[DATE].min()) & (pl.col(DATE) <= index[DATE].max())
    filled = pl.when(inside).then(pl.col(INDEX_LEVEL).forward_fill())
    return levels.select(filled.fill_null(np.nan)).to_series().to_numpy()
