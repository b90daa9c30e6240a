"""The numpy ranking kernel against a plain per-date loop (scipy's average ranks): every
path (no null, nulls, ties, truncated keys that collide, the exact fallback), blocks of
one date to many, null bitmaps at any bit offset, and the refusal of NaN and infinities."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy.stats import rankdata

from engine.research import ranking
from engine.research.crosssection import _arrow_parts
from engine.research.ranking import DateBlocks, NullBits, unit_ranks


def reference(values: np.ndarray, null: np.ndarray, days: np.ndarray, keep: bool) -> np.ndarray:
    """(average rank - 1) / (n - 1) - 0.5 within each day, a date at a time."""
    out = np.full(len(values), np.nan if keep else 0.0)
    for day in np.unique(days):
        rows = np.flatnonzero((days == day) & ~null)
        n = len(rows)
        if n == 1:
            out[rows] = 0.0
        elif n > 1:
            out[rows] = (rankdata(values[rows], method="average") - 1) / np.float64(n - 1) - 0.5
    return out


def null_bits(null: np.ndarray, offset: int) -> NullBits | None:
    """``null`` as an Arrow validity bitmap starting at bit ``offset``."""
    if not null.any():
        return None
    valid = np.r_[np.zeros(offset, bool), ~null]
    return NullBits(np.packbits(valid, bitorder="little"), offset, int(null.sum()))


def layout(rng: np.random.Generator, dates: int, width: int) -> np.ndarray:
    """Sorted day numbers: runs of dates with ``width`` rows, and some with fewer."""
    sizes = np.where(rng.random(dates) < 0.2, rng.integers(1, width + 1, dates), width)
    return np.repeat(np.arange(dates), sizes)


def values_of(kind: str, rng: np.random.Generator, n: int) -> np.ndarray:
    if kind == "distinct":
        return rng.normal(size=n)
    # ties, signed zeros and 5e-324 (the smallest subnormal: its key differs from 0's by 1)
    values = rng.choice([-2.0, -0.0, 0.0, 1.0, 1e6, 5e-324], size=n)
    if kind == "ulps apart":  # truncated keys collide, in either order of the rows
        for _ in range(3):
            values = np.where(rng.random(n) < 0.5, np.nextafter(values, np.inf), values)
    return values


@pytest.mark.parametrize("keep_nulls", [False, True])
@pytest.mark.parametrize("kind", ["distinct", "ties", "ulps apart"])
@pytest.mark.parametrize("width", [1, 2, 7, 300])
@pytest.mark.parametrize("block_rows", [1, 64, ranking.RANK_BLOCK_ROWS])
def test_unit_ranks_equal_a_plain_loop(
    monkeypatch, width: int, kind: str, keep_nulls: bool, block_rows: int
):
    monkeypatch.setattr(ranking, "RANK_BLOCK_ROWS", block_rows)
    rng = np.random.default_rng(width * 7 + block_rows)
    days = layout(rng, 40, width)
    values = values_of(kind, rng, len(days))
    null = (rng.random(len(days)) < 0.15) | (days == 5)  # and a date with every value null
    values[null] = rng.choice([np.nan, -np.inf, np.inf, 7.0, -0.0], size=null.sum())  # ignored
    out = np.empty(len(values))
    nulls = null_bits(null, offset=width % 8)
    assert unit_ranks(values, nulls, DateBlocks.of(days), out, keep_nulls)
    np.testing.assert_array_equal(out, reference(values, null, days, keep_nulls))


@pytest.mark.parametrize("keep_nulls", [False, True])
def test_a_column_of_nulls_ranks_to_the_fill(keep_nulls: bool):
    days = np.repeat(np.arange(30), 9)
    null = np.ones(len(days), bool)
    out = np.empty(len(days))
    assert unit_ranks(np.zeros(len(days)), null_bits(null, 5), DateBlocks.of(days), out, keep_nulls)
    np.testing.assert_array_equal(out, np.full(len(days), np.nan if keep_nulls else 0.0))


@pytest.mark.parametrize("offset", range(8))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_any_bit_offset_and_either_output_type(offset: int, dtype):
    rng = np.random.default_rng(offset)
    days = layout(rng, 300, 50)
    values = np.round(rng.normal(size=len(days)), 2)
    null = rng.random(len(days)) < 0.1
    out = np.empty(len(values), dtype)
    assert unit_ranks(values, null_bits(null, offset), DateBlocks.of(days), out, False)
    np.testing.assert_array_equal(out, reference(values, null, days, False).astype(dtype))


@pytest.mark.parametrize("nulls", [(), (3, 17), (3, 4, 17)])
@pytest.mark.parametrize("row", [4, 9])
@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan, -np.nan])
def test_values_other_than_finite_or_null_are_refused(bad: float, row: int, nulls: tuple):
    """Wherever the value is: in a date with nulls or not, in a block with nulls or not."""
    days = np.repeat(np.arange(4), 5)
    values = np.arange(20, dtype=np.float64)
    null = np.isin(np.arange(20), nulls) & (np.arange(20) != row)
    values[row] = bad  # not a null
    blocks = DateBlocks.of(days)
    assert not unit_ranks(values, null_bits(null, 3), blocks, np.empty(20), False)


def test_arrow_parts_read_a_sliced_polars_column_in_place():
    column = pl.Series("x", [1.5, None, -2.0, None, 4.0, 8.0, None, 0.5, 3.0, None] * 3)
    data, nulls = _arrow_parts(column.slice(5, 20))
    expected = column.slice(5, 20)
    assert nulls is not None and nulls.count == expected.null_count()
    np.testing.assert_array_equal(nulls.of_rows(0, 20), expected.is_null().to_numpy())
    np.testing.assert_array_equal(nulls.of_rows(3, 11), expected.is_null().to_numpy()[3:11])
    valid = ~expected.is_null().to_numpy()
    np.testing.assert_array_equal(data[valid], expected.drop_nulls().to_numpy())
    full = column.drop_nulls()
    numbers, none = _arrow_parts(full)
    assert none is None and np.shares_memory(numbers, full.to_numpy())  # no copy


def test_blocks_cover_every_row_once_in_whole_dates(monkeypatch):
    monkeypatch.setattr(ranking, "RANK_BLOCK_ROWS", 10)
    days = np.repeat(np.arange(9), [3, 3, 3, 3, 4, 4, 25, 1, 1])
    blocks = DateBlocks.of(days).blocks
    assert [lo for lo, *_ in blocks] == [0, *(hi for _, hi, *_ in blocks[:-1])]
    assert blocks[-1][1] == len(days)
    for lo, hi, dates, width in blocks:
        assert hi - lo == dates * width and (hi - lo <= 10 or dates == 1)
        assert len(np.unique(days[lo:hi])) == dates
    assert DateBlocks.of(days[::-1]) is None


def test_one_scratch_serves_many_columns_and_blocks(monkeypatch):
    """A thread's buffers serve block after block (of two widths) and column after column
    (with and without nulls and ties): nothing of one block or column leaks into another."""
    monkeypatch.setattr(ranking, "RANK_BLOCK_ROWS", 40)
    rng = np.random.default_rng(9)
    days = np.repeat(np.arange(60), 10)  # full dates of 10 rows: blocks of 4 dates
    days = np.r_[days, np.repeat(np.arange(60, 70), 7)]  # then narrower dates
    blocks = DateBlocks.of(days)
    scratch = ranking.Scratch.of(blocks, np.dtype(np.float64))
    for column in range(4):
        values = rng.normal(size=len(days))
        null = np.zeros(len(days), bool)
        if column % 2:  # nulls in some blocks only, ties in others
            null[rng.choice(200, 15, replace=False)] = True
            values[300:400] = np.round(values[300:400])
        out = np.empty(len(days))
        assert unit_ranks(values, null_bits(null, 0), blocks, out, False, scratch)
        np.testing.assert_array_equal(out, reference(values, null, days, False))
