"""Cross-sectional normalisation of features, per date (and optionally per sector).

Normalising within a date uses only that date's cross-section, so it cannot leak
the future; it also removes the market-wide level of each feature, which is what a
ranking model needs.

Speed and memory note: ``rank_to_unit`` is the definition, a Polars window expression.
Polars evaluates ``rank().over(date)`` group by group (~0.2 s and ~50 MB of transient
memory per column on 1.9M rows), so ``normalise`` ranks frames sorted by date with
``rank_frame`` instead: each run of dates with the same number of rows is a (dates x
symbols) matrix, sorted row-wise by numpy (SIMD sorts), columns on parallel threads.
Same average ranks, same arithmetic in the same order: the values are identical to the
bit (tested against the expression, ties and nulls included). Frames it cannot take
(dates not sorted, NaN or infinite values, non-float columns) use the expression.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import numpy as np
import polars as pl

from engine.schema import DATE, SECTOR, Normalisation

ZSCORE_CLIP = 3.0  # winsorising bound for z-scores, in standard deviations
RANK_BLOCK_DATES = 256  # dates per block of the numpy ranking (its arrays stay in cache)


def rank_to_unit(column: str, by: str | Sequence[str] = DATE) -> pl.Expr:
    """Average rank of ``column`` within each ``by`` group mapped to [-0.5, 0.5].

    (rank - 1) / (n - 1) - 0.5 over the group's non-null values; 0 when n == 1; nulls stay
    null.
    """
    col = pl.col(column)
    n = col.count().over(by)
    ranked = (col.rank("average").over(by) - 1) / (n - 1) - 0.5
    return pl.when(n > 1).then(ranked).when(col.is_not_null()).then(0.0).alias(column)


def winsorised_zscore(column: str, by: str | Sequence[str] = DATE) -> pl.Expr:
    """(x - mean) / std (ddof=1) within each group, clipped to +/- ZSCORE_CLIP; 0 when the
    group's std is 0 or undefined."""
    col = pl.col(column)
    std = col.std().over(by)
    z = ((col - col.mean().over(by)) / std).clip(-ZSCORE_CLIP, ZSCORE_CLIP)
    return pl.when(std > 0).then(z).when(col.is_not_null()).then(0.0).alias(column)


def normalise(
    frame: pl.LazyFrame,
    columns: Sequence[str],
    method: Normalisation = Normalisation.RANK,
    sector_neutral: bool = False,
    dtype: pl.DataType | None = None,
) -> pl.LazyFrame:
    """Normalise ``columns`` of ``frame`` within each date.

    With ``sector_neutral`` the normalised values are then demeaned within each
    (date, sector); ``frame`` must carry a ``sector`` column. Nulls (features whose
    window is not yet full) become 0, the cross-sectional centre, after normalising.
    ``dtype`` (e.g. ``pl.Float32``) is the type of the normalised columns, cast last.
    """
    columns = list(columns)
    if method is Normalisation.RANK and not sector_neutral:  # filled and cast by rank_frame
        return _ranked(frame, columns, keep_nulls=False, dtype=dtype or pl.Float64)
    if method is Normalisation.RANK:
        out = _ranked(frame, columns, keep_nulls=True, dtype=pl.Float64)
    else:
        out = frame.with_columns(winsorised_zscore(c) for c in columns)
    if sector_neutral:
        keys = [DATE, SECTOR]
        out = out.with_columns(pl.col(c) - pl.col(c).mean().over(keys) for c in columns)
    out = out.with_columns(pl.col(c).fill_null(0.0) for c in columns)
    return out if dtype is None else out.with_columns(pl.col(columns).cast(dtype))


def _ranked(
    frame: pl.LazyFrame, columns: list[str], keep_nulls: bool, dtype: pl.DataType
) -> pl.LazyFrame:
    schema = dict(frame.collect_schema()) | dict.fromkeys(columns, dtype)
    rank = partial(rank_frame, columns=columns, keep_nulls=keep_nulls, dtype=dtype)
    return frame.map_batches(rank, schema=schema)


def rank_frame(
    frame: pl.DataFrame,
    columns: Sequence[str],
    keep_nulls: bool = False,
    dtype: pl.DataType = pl.Float64,
    consume: bool = False,
    order: pl.Series | None = None,
) -> pl.DataFrame:
    """``rank_to_unit(c)`` of each column within each date, eagerly, cast to ``dtype``;
    nulls become 0 (``fill_null(0.0)``) unless ``keep_nulls``.

    ``order`` (row indices that sort the dates, e.g. a stable argsort of a panel sorted
    by symbol): the result is ``rank_frame(frame[order])``, each column gathered just
    before it is ranked, never the whole frame at once. With ``consume`` the columns are
    moved out of ``frame`` (left empty) and each is freed once ranked. Both keep the
    memory of a big panel near one copy: the model frame's ranking needs ~0.3 GB less.
    """
    if DATE in columns or len(set(columns)) != len(columns):
        raise ValueError(f"columns to rank must be distinct and not {DATE!r}: {list(columns)}")
    names = frame.columns
    others = [c for c in names if c not in set(columns)]
    base = frame.select(others) if order is None else frame.select(pl.col(others).gather(order))
    blocks = DateBlocks.of(base[DATE]) if frame.height else None
    np_type = np.float32 if dtype == pl.Float32 else np.float64

    def work(values: pl.Series) -> tuple[pl.Series, bool]:  # one column at a time, on threads
        values = values if order is None else values.gather(order)
        ranks = None if blocks is None else _unit_ranks_of(values, blocks, np_type, keep_nulls)
        if ranks is None:  # NaN, infinite or non-float values, or dates not sorted
            return values, False
        return pl.Series(values.name, ranks, nan_to_null=keep_nulls), True

    if consume:
        for name in others:
            frame.drop_in_place(name)
    source = (frame.drop_in_place(c) if consume else frame[c] for c in columns)
    with ThreadPoolExecutor(max(1, min(len(columns), os.cpu_count() or 1))) as pool:
        ranked = list(pool.map(work, source))  # the pool holds each column until ranked
    slow = [rank_to_unit(r.name) if keep_nulls else rank_to_unit(r.name).fill_null(0.0)
            for r, fast in ranked if not fast]  # fmt: skip
    out = base.with_columns(r for r, _ in ranked).with_columns(*slow)
    return out.with_columns(pl.col(columns).cast(dtype)).select(names)


def _unit_ranks_of(
    values: pl.Series, blocks: DateBlocks, dtype: type, keep_nulls: bool
) -> np.ndarray | None:
    """``_unit_ranks`` of a float column whose non-null values are all finite, else None."""
    if not values.dtype.is_float():
        return None
    nulls = values.is_null().to_numpy() if values.null_count() else None
    filled = values.fill_null(np.inf).to_numpy() if nulls is not None else values.to_numpy()
    if np.count_nonzero(np.isfinite(filled)) != len(filled) - values.null_count():
        return None  # NaN or infinite values: ranked by the expression
    return _unit_ranks(filled, nulls, blocks, dtype, keep_nulls)


@dataclass(frozen=True)
class DateBlocks:
    """The rows of a frame sorted by date, as blocks of consecutive dates that have the
    same number of rows: each block is a (dates x rows per date) matrix without copying.

    Attributes
    ----------
    blocks : (first row, end row, dates, rows per date) of each block, in row order.
    """

    blocks: tuple[tuple[int, int, int, int], ...]

    @classmethod
    def of(cls, dates: pl.Series) -> DateBlocks | None:
        """The layout of ``dates``, or None unless they are sorted (and not null)."""
        if dates.null_count():
            return None
        days = dates.to_physical().to_numpy()
        if np.any(days[1:] < days[:-1]):
            return None
        starts = np.flatnonzero(np.r_[True, days[1:] != days[:-1]])
        sizes = np.diff(np.r_[starts, len(days)])
        runs = np.flatnonzero(np.r_[True, sizes[1:] != sizes[:-1]])  # first date of each run
        blocks = []
        for a, b in zip(runs, np.r_[runs[1:], len(sizes)], strict=True):
            for first in range(a, b, RANK_BLOCK_DATES):
                count = min(RANK_BLOCK_DATES, b - first)
                lo, width = int(starts[first]), int(sizes[first])
                blocks.append((lo, lo + count * width, count, width))
        return cls(tuple(blocks))


def _unit_ranks(
    values: np.ndarray, nulls: np.ndarray | None, blocks: DateBlocks, dtype: type,
    keep_nulls: bool,
) -> np.ndarray:  # fmt: skip
    """(average rank within the date - 1) / (n - 1) - 0.5 of each value, with n the date's
    non-null count; 0 when n == 1; 0 for a null (NaN with ``keep_nulls``). ``values``
    holds +inf for nulls (``nulls``: their mask, or None) and is otherwise finite. The
    same operations as ``rank_to_unit`` in the same order, hence the same values."""
    out = np.empty(len(values), dtype)
    for lo, hi, dates, width in blocks.blocks:
        matrix = values[lo:hi].reshape(dates, width)  # nulls (+inf) sort last
        order, ties = sorted_rows(matrix)
        position = np.arange(width, dtype=np.float64)
        gaps = None if nulls is None else nulls[lo:hi].reshape(dates, width)
        if gaps is not None and gaps.any():
            n = width - np.count_nonzero(gaps, axis=1)
            ties &= position[1:] < n[:, None]
        else:  # most blocks: every symbol of the date has a value
            n = None
        with np.errstate(divide="ignore", invalid="ignore"):
            if n is not None or width < 2 or ties.any():
                n = np.full(dates, width) if n is None else n
                unit = _tied_positions(ties) / (n - 1).astype(np.float64)[:, None] - 0.5
                unit = np.where((position < n[:, None]) & (n > 1)[:, None], unit, 0.0)
            else:  # every date full and without ties: the same row of values for all
                unit = (position / np.float64(width - 1) - 0.5)[None, :]
        taken = (order + (np.arange(dates) * width)[:, None]).ravel()
        # np.put repeats a one-row ``unit`` over the block, date after date (and is ~2x
        # faster than np.put_along_axis)
        np.put(out[lo:hi], taken, unit.astype(dtype, copy=False).ravel())
    if keep_nulls and nulls is not None:
        out[nulls] = np.nan
    return out


_INF_KEY = int(np.array(np.inf).view(np.int64))


def sorted_rows(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order, ties) of each row of a float64 matrix without NaN: ``order`` sorts the row
    (ties in any order), ``ties[d, j]`` says sorted values j and j + 1 are equal (+inf, the
    nulls, sorts last and is never reported tied).

    Why hand-written: ``np.argsort`` is ~3x slower than ``np.sort`` (the SIMD sort) on
    these rows, and was ~45% of the ranking. So each value becomes an order-preserving
    int64 key whose lowest bits are replaced by the value's column: one ``np.sort`` of the
    keys gives the order. Two values that differ only in those lowest bits (a relative
    5e-13 or less with 2,048 rows a date) get equal truncated keys; any such pair is checked
    against the values, and a row block with one is sorted exactly by ``np.argsort``. The result is
    therefore always exact (tested with values one ulp apart, signed zeros and ties).
    """
    width = matrix.shape[1]
    bits = max(int(width - 1).bit_length(), 1)
    keys = (matrix + 0.0).view(np.int64)  # + 0.0: -0.0 becomes 0.0, equal as floats are
    sign = keys >> 63
    sign &= np.int64(2**63 - 1)
    keys ^= sign  # negatives reversed: float order = key order
    keys &= np.int64(-(1 << bits))
    keys |= np.arange(width, dtype=np.int64)
    keys.sort(axis=1)
    order = np.bitwise_and(keys, np.int64((1 << bits) - 1), out=sign)  # the columns
    keys >>= bits
    # equal truncated keys: a tie, or too close to tell; +inf (a null, sorted last) aside
    same = (keys[:, 1:] == keys[:, :-1]) & (keys[:, 1:] != _INF_KEY >> bits)
    if not same.any():
        return order, same
    ties = _ties(np.take_along_axis(matrix, order, axis=1))
    if np.array_equal(same, ties):  # every collision is a tie: any order among ties is right
        return order, ties
    return np.argsort(matrix, axis=1), _ties(np.sort(matrix, axis=1))


def _ties(ordered: np.ndarray) -> np.ndarray:
    """Sorted values j and j + 1 are equal and finite (+inf is a null: never tied)."""
    return (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] < np.inf)


def _tied_positions(ties: np.ndarray) -> np.ndarray:
    """Average 0-based position of each run of tied values in each sorted row (the
    average rank - 1); ``ties[d, j]``: sorted values j and j + 1 of date d are equal."""
    dates, width = ties.shape[0], ties.shape[1] + 1
    position = np.arange(width)
    if not ties.any():
        return np.broadcast_to(position.astype(np.float64), (dates, width))
    starts = np.ones((dates, width), dtype=bool)
    starts[:, 1:] = ~ties
    ends = np.ones((dates, width), dtype=bool)
    ends[:, :-1] = ~ties
    first = np.maximum.accumulate(np.where(starts, position, 0), axis=1)
    last = np.minimum.accumulate(np.where(ends, position, width)[:, ::-1], axis=1)[:, ::-1]
    return (first + last) / 2
