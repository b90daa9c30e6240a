"""Cross-sectional normalisation of features, per date (and optionally per sector).

Normalising within a date uses only that date's cross-section, so it cannot leak
the future; it also removes the market-wide level of each feature, which is what a
ranking model needs.

``rank_to_unit`` is the definition, a Polars window expression. Polars evaluates
``rank().over(date)`` group by group, which makes the model frame build about twice as slow,
so ``normalise`` ranks frames sorted by date with ``rank_frame`` instead: the numpy kernel
of ``engine.research.ranking``, one column per thread. Same average ranks, same arithmetic:
the values are identical to the bit (tested against the expression, ties and nulls
included). Frames it cannot take (dates not sorted, NaN or infinite values, non-float
columns) use the expression.
"""

from __future__ import annotations

import os
import queue
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np
import polars as pl

from engine.research.ranking import DateBlocks, NullBits, Scratch, unit_ranks
from engine.schema import DATE, SECTOR, Normalisation

ZSCORE_CLIP = 3.0  # winsorising bound for z-scores, in standard deviations


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
    if DATE in columns or len(set(columns)) != len(columns):
        raise ValueError(f"columns to normalise must be distinct and not {DATE!r}: {columns}")
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
    memory of a big panel near one copy.
    """
    if DATE in columns or len(set(columns)) != len(columns):
        raise ValueError(f"columns to rank must be distinct and not {DATE!r}: {list(columns)}")
    names = frame.columns
    others = [c for c in names if c not in set(columns)]
    base = frame.select(others) if order is None else frame.select(pl.col(others).gather(order))
    blocks = _date_blocks(base[DATE])
    np_type = np.float32 if dtype == pl.Float32 else np.float64
    workers = max(1, min(len(columns), os.cpu_count() or 1))
    scratches: queue.SimpleQueue[Scratch] = queue.SimpleQueue()  # one in use per thread
    for _ in range(workers if blocks is not None else 0):
        scratches.put(Scratch.of(blocks, np_type))

    def work(values: pl.Series, out: np.ndarray) -> tuple[pl.Series, bool]:  # on threads
        values = values if order is None else values.gather(order)
        ranked = False
        if blocks is not None:
            scratch = scratches.get()
            try:
                ranked = _unit_ranks_of(values, blocks, keep_nulls, scratch, out)
            finally:
                scratches.put(scratch)  # never lost: the other columns wait for it
        if not ranked:  # NaN, infinite or non-float values, or dates not sorted
            return values, False
        return pl.Series(values.name, out, nan_to_null=keep_nulls), True

    if consume:
        for name in others:
            frame.drop_in_place(name)
    source = (frame.drop_in_place(c) if consume else frame[c] for c in columns)
    # The outputs are allocated here, not on the workers: memory that the workers' malloc
    # arenas free is not reused by the next call's new threads; np.empty costs no memory
    # until a worker writes it.
    outs = [np.empty(base.height, np_type) for _ in columns]
    with ThreadPoolExecutor(workers) as pool:
        ranked = list(pool.map(work, source, outs))  # the pool holds each column until ranked
    slow = [rank_to_unit(r.name) if keep_nulls else rank_to_unit(r.name).fill_null(0.0)
            for r, fast in ranked if not fast]  # fmt: skip
    out = base.with_columns(r for r, _ in ranked).with_columns(*slow)
    return out.with_columns(pl.col(columns).cast(dtype)).select(names)


def _date_blocks(dates: pl.Series) -> DateBlocks | None:
    """The block layout of ``dates``, or None unless they are sorted and not null."""
    if dates.is_empty() or dates.null_count():
        return None
    return DateBlocks.of(dates.to_physical().to_numpy())


def _unit_ranks_of(
    values: pl.Series, blocks: DateBlocks, keep_nulls: bool, scratch: Scratch, out: np.ndarray
) -> bool:
    """``ranking.unit_ranks`` of ``values`` into ``out``; False unless it is a float column
    whose non-null values are all finite."""
    if not values.dtype.is_float():
        return False
    data, nulls = _arrow_parts(values.cast(pl.Float64))  # exact; the keys are float64 bits
    return unit_ranks(data, nulls, blocks, out, keep_nulls, scratch)


def _arrow_parts(values: pl.Series) -> tuple[np.ndarray, NullBits | None]:
    """A float64 column's values and null bitmap, read in place from its Arrow memory.

    Why not ``to_numpy``: it writes a new array with NaN at the nulls, fresh memory whose
    page faults cost more than the ranking of the column itself; the kernel reads the
    bitmap block by block instead."""
    array = values.to_arrow()  # zero-copy for one chunk
    bitmap, data = array.buffers()
    numbers = np.frombuffer(data, np.float64, count=len(array), offset=array.offset * 8)
    if not array.null_count:
        return numbers, None
    bits = np.frombuffer(bitmap, np.uint8)
    return numbers, NullBits(bits, array.offset, array.null_count)
