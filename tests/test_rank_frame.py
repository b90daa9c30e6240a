"""``rank_frame``, the rank kernel's driver behind ``normalise``: it equals the Polars
expression ``rank_to_unit`` to the bit, ties, nulls and odd cross-sections included."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from engine.research.crosssection import (
    normalise,
    rank_frame,
    rank_to_unit,
    winsorised_zscore,
)
from engine.schema import DATE, SECTOR, SYMBOL, Normalisation

COLUMNS = ("a", "b", "c", "d")


def panel(seed: int, n_dates: int = 40, n_symbols: int = 30) -> pl.DataFrame:
    """Dates sorted, a varying number of symbols per date (one date with a single row, one
    with every value null), heavy ties (coarsely rounded values) and scattered nulls."""
    rng = np.random.default_rng(seed)
    rows = []
    for d in range(n_dates):
        k = 1 if d == 3 else int(rng.integers(2, n_symbols + 1))
        for s in sorted(rng.choice(n_symbols, size=k, replace=False)):
            rows.append((date(2020, 1, 1) + timedelta(days=d), f"S{s:02d}", f"sec{s % 3}"))
    frame = pl.DataFrame(rows, schema=[DATE, SYMBOL, SECTOR], orient="row")
    n = frame.height
    values = {
        "a": rng.normal(size=n),  # continuous
        "b": np.round(rng.normal(size=n), 1),  # many ties
        "c": rng.integers(0, 3, size=n).astype(float),  # almost all ties
        "d": rng.normal(size=n),
    }
    out = frame.with_columns(pl.Series(k, v) for k, v in values.items())
    nulls = rng.random((n, len(COLUMNS))) < 0.15
    out = out.with_columns(
        pl.when(pl.Series(nulls[:, j])).then(None).otherwise(pl.col(c)).alias(c)
        for j, c in enumerate(COLUMNS)
    )
    all_null = pl.col(DATE) == date(2020, 1, 6)
    return out.with_columns(pl.when(all_null).then(None).otherwise(pl.col("d")).alias("d"))


def expression(frame: pl.DataFrame, dtype: pl.DataType = pl.Float64) -> pl.DataFrame:
    return frame.with_columns(rank_to_unit(c).fill_null(0.0).cast(dtype) for c in COLUMNS)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("dtype", [pl.Float64, pl.Float32])
def test_numpy_ranks_equal_the_expression_bit_for_bit(seed: int, dtype: pl.DataType):
    frame = panel(seed)
    assert rank_frame(frame, COLUMNS, dtype=dtype).equals(expression(frame, dtype))


def test_nulls_are_kept_on_request():
    frame = panel(11)
    kept = rank_frame(frame, COLUMNS, keep_nulls=True)
    assert kept.equals(frame.with_columns(rank_to_unit(c) for c in COLUMNS))


def test_nan_infinite_integer_and_unsorted_input_fall_back_to_the_expression():
    frame = panel(5).with_columns(
        pl.when(pl.col("a") > 1).then(float("nan")).otherwise(pl.col("a")).alias("a"),
        pl.when(pl.col("b") > 1).then(float("inf")).otherwise(pl.col("b")).alias("b"),
        pl.col("c").fill_null(0).cast(pl.Int64),
    )
    expected = frame.with_columns(rank_to_unit(c).fill_null(0.0).cast(pl.Float64) for c in COLUMNS)
    assert rank_frame(frame, COLUMNS).equals(expected)
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=1)
    expected = shuffled.with_columns(
        rank_to_unit(c).fill_null(0.0).cast(pl.Float64) for c in COLUMNS
    )
    assert rank_frame(shuffled, COLUMNS).equals(expected)


@pytest.mark.parametrize("sector_neutral", [False, True])
@pytest.mark.parametrize("dtype", [None, pl.Float32])
def test_normalise_equals_the_plain_expressions(sector_neutral: bool, dtype):
    frame = panel(7)
    normalised = normalise(frame.lazy(), COLUMNS, Normalisation.RANK, sector_neutral, dtype)
    got = normalised.collect(engine="in-memory")  # the streaming engine's means vary by 1 ulp
    want = frame.lazy().with_columns(rank_to_unit(c) for c in COLUMNS)
    if sector_neutral:
        want = want.with_columns(pl.col(c) - pl.col(c).mean().over(DATE, SECTOR) for c in COLUMNS)
    want = want.with_columns(pl.col(c).fill_null(0.0) for c in COLUMNS)
    if dtype is not None:
        want = want.with_columns(pl.col(COLUMNS).cast(dtype))
    assert got.equals(want.collect(engine="in-memory"))


def test_zscore_is_unchanged():
    frame = panel(3)
    got = normalise(frame.lazy(), COLUMNS, Normalisation.ZSCORE).collect(engine="in-memory")
    want = frame.lazy().with_columns(winsorised_zscore(c) for c in COLUMNS)
    want = want.with_columns(pl.col(c).fill_null(0.0) for c in COLUMNS)
    assert got.equals(want.collect(engine="in-memory"))  # streaming means vary by 1 ulp


def test_an_empty_frame_normalises_to_an_empty_frame():
    frame = panel(1).clear()
    assert normalise(frame.lazy(), COLUMNS).collect().height == 0


def test_long_runs_of_full_dates_without_ties_take_the_row_pattern_path():
    rng = np.random.default_rng(2)
    dates = np.datetime64("2020-01-01") + np.arange(600)  # more than one block of dates
    frame = pl.DataFrame(
        {
            DATE: pl.Series(np.repeat(dates, 20)).cast(pl.Date),
            SYMBOL: [f"S{s:02d}" for s in range(20)] * len(dates),
            **{c: rng.normal(size=20 * len(dates)) for c in COLUMNS},
        }
    )
    assert rank_frame(frame, COLUMNS, dtype=pl.Float32).equals(expression(frame, pl.Float32))


@pytest.mark.parametrize("consume", [False, True])
def test_ranking_in_a_given_order_equals_ranking_the_reordered_frame(consume: bool):
    """``order`` (a stable argsort of the dates of a symbol-major frame) and ``consume``
    change what is held in memory, never the values."""
    frame = panel(4).sort(SYMBOL, DATE).with_columns(pl.col("c").cast(pl.Int64, strict=False))
    order = pl.Series(np.argsort(frame[DATE].to_physical().to_numpy(), kind="stable"))
    want = rank_frame(frame.clone()[order], COLUMNS, dtype=pl.Float32)
    source = frame.clone()
    got = rank_frame(source, COLUMNS, dtype=pl.Float32, consume=consume, order=order)
    assert got.equals(want)
    assert source.width == (0 if consume else frame.width)


@pytest.mark.parametrize("columns", [("a", "a"), ("a", DATE)])
def test_repeated_or_date_columns_are_refused_before_the_frame_is_touched(columns):
    frame = panel(2)
    with pytest.raises(ValueError, match="distinct"):
        rank_frame(frame, columns, consume=True)
    assert frame.width == panel(2).width


@pytest.mark.parametrize("seed", range(4))
def test_values_a_few_ulps_apart_and_signed_zeros_rank_exactly(seed: int):
    """The fast sort truncates its keys: values one to three ulps apart and -0.0 / 0.0 (equal
    as floats) must still rank as the expression ranks them."""
    rng = np.random.default_rng(seed)
    frame = panel(seed)
    close = rng.choice([-1.5, -0.0, 0.0, 1e-300, 2.0, 1e6], size=frame.height)
    for _ in range(3):
        close = np.where(rng.random(frame.height) < 0.5, np.nextafter(close, np.inf), close)
    frame = frame.with_columns(pl.Series("a", close), pl.Series("b", -close))
    assert rank_frame(frame, COLUMNS).equals(expression(frame))
