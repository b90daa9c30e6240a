"""Per-date normalisation: ``normalise`` equals the Polars expressions that define it and,
for ranks, a plain per-date loop (scipy's average ranks): ties, nulls, ulp-close values,
signed zeros, infinities and NaN, odd cross-sections, any row order or slice."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest
from scipy.stats import rankdata

from engine.research.crosssection import normalise, rank_to_unit, winsorised_zscore
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


def ranked(days: np.ndarray, values: np.ndarray, null: np.ndarray, keep: bool,
           dtype: pl.DataType = pl.Float64) -> np.ndarray:  # fmt: skip
    """One column ranked within its days by ``normalise`` (``rank_to_unit`` with ``keep``)."""
    frame = pl.DataFrame({DATE: days, "x": pl.Series(values).scatter(np.flatnonzero(null), None)})
    if keep:
        out = frame.select(rank_to_unit("x").cast(dtype))
    else:
        out = normalise(frame.lazy(), ["x"], dtype=dtype).collect()
    return out["x"].to_numpy()


def layout(rng: np.random.Generator, dates: int, width: int) -> np.ndarray:
    """Sorted day numbers: runs of dates with ``width`` rows, and some with fewer."""
    sizes = np.where(rng.random(dates) < 0.2, rng.integers(1, width + 1, dates), width)
    return np.repeat(np.arange(dates), sizes)


def values_of(kind: str, rng: np.random.Generator, n: int) -> np.ndarray:
    if kind == "distinct":
        return rng.normal(size=n)
    # ties, signed zeros and 5e-324 (the smallest subnormal)
    values = rng.choice([-2.0, -0.0, 0.0, 1.0, 1e6, 5e-324], size=n)
    if kind == "ulps apart":  # neighbours one to three ulps apart, in either order
        for _ in range(3):
            values = np.where(rng.random(n) < 0.5, np.nextafter(values, np.inf), values)
    return values


# --- ranks against a plain per-date loop -------------------------------------------------------
@pytest.mark.parametrize("keep_nulls", [False, True])
@pytest.mark.parametrize("kind", ["distinct", "ties", "ulps apart"])
@pytest.mark.parametrize("width", [1, 2, 7, 300])
def test_ranks_equal_a_plain_loop(width: int, kind: str, keep_nulls: bool):
    rng = np.random.default_rng(width * 7)
    days = layout(rng, 40, width)
    values = values_of(kind, rng, len(days))
    null = (rng.random(len(days)) < 0.15) | (days == 5)  # and a date with every value null
    got = ranked(days, values, null, keep_nulls)
    np.testing.assert_array_equal(got, reference(values, null, days, keep_nulls))


@pytest.mark.parametrize("keep_nulls", [False, True])
def test_a_column_of_nulls_ranks_to_the_fill(keep_nulls: bool):
    days = np.repeat(np.arange(30), 9)
    null = np.ones(len(days), bool)
    got = ranked(days, np.zeros(len(days)), null, keep_nulls)
    np.testing.assert_array_equal(got, np.full(len(days), np.nan if keep_nulls else 0.0))


@pytest.mark.parametrize("offset", range(8))
@pytest.mark.parametrize("dtype", [pl.Float64, pl.Float32])
def test_any_slice_of_a_column_and_either_output_type(offset: int, dtype: pl.DataType):
    rng = np.random.default_rng(offset)
    days = layout(rng, 300, 50)
    values = np.round(rng.normal(size=len(days)), 2)
    null = rng.random(len(days)) < 0.1
    frame = pl.DataFrame({DATE: days, "x": pl.Series(values).scatter(np.flatnonzero(null), None)})
    sliced = frame.slice(offset)  # a column that starts inside its buffers
    got = normalise(sliced.lazy(), ["x"], dtype=dtype).collect()["x"].to_numpy()
    want = reference(values[offset:], null[offset:], days[offset:], False)
    np.testing.assert_array_equal(got, want.astype(got.dtype))


@pytest.mark.parametrize("bad", [np.inf, -np.inf])
def test_infinities_rank_as_numbers(bad: float):
    days = np.repeat(np.arange(4), 5)
    values = np.arange(20, dtype=np.float64)
    values[[4, 9, 11]] = bad
    null = np.isin(np.arange(20), (3, 17))
    got = ranked(days, values, null, keep=False)
    np.testing.assert_array_equal(got, reference(values, null, days, False))


def test_nans_tie_and_rank_above_every_number():
    days = np.repeat(np.arange(4), 5)
    values = np.arange(20, dtype=np.float64)
    values[[4, 8, 9, 11]] = np.nan
    values[[7, 12]] = np.inf
    null = np.isin(np.arange(20), (3, 17))
    got = ranked(days, values, null, keep=False)
    above = np.where(np.isnan(values), np.finfo(np.float64).max, values)  # NaN as the largest
    above = np.where(np.isinf(values), np.finfo(np.float64).max / 2, above)
    np.testing.assert_array_equal(got, reference(above, null, days, False))


def test_each_date_is_ranked_alone():
    """Dates laid out in runs of equal and of varying sizes: every date's values rank as
    that date alone would."""
    rng = np.random.default_rng(3)
    days = np.repeat(np.arange(9), [3, 3, 3, 3, 4, 4, 25, 1, 1])
    values, null = rng.normal(size=len(days)), rng.random(len(days)) < 0.2
    whole = ranked(days, values, null, keep=False)
    for day in np.unique(days):
        rows = days == day
        np.testing.assert_array_equal(
            whole[rows], ranked(days[rows], values[rows], null[rows], False)
        )


def test_many_columns_at_once_rank_as_each_alone():
    """Columns with and without nulls and ties, normalised in one call: nothing of one
    column reaches another."""
    rng = np.random.default_rng(9)
    days = np.r_[np.repeat(np.arange(60), 10), np.repeat(np.arange(60, 70), 7)]
    columns, nulls = {}, {}
    for column in range(4):
        values = rng.normal(size=len(days))
        null = np.zeros(len(days), bool)
        if column % 2:  # nulls in some dates only, ties in others
            null[rng.choice(200, 15, replace=False)] = True
            values[300:400] = np.round(values[300:400])
        columns[f"x{column}"], nulls[f"x{column}"] = values, null
    frame = pl.DataFrame({DATE: days} | {
        name: pl.Series(v).scatter(np.flatnonzero(nulls[name]), None) for name, v in columns.items()
    })  # fmt: skip
    out = normalise(frame.lazy(), list(columns)).collect()
    for name, values in columns.items():
        want = reference(values, nulls[name], days, False)
        np.testing.assert_array_equal(out[name].to_numpy(), want)


# --- normalise against its defining expressions ------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("dtype", [pl.Float64, pl.Float32])
def test_normalised_ranks_equal_the_expression_and_the_loop(seed: int, dtype: pl.DataType):
    frame = panel(seed)
    got = normalise(frame.lazy(), COLUMNS, dtype=dtype).collect()
    assert got.equals(expression(frame, dtype))
    days = frame[DATE].to_physical().to_numpy()
    for c in COLUMNS:
        null = frame[c].is_null().to_numpy()
        want = reference(frame[c].fill_null(0.0).to_numpy(), null, days, False)
        np.testing.assert_array_equal(got[c].to_numpy(), want.astype(got[c].to_numpy().dtype))


def test_nulls_are_kept_by_the_expression():
    frame = panel(11)
    kept = frame.with_columns(rank_to_unit(c) for c in COLUMNS)
    days = frame[DATE].to_physical().to_numpy()
    for c in COLUMNS:
        null = frame[c].is_null().to_numpy()
        assert (kept[c].is_null().to_numpy() == null).all()
        want = reference(frame[c].fill_null(0.0).to_numpy(), null, days, True)
        np.testing.assert_array_equal(kept[c].to_numpy(), want)


def test_nan_infinite_integer_and_unsorted_input_rank_as_the_expression():
    frame = panel(5).with_columns(
        pl.when(pl.col("a") > 1).then(float("nan")).otherwise(pl.col("a")).alias("a"),
        pl.when(pl.col("b") > 1).then(float("inf")).otherwise(pl.col("b")).alias("b"),
        pl.col("c").fill_null(0).cast(pl.Int64),
    )
    expected = frame.with_columns(rank_to_unit(c).fill_null(0.0).cast(pl.Float64) for c in COLUMNS)
    assert normalise(frame.lazy(), COLUMNS, dtype=pl.Float64).collect().equals(expected)
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=1)
    expected = shuffled.with_columns(
        rank_to_unit(c).fill_null(0.0).cast(pl.Float64) for c in COLUMNS
    )
    assert normalise(shuffled.lazy(), COLUMNS, dtype=pl.Float64).collect().equals(expected)


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


def test_long_runs_of_full_dates_rank_as_the_expression():
    rng = np.random.default_rng(2)
    dates = np.datetime64("2020-01-01") + np.arange(600)
    frame = pl.DataFrame(
        {
            DATE: pl.Series(np.repeat(dates, 20)).cast(pl.Date),
            SYMBOL: [f"S{s:02d}" for s in range(20)] * len(dates),
            **{c: rng.normal(size=20 * len(dates)) for c in COLUMNS},
        }
    )
    got = normalise(frame.lazy(), COLUMNS, dtype=pl.Float32).collect()
    assert got.equals(expression(frame, pl.Float32))


def test_ranks_do_not_depend_on_the_order_of_the_rows():
    """A symbol-major panel (as features are computed) normalises to the same values as
    the same panel in date order."""
    frame = panel(4).with_columns(pl.col("c").cast(pl.Int64, strict=False))
    by_symbol = frame.sort(SYMBOL, DATE)
    by_date = by_symbol.sort(DATE, maintain_order=True)
    got = normalise(by_symbol.lazy(), COLUMNS, dtype=pl.Float32).collect()
    want = normalise(by_date.lazy(), COLUMNS, dtype=pl.Float32).collect()
    assert got.sort(DATE, SYMBOL).equals(want.sort(DATE, SYMBOL))


@pytest.mark.parametrize("columns", [("a", "a"), ("a", DATE)])
def test_repeated_or_date_columns_are_refused(columns):
    with pytest.raises(ValueError, match="distinct"):
        normalise(panel(2).lazy(), columns)


@pytest.mark.parametrize("seed", range(4))
def test_values_a_few_ulps_apart_and_signed_zeros_rank_exactly(seed: int):
    """Values one to three ulps apart and -0.0 / 0.0 (equal as floats) rank as the
    expression and the plain loop rank them."""
    rng = np.random.default_rng(seed)
    frame = panel(seed)
    close = rng.choice([-1.5, -0.0, 0.0, 1e-300, 2.0, 1e6], size=frame.height)
    for _ in range(3):
        close = np.where(rng.random(frame.height) < 0.5, np.nextafter(close, np.inf), close)
    frame = frame.with_columns(pl.Series("a", close), pl.Series("b", -close))
    got = normalise(frame.lazy(), COLUMNS, dtype=pl.Float64).collect()
    assert got.equals(expression(frame))
    days, none = frame[DATE].to_physical().to_numpy(), np.zeros(frame.height, bool)
    np.testing.assert_array_equal(got["a"].to_numpy(), reference(close, none, days, False))
